package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Status is the tunnel's status in the seed's shape (see messages.Status).
type Status = messages.Status

var (
	// ErrInvalidMessage is wrapped by Send and Request for a message they
	// cannot put on the wire (no type, an unknown type, a response without id).
	ErrInvalidMessage = errors.New("supervisor: invalid message")
	// ErrRemote is wrapped by Request when the relay answered with an error frame.
	ErrRemote = errors.New("supervisor: relay answered with an error")
	// ErrDuplicateID: a message with this message_id is already in flight.
	ErrDuplicateID = errors.New("supervisor: duplicate message_id")
)

// statusTimeout bounds a Status call; the ledger answers in microseconds.
const statusTimeout = 5 * time.Second

// Tunnel is a running tunnel supervisor: the supervision tree in an actor
// system, and the API a host uses to send, receive and watch. All methods are
// safe for concurrent use.
type Tunnel struct {
	cfg       Config
	system    *actor.ActorSystem
	ownSystem bool
	root      *actor.PID
	log       *logrus.Entry

	baseCtx  context.Context // parent of every handler's context; cancelled by Stop
	cancel   context.CancelFunc
	done     chan struct{} // closed once the actors are stopped
	stopped  atomic.Bool
	stopOnce sync.Once
	handlers sync.WaitGroup

	mu         sync.Mutex
	pending    map[string]*pendingRequest    // Request calls waiting for their answer
	inStreams  map[string]*wire.StreamReader // bodies being received
	outStreams map[string]*wire.SendWindow   // bodies being sent
	handling   map[string]context.CancelFunc // requests in the host's handler
	reported   map[string]bool               // unknown stream ids already answered with an error
}

type pendingRequest struct {
	reply chan result
	sent  bool // the request is on the wire: losing the connection loses its answer
	// lostWhileSending: an authenticated connection failed while Send was
	// still under way, so the frame may have gone out on it.
	lostWhileSending bool
}

type result struct {
	msg *messages.TunnelMessage
	err error
}

// Start validates cfg and starts the tunnel's supervision tree in system.
// A nil system makes one of the tunnel's own, which Stop shuts down; a host's
// system is never shut down by the tunnel. Start returns at once: the
// connection is made in the background (follow it with OnStateChange or
// Status).
func Start(system *actor.ActorSystem, cfg Config) (*Tunnel, error) {
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.KeyInClear() {
		u, _ := url.Parse(cfg.RelayURL)
		cfg.Logger.WithFields(logrus.Fields{"actor": "tunnel", "tunnel": cfg.Tunnel, "relay_host": u.Host}).
			Warn("Relay URL is ws:// to a host that is not loopback: the API key travels in clear; use wss://")
	}
	t := &Tunnel{
		cfg:        cfg,
		system:     system,
		log:        cfg.Logger.WithFields(logrus.Fields{"actor": "tunnel", "tunnel": cfg.Tunnel}),
		done:       make(chan struct{}),
		pending:    map[string]*pendingRequest{},
		inStreams:  map[string]*wire.StreamReader{},
		outStreams: map[string]*wire.SendWindow{},
		handling:   map[string]context.CancelFunc{},
		reported:   map[string]bool{},
	}
	if t.system == nil {
		t.ownSystem = true
		entry := cfg.Logger.WithField("lib", "protoactor")
		t.system = actor.NewActorSystem(
			actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slogToLogrus{entry: entry}) }),
			// The throttle's goroutine lives this long after the last dead
			// letter; short, so that nothing of the tunnel outlives Stop.
			actor.WithDeadLetterThrottleInterval(100*time.Millisecond),
		)
	}
	t.baseCtx, t.cancel = context.WithCancel(context.Background())
	h := hooks{deliver: t.deliver, lost: t.lost, state: t.stateChanged}
	t.root = t.system.Root.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor { return newRoot(cfg, h) }), "tunnel-"+cfg.Tunnel)
	t.system.Root.Send(t.root, &begin{})
	return t, nil
}

// PID is the supervision tree's root actor, for hosts that want to watch it.
func (t *Tunnel) PID() *actor.PID { return t.root }

