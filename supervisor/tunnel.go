package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
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

	// begun is set once root holds the root's PID (see hooks.begun).
	begun atomic.Bool
	// sessions numbers authenticated sessions (see env.sessions).
	sessions atomic.Int64

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
	sinks map[route]messages.Sink
	lingering  []lingering                // resumable streams sent whole, until the relay has surely read their end
	lingerSize int64                      // the bytes they keep
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

type pendingRequest struct {
	reply chan result
	// sent: the request is on the wire, on via; losing that session loses
	// its answer.
	sent bool
	via  route
}

type inStream struct {
	r   *wire.StreamReader
	via route
}

type handled struct {
	id     string
	cancel context.CancelFunc
	key    key // where it is in handling: its response stream may move it
	via    route
}

type result struct {
	msg *messages.TunnelMessage
	err error
}

// Start validates cfg and starts the tunnel's supervision tree in system.
// A nil system makes one of the tunnel's own, which Stop shuts down; a host's
// system is never shut down by the tunnel. Start returns at once: the
// connections are made in the background (follow them with OnStateChange
// or Status).
func Start(system *actor.ActorSystem, cfg Config) (*Tunnel, error) {
	t, err := newTunnel(system, cfg)
	if err != nil {
		return nil, err
	}
	t.root = t.system.Root.SpawnPrefix(t.props(), "tunnel-"+cfg.Tunnel)
	t.begin()
	return t, nil
}

// SpawnUnder validates cfg and spawns the tunnel's supervision tree as a
// child of the host's actor whose context is parent (call it from that
// actor's Receive): the host's supervisor strategy then sees the tunnel's
// root as its child, restarts it should it ever fail, and stopping the
// host's actor stops the tunnel. Stop still closes the connections
// cleanly; the host's actor system is never shut down by the tunnel.
func SpawnUnder(parent actor.Context, cfg Config) (*Tunnel, error) {
	t, err := newTunnel(parent.ActorSystem(), cfg)
	if err != nil {
		return nil, err
	}
	t.root = parent.SpawnPrefix(t.props(), "tunnel-"+cfg.Tunnel)
	t.begin()
	return t, nil
}

func newTunnel(system *actor.ActorSystem, cfg Config) (*Tunnel, error) {
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, raw := range cfg.URLs() {
		if keyInClear(raw) {
			u, _ := url.Parse(raw)
			cfg.Logger.WithFields(logrus.Fields{"actor": "tunnel", "tunnel": cfg.Tunnel, "relay_host": u.Host}).
				Warn("Relay URL is ws:// to a host that is not loopback: the API key travels in clear; use wss://")
		}
	}
	t := &Tunnel{
		cfg:        cfg,
		system:     system,
		log:        cfg.Logger.WithFields(logrus.Fields{"actor": "tunnel", "tunnel": cfg.Tunnel}),
		done:       make(chan struct{}),
		pending:    map[string]*pendingRequest{},
		inStreams:  map[key]*inStream{},
		outStreams: map[key]*outStream{},
		handling:   map[key]*handled{},
		reported:   map[key]bool{},
		resuming:   map[string]*outStream{},
		resumable:  map[int]bool{},
		sinks:      map[route]messages.Sink{},
		ended:      map[int]int{},
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
	return t, nil
}

// props is the root's: the whole tree grows from it.
func (t *Tunnel) props() *actor.Props {
	e := env{
		cfg:      t.cfg,
		hooks:    hooks{deliver: t.deliver, lost: t.lost, state: t.stateChanged, acked: t.acked, begun: t.begun.Load},
		instance: uuid.NewString(),
		sessions: &t.sessions,
	}
	return actor.PropsFromProducer(func() actor.Actor { return newRoot(e) })
}

// begin lets the tree grow, once the root's PID is stored.
func (t *Tunnel) begin() {
	t.begun.Store(true)
	t.system.Root.Send(t.root, &begin{})
}

// PID is the supervision tree's root actor, for hosts that want to watch it.
func (t *Tunnel) PID() *actor.PID { return t.root }

// Send writes msg to the relay. It returns nil only once the frame (and, for
// a streamed body, every chunk and the stream end) is written on an
// authenticated connection. A request takes any authenticated connection
// (in turn); a response, an error or a cancel for a request of the relay
// goes back on the connection, and session, the request came on, and fails
// with ErrConnectionLost once that session is gone. While no connection is
// authenticated a request waits in a queue of at most MaxQueue frames,
// written in order once one is; a full queue, a stopped tunnel or an invalid
// message is an immediate error. Send blocks until written or ctx ends. A
// request without MessageID gets a new random one, set on msg.
//
// A body over InlineLimit, or a BodyStream, is sent as a stream under the
// per-stream window on the connection that took its first frame; losing
// that connection mid-stream fails Send.
func (t *Tunnel) Send(ctx context.Context, msg *messages.TunnelMessage) error {
	_, err := t.send(ctx, msg)
	return err
}

// send is Send, returning the route the message took.
func (t *Tunnel) send(ctx context.Context, msg *messages.TunnelMessage) (route, error) {
	f, body, err := t.frameOf(msg)
	if err != nil {
		return route{}, err
	}
	to := t.routeOf(ctx, f)
	if body == nil {
		return t.write(ctx, f, nil, to)
	}
	via, err := t.write(ctx, f, nil, to)
	if err != nil {
		return via, err
	}
	k := key{conn: via.conn, id: f.MessageID}
	out := &outStream{id: f.MessageID, win: wire.NewSendWindow(t.cfg.Window), via: via}
	t.mu.Lock()
	if _, dup := t.outStreams[k]; dup {
		t.mu.Unlock()
		return via, fmt.Errorf("%w: stream %s is already being sent", ErrDuplicateID, f.MessageID)
	}
	out.resumable = f.Type == wire.TypeResponse && t.cfg.ResumeStreams && t.resumable[via.conn]
	t.outStreams[k] = out
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		for k, o := range t.outStreams {
			if o == out { // under its first key, or the one a resume moved it to
				delete(t.outStreams, k)
			}
		}
		t.mu.Unlock()
	}()
	if err := t.sendBody(ctx, out, body); err != nil {
		return via, err
	}
	if out.resumable {
		t.linger(out)
	}
	return out.route(), nil
}

