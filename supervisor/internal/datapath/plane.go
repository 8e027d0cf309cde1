package datapath

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// Config is what the data path takes: the tunnel's limits, and the two
// ways out of it that it does not own.
type Config struct {
	InlineLimit int   // larger bodies are streamed
	ChunkSize   int   // bytes per binary chunk of a stream this side sends
	Window      int64 // per-stream flow-control window, both ways
	// RetryIdempotent sends a Request once more when its session is lost
	// before the answer, if it is idempotent with an inline body.
	RetryIdempotent bool
	// ResumeStreams makes response streams resumable on the sessions whose
	// relay keeps cut streams (see StateChanged).
	ResumeStreams bool
	ResumeTimeout time.Duration // bounds one move of a stream to another connection
	Log           *logrus.Entry

	// Post hands a frame to the supervision tree's root, which gives it to
	// an authenticated connection or queues it; a frame pinned to a session
	// the root cannot reach is answered with an error. The data path posts
	// there every frame that no session it knows of takes directly. Post
	// must not block.
	Post func(*actormsg.Outbound)
	// Handle runs the host's handler for msg, in a goroutine the data path
	// started for it; ctx ends when the relay cancels the request, when its
	// session is lost, or on Drain. Nil answers every request of the relay
	// with an error frame.
	Handle func(ctx context.Context, msg *messages.TunnelMessage)
}

// Plane is a tunnel's data path. All its methods are safe for concurrent
// use; see the package documentation for who calls which.
type Plane struct {
	cfg Config
	log *logrus.Entry

	baseCtx  context.Context // parent of every handler's context; cancelled by Drain
	cancel   context.CancelFunc
	done     chan struct{} // closed by Drain: the actors, stopped, will answer no write
	closed   atomic.Bool
	handlers sync.WaitGroup // handlers, and the goroutines that finish lingering streams

	// What is in flight is bound to the connection and authenticated
	// session it travels on (a route): losing that session fails it, and
	// nothing else. Frames the relay sent are keyed by connection and
	// message_id, since a request the relay retries on another connection
	// keeps its id.
	mu         sync.Mutex
	pending    map[string]*pendingRequest // Request calls waiting for their answer
	inStreams  map[key]*inStream          // bodies being received
	outStreams map[key]*outStream         // bodies being sent
	handling   map[key]*handled           // requests in the host's handler
	reported   map[key]bool               // unknown stream ids already answered with an error
	resuming   map[string]*outStream      // streams waiting for the relay to answer a stream_resume
	ended      map[int]int                // connection -> its last authenticated session that ended
	resumable  map[int]bool               // connection -> its relay keeps cut response streams
	// sinks holds the socket of each live session that frames came on:
	// answers pinned to it go straight there, with no mailbox hop.
	sinks      map[route]actormsg.Sink
	lingering  []lingering // resumable streams sent whole, until the relay has surely read their end
	lingerSize int64       // the bytes they keep
}

// key names a message on one connection.
type key struct {
	conn int
	id   string
}

// route is the connection and authenticated session a message travels on.
type route struct{ conn, epoch int }

// anyRoute is the route of a frame that may take any connection.
var anyRoute = route{conn: -1}

// New makes the data path of one tunnel; cfg.Post must be set.
func New(cfg Config) *Plane {
	p := &Plane{
		cfg:        cfg,
		log:        cfg.Log,
		done:       make(chan struct{}),
		pending:    map[string]*pendingRequest{},
		inStreams:  map[key]*inStream{},
		outStreams: map[key]*outStream{},
		handling:   map[key]*handled{},
		reported:   map[key]bool{},
		resuming:   map[string]*outStream{},
		resumable:  map[int]bool{},
		sinks:      map[route]actormsg.Sink{},
		ended:      map[int]int{},
	}
	p.baseCtx, p.cancel = context.WithCancel(context.Background())
	return p
}

// StateChanged takes every state change of the tunnel's connections: an
// authenticated session says whether its relay keeps cut response streams,
// which decides whether the streams sent on it are resumable.
func (p *Plane) StateChanged(s messages.StateChanged) {
	if s.State == messages.Authenticated {
		p.mu.Lock()
		p.resumable[s.Connection] = s.Resume
		p.mu.Unlock()
	}
}

// Close is the first step of the tunnel's stop: from now on nothing new is
// written (Send and Request fail with messages.ErrStopped) and no handler
// starts. Writes under way still wait for their answer, which the actors
// give as they stop.
func (p *Plane) Close() { p.closed.Store(true) }

// Drain is the last step of the tunnel's stop, once the actors are stopped
// (or given up on): whatever still waits returns messages.ErrStopped,
// everything in flight fails with it, the handlers' contexts end, and
// Drain waits for the handlers to return, within ctx. Call it once, after
// Close.
func (p *Plane) Drain(ctx context.Context) error {
	close(p.done)
	p.cancel()
	p.failAll(messages.ErrStopped)
	handlersDone := make(chan struct{})
	go func() { p.handlers.Wait(); close(handlersDone) }()
	select {
	case <-handlersDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("supervisor: waiting for message handlers: %w", ctx.Err())
	}
}