// Send writes msg to the relay. It returns nil only once the frame (and, for
// a streamed body, every chunk and the stream end) is written on an
// authenticated connection. While connected it blocks until written or ctx
// ends; while disconnected the frame waits in a queue of at most MaxQueue
// frames, written in order after the next AUTHENTICATED; a full queue, a
// stopped tunnel or an invalid message is an immediate error. A request
// without MessageID gets a new random one, set on msg.
//
// A body over InlineLimit, or a BodyStream, is sent as a stream under the
// per-stream window; losing the connection mid-stream fails Send.
func (t *Tunnel) Send(ctx context.Context, msg *messages.TunnelMessage) error {
	f, body, err := t.frameOf(msg)
	if err != nil {
		return err
	}
	if body == nil {
		return t.write(ctx, false, wire.MustEncode(f), false)
	}
	win := wire.NewSendWindow(t.cfg.Window)
	t.mu.Lock()
	if _, dup := t.outStreams[f.MessageID]; dup {
		t.mu.Unlock()
		return fmt.Errorf("%w: stream %s is already being sent", ErrDuplicateID, f.MessageID)
	}
	t.outStreams[f.MessageID] = win
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if t.outStreams[f.MessageID] == win {
			delete(t.outStreams, f.MessageID)
		}
		t.mu.Unlock()
	}()
	if err := t.write(ctx, false, wire.MustEncode(f), false); err != nil {
		return err
	}
	p := &pipeline{t: t}
	if _, err := wire.SendStream(ctx, f.MessageID, body, win, t.cfg.ChunkSize, p.write); err != nil {
		return err
	}
	return p.flush(ctx)
}

// streamPipelineDepth is how many chunks of one stream may be on their way
// to the socket at once. Waiting for each chunk's write before reading the
// next would cost a round trip through the actors per chunk; the stream's
// window still bounds the bytes in flight.
const streamPipelineDepth = 8

// pipeline writes a stream's chunks without waiting for each, in order,
// keeping at most streamPipelineDepth unanswered.
type pipeline struct {
	t       *Tunnel
	pending []chan error
}

func (p *pipeline) write(ctx context.Context, binary bool, data []byte) error {
	if len(p.pending) == streamPipelineDepth {
		if err := p.wait(ctx); err != nil {
			return err
		}
	}
	if p.t.stopped.Load() {
		return messages.ErrStopped
	}
	o := &messages.Outbound{Ctx: ctx, Binary: binary, Data: data, Reply: make(chan error, 1), NoQueue: true}
	p.t.system.Root.Send(p.t.root, &sendFrame{out: o})
	p.pending = append(p.pending, o.Reply)
	return nil
}

// wait takes the oldest write's answer.
func (p *pipeline) wait(ctx context.Context) error {
	reply := p.pending[0]
	p.pending = p.pending[1:]
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-p.t.done:
		return messages.ErrStopped
	}
}