// routeOf pins an answer to the route of the request it answers: the
// relay's request the host is handling, or the host's own request being
// cancelled. Anything else may take any connection.
func (t *Tunnel) routeOf(ctx context.Context, f *wire.Frame) route {
	if f.Type == wire.TypeRequest {
		return anyRoute
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.pending[f.MessageID]; p != nil && p.sent && f.Type == wire.TypeCancel {
		return p.via
	}
	// A handler answers on its own request's route, which its context
	// carries: the relay may have sent the same id on another connection
	// too (a retry).
	if h, ok := ctx.Value(handlerKey{}).(*handled); ok && h.id == f.MessageID {
		return h.via
	}
	// An answer from outside a handler: the route of a request with that
	// id still being handled, if there is one.
	for k, h := range t.handling {
		if k.id == f.MessageID {
			return h.via
		}
	}
	return anyRoute
}

// handlerKey is the context key of the request a handler is answering.
type handlerKey struct{}

// streamPipelineDepth is how many chunks of one stream may be on their way
// to the socket at once. Waiting for each chunk's write before reading the
// next would cost a round trip through the actors per chunk; the stream's
// window still bounds the bytes in flight.
const streamPipelineDepth = 8

// pipeline writes a stream's chunks on its route without waiting for each,
// in order, keeping at most streamPipelineDepth unanswered.
type pipeline struct {
	t       *Tunnel
	via     route
	pending []chan error
}

// write sends the frame f, or when f is nil the encoded chunk.
func (p *pipeline) write(ctx context.Context, f *wire.Frame, chunk []byte) error {
	if len(p.pending) == streamPipelineDepth {
		if err := p.wait(ctx); err != nil {
			return err
		}
	}
	if p.t.stopped.Load() {
		return messages.ErrStopped
	}
	o := p.t.outbound(ctx, f, chunk, p.via)
	p.t.post(o)
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

// idempotent lists the methods whose requests may be sent twice with the
// effect of once (RFC 9110, section 9.2.2), less TRACE, which nobody tunnels.
var idempotent = map[string]bool{
	"GET": true, "HEAD": true, "OPTIONS": true, "PUT": true, "DELETE": true,
}

// retryable reports whether msg may be sent again on another connection
// after the one it went out on was lost before its answer: an idempotent
// method and a body kept whole in the frame.
func (t *Tunnel) retryable(msg *messages.TunnelMessage) bool {
	return t.cfg.RetryIdempotent && idempotent[strings.ToUpper(msg.Method)] &&
		msg.BodyStream == nil && len(msg.Body) <= t.cfg.InlineLimit
}

// Request sends a request and waits for its response (same message_id). An
// error frame in answer returns the message and an error wrapping ErrRemote.
// If ctx ends first, a cancel frame tells the relay the answer is no longer
// wanted. A streamed response body arrives in the result's BodyStream; read
// it to the end or Close it.
//
// A request whose connection is lost before its answer fails with
// ErrConnectionLost, unless it is idempotent (GET, HEAD, OPTIONS, PUT,
// DELETE) with an inline body and RetryIdempotent is set: then it is sent
// once more, on another connection if one is up. A request that never left
// (its connection failed first) always goes on another connection.
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
	answer, err := t.request(ctx, msg)
	if errors.Is(err, messages.ErrConnectionLost) && ctx.Err() == nil && t.retryable(msg) {
		t.log.WithFields(logrus.Fields{"message_id": msg.MessageID, "method": msg.Method}).Info("Connection lost before the answer; sending the idempotent request again")
		answer, err = t.request(ctx, msg)
	}
	return answer, err
}

// request is one try of Request.
func (t *Tunnel) request(ctx context.Context, msg *messages.TunnelMessage) (*messages.TunnelMessage, error) {
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
	via, err := t.send(ctx, msg)
	if err != nil {
		forget()
		return nil, err
	}
	t.mu.Lock()
	ended, seen := t.ended[via.conn]
	lost := seen && ended >= via.epoch
	p.sent, p.via = true, via
	t.mu.Unlock()
	if lost {
		// The session ended between the write and now: its loss did not
		// see this request, and its answer cannot come.
		forget()
		return nil, fmt.Errorf("%w while the request was being sent; its answer cannot come", messages.ErrConnectionLost)
	}
	select {
	case r := <-p.reply:
		return r.msg, r.err
	case <-ctx.Done():
		forget()
		t.sendAsync(&wire.Frame{Type: wire.TypeCancel, MessageID: id}, via)
		return nil, ctx.Err()
	case <-t.done:
		return nil, messages.ErrStopped
	}
}

// Status returns the tunnel's status: each connection's, answered by its
// health ledger, and their aggregate at the top level (see aggregate).
func (t *Tunnel) Status() Status {
	var each []Status
	if !t.stopped.Load() {
		each = t.statuses()
	}
	return aggregate(t.cfg, each)
}

// statuses asks every connection's ledger, all at once.
func (t *Tunnel) statuses() []Status {
	res, err := t.system.Root.RequestFuture(t.root, &getPaths{}, statusTimeout).Result()
	ps, ok := res.(*paths)
	if err != nil || !ok {
		return nil
	}
	futures := make([]*actor.Future, len(ps.pids))
	for i, pid := range ps.pids {
		futures[i] = t.system.Root.RequestFuture(pid, &messages.GetStatus{}, statusTimeout)
	}
	each := make([]Status, len(futures))
	for i, f := range futures {
		res, err := f.Result()
		s, ok := res.(*messages.Status)
		if err != nil || !ok {
			return nil
		}
		each[i] = *s
	}
	return each
}

// Reconnect drops every connection and connects again at once, or cuts
// short the wait for the next attempt (even an open breaker's): for a host
// that knows the network changed.
func (t *Tunnel) Reconnect() {
	if !t.stopped.Load() {
		t.system.Root.Send(t.root, &reconnect{})
	}
}

// Stop closes the connections with a close frame (bounded by CloseTimeout),
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
	t.failAll(messages.ErrStopped)
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

// outbound makes the message for one WebSocket message on route to: the
// frame f, which the connection encodes as its session negotiated, or when
// f is nil the encoded chunk.
func (t *Tunnel) outbound(ctx context.Context, f *wire.Frame, chunk []byte, to route) *messages.Outbound {
	o := &messages.Outbound{Ctx: ctx, Frame: f, Reply: make(chan error, 1)}
	if f == nil {
		o.Binary, o.Data = true, chunk
	}
	if to != anyRoute {
		o.Pinned, o.Conn, o.Epoch = true, to.conn, to.epoch
	}
	return o
}

// write hands one WebSocket message to the root and waits for its answer;
// the route is the one it took.
func (t *Tunnel) write(ctx context.Context, f *wire.Frame, chunk []byte, to route) (route, error) {
	if t.stopped.Load() {
		return route{}, messages.ErrStopped
	}
	o := t.outbound(ctx, f, chunk, to)
	t.post(o)
	select {
	case err := <-o.Reply:
		if err != nil {
			return route{}, err
		}
		return route{conn: o.Conn, epoch: o.Epoch}, nil
	case <-ctx.Done():
		return route{}, ctx.Err()
	case <-t.done:
		return route{}, messages.ErrStopped
	}
}

// sendAsync writes a control frame nobody waits for (cancel, window_update,
// error answers) on route to.
func (t *Tunnel) sendAsync(f *wire.Frame, to route) {
	if t.stopped.Load() {
		return
	}
	t.post(t.outbound(context.Background(), f, nil, to))
}

// post hands o to the socket of the session it is pinned to, when frames
// came in on that session (no mailbox hop: an answer goes back the way its
// request came), and otherwise to the root, which picks a connection or
// queues o.
func (t *Tunnel) post(o *messages.Outbound) {
	if o.Pinned {
		t.mu.Lock()
		sink := t.sinks[route{conn: o.Conn, epoch: o.Epoch}]
		t.mu.Unlock()
		if sink != nil {
			if !sink.Push(o) {
				o.Answer(fmt.Errorf("%w (connection %d, session %d ended)", messages.ErrConnectionLost, o.Conn, o.Epoch))
			}
			return
		}
	}
	t.system.Root.Send(t.root, &sendFrame{out: o})
}

func (t *Tunnel) stateChanged(s messages.StateChanged) {
	if s.State == messages.Authenticated {
		t.mu.Lock()
		t.resumable[s.Connection] = s.Resume
		t.mu.Unlock()
	}
	if t.cfg.OnStateChange != nil {
		t.cfg.OnStateChange(s)
	}
}