// flush waits until every write is answered; the first error wins.
func (p *pipeline) flush(ctx context.Context) error {
	for len(p.pending) > 0 {
		if err := p.wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// frameOf checks msg and builds its frame; body is non-nil when the body
// must be streamed.
func (t *Tunnel) frameOf(msg *messages.TunnelMessage) (*wire.Frame, io.Reader, error) {
	if msg == nil {
		return nil, nil, fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	switch msg.Type {
	case messages.TypeRequest:
		if msg.MessageID == "" {
			msg.MessageID = uuid.NewString()
		}
	case messages.TypeResponse, messages.TypeError, messages.TypeCancel:
		if msg.MessageID == "" && msg.Type != messages.TypeError {
			return nil, nil, fmt.Errorf("%w: a %s needs the message_id it answers", ErrInvalidMessage, msg.Type)
		}
	default:
		return nil, nil, fmt.Errorf("%w: type %q (want request, response, error or cancel)", ErrInvalidMessage, msg.Type)
	}
	if len(msg.MessageID) > wire.MaxIDLength {
		return nil, nil, fmt.Errorf("%w: message_id longer than %d bytes", ErrInvalidMessage, wire.MaxIDLength)
	}
	f := &wire.Frame{Type: msg.Type, MessageID: msg.MessageID, Method: msg.Method, Path: msg.Path,
		Status: msg.Status, Headers: msg.Headers, Error: msg.Error}
	switch {
	case msg.BodyStream != nil:
		f.Stream = true
		return f, msg.BodyStream, nil
	case len(msg.Body) > t.cfg.InlineLimit:
		f.Stream = true
		return f, bytes.NewReader(msg.Body), nil
	}
	f.Body = msg.Body
	return f, nil, nil
}

// Request sends a request and waits for its response (same message_id). An
// error frame in answer returns the message and an error wrapping ErrRemote.
// If ctx ends first, a cancel frame tells the relay the answer is no longer
// wanted. A streamed response body arrives in the result's BodyStream; read
// it to the end or Close it.
func (t *Tunnel) Request(ctx context.Context, msg *messages.TunnelMessage) (*messages.TunnelMessage, error) {
	if msg != nil && msg.Type == "" {
		msg.Type = messages.TypeRequest
	}
	if msg == nil || msg.Type != messages.TypeRequest {
		return nil, fmt.Errorf("%w: Request takes a request", ErrInvalidMessage)
	}
	if msg.MessageID == "" {
		msg.MessageID = uuid.NewString()
	}
	id := msg.MessageID
	p := &pendingRequest{reply: make(chan result, 1)}
	t.mu.Lock()
	if _, dup := t.pending[id]; dup {
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: request %s is already waiting", ErrDuplicateID, id)
	}
	t.pending[id] = p
	t.mu.Unlock()
	forget := func() {
		t.mu.Lock()
		if t.pending[id] == p {
			delete(t.pending, id)
		}
		t.mu.Unlock()
	}
	if err := t.Send(ctx, msg); err != nil {
		forget()
		return nil, err
	}
	t.mu.Lock()
	p.sent = true
	lost := p.lostWhileSending
	t.mu.Unlock()
	if lost {
		forget()
		return nil, fmt.Errorf("%w while the request was being sent; its answer cannot come", messages.ErrConnectionLost)
	}
	select {
	case r := <-p.reply:
		return r.msg, r.err
	case <-ctx.Done():
		forget()
		t.sendAsync(&wire.Frame{Type: wire.TypeCancel, MessageID: id})
		return nil, ctx.Err()
	case <-t.done:
		return nil, messages.ErrStopped
	}
}

// Status returns the tunnel's status, answered by the health ledger.
func (t *Tunnel) Status() Status {
	if !t.stopped.Load() {
		res, err := t.system.Root.RequestFuture(t.root, &messages.GetStatus{}, statusTimeout).Result()
		if s, ok := res.(*messages.Status); ok && err == nil {
			return *s
		}
	}
	return Status{State: messages.Disconnected, Tunnel: t.cfg.Tunnel, Health: messages.Health{FailureTypes: map[string]int{}}}
}

// Reconnect drops the current connection and connects again at once, or cuts
// short the wait for the next attempt (even an open breaker's): for a host
// that knows the network changed.
func (t *Tunnel) Reconnect() {
	if !t.stopped.Load() {
		t.system.Root.Send(t.root, &reconnect{})
	}
}

// Stop closes the connection with a close frame (bounded by CloseTimeout),
// stops the actors, fails what is still queued or awaited with ErrStopped,
// cancels the handlers' contexts and waits for them, within ctx. A tunnel
// that made its own actor system shuts it down. Stop is idempotent.
func (t *Tunnel) Stop(ctx context.Context) error {
	var err error
	t.stopOnce.Do(func() { err = t.stop(ctx) })
	return err
}

func (t *Tunnel) stop(ctx context.Context) error {
	t.stopped.Store(true)
	stopped := make(chan error, 1)
	go func() { stopped <- t.system.Root.StopFuture(t.root).Wait() }()
	var err error
	select {
	case err = <-stopped:
	case <-ctx.Done():
		err = fmt.Errorf("supervisor: stopping the actors: %w", ctx.Err())
	}
	close(t.done)
	t.cancel()
	t.failAll(messages.ErrStopped, false)
	handlersDone := make(chan struct{})
	go func() { t.handlers.Wait(); close(handlersDone) }()
	select {
	case <-handlersDone:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("supervisor: waiting for message handlers: %w", ctx.Err()))
	}
	if t.ownSystem {
		t.system.Shutdown()
	}
	t.log.Info("Tunnel stopped")
	return err
}

// write hands one WebSocket message to the root and waits for its answer.
func (t *Tunnel) write(ctx context.Context, binary bool, data []byte, noQueue bool) error {
	if t.stopped.Load() {
		return messages.ErrStopped
	}
	o := &messages.Outbound{Ctx: ctx, Binary: binary, Data: data, Reply: make(chan error, 1), NoQueue: noQueue}
	t.system.Root.Send(t.root, &sendFrame{out: o})
	select {
	case err := <-o.Reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-t.done:
		return messages.ErrStopped
	}
}

// sendAsync writes a control frame nobody waits for (cancel, window_update,
// error answers); queued like any frame while disconnected.
func (t *Tunnel) sendAsync(f *wire.Frame) {
	if t.stopped.Load() {
		return
	}
	o := &messages.Outbound{Ctx: context.Background(), Data: wire.MustEncode(f), Reply: make(chan error, 1)}
	t.system.Root.Send(t.root, &sendFrame{out: o})
}

func (t *Tunnel) stateChanged(s messages.StateChanged) {
	if t.cfg.OnStateChange != nil {
		t.cfg.OnStateChange(s)
	}
}
