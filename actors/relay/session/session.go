package session

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Defaults of Config.
const (
	// DefaultAuthTimeout is how long a new connection has to authenticate: 10 s.
	DefaultAuthTimeout = 10 * time.Second
	// DefaultHeartbeatTimeout is how long a supervisor may send nothing
	// (no frame, no pong) before it is dropped: 30 s.
	DefaultHeartbeatTimeout = 30 * time.Second
	// DefaultPingInterval is 0: the session sends no WebSocket pings. The
	// supervisor's heartbeat frames, every 15 s, keep the session alive and
	// prove it to both sides; pings as well would double the idle traffic.
	DefaultPingInterval = 0
	// DefaultWriteTimeout bounds each write to the socket: 10 s.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultAuthReadLimit is the largest message read before auth_ok: 4 KiB,
	// room for an auth frame with a long key and client string.
	DefaultAuthReadLimit = 4 << 10
	// DefaultMaxReplyQueue is how many bytes of answers to the supervisor
	// (heartbeat_acks, error frames) may wait for its socket: 1 MiB, some
	// ten thousand acks. A supervisor that lets more pile up is not reading,
	// and is dropped.
	DefaultMaxReplyQueue = 1 << 20
	// rememberedIDs bounds the ids a session remembers having cancelled or
	// complained about.
	rememberedIDs = 4096
)

// Config configures a session.
type Config struct {
	// AuthTimeout, default DefaultAuthTimeout (10 s).
	AuthTimeout time.Duration
	// HeartbeatTimeout, default DefaultHeartbeatTimeout (30 s).
	HeartbeatTimeout time.Duration
	// PingInterval, default DefaultPingInterval (0: no pings).
	PingInterval time.Duration
	// WriteTimeout, default DefaultWriteTimeout (10 s).
	WriteTimeout time.Duration
	// ReadLimit is the largest message accepted once authenticated; a
	// larger one closes the connection with 1009. Default
	// wire.DefaultReadLimit (16 MiB).
	ReadLimit int64
	// Encodings are the frame encodings besides JSON the session accepts
	// when the supervisor's auth offers them: default [bin1]. The first the
	// supervisor prefers is named in auth_ok; empty keeps JSON text.
	Encodings []string
	// AuthReadLimit is the largest message accepted before auth_ok (1009
	// beyond). Default DefaultAuthReadLimit (4 KiB).
	AuthReadLimit int64
	// MaxReplyQueue bounds the bytes of answers waiting for the socket; a
	// supervisor that does not read is dropped (SLOW_READER) rather than
	// buffered. Default DefaultMaxReplyQueue (1 MiB).
	MaxReplyQueue int
	// Window is the flow-control window of each streamed response body.
	// Default wire.DefaultWindow (1 MiB).
	Window int64
	// Resume lets a supervisor that asks for it (auth with resume) move
	// its response streams to another of its connections: auth_ok says
	// resume, and the bodies this session still feeds when it ends go to
	// the router as orphans instead of failing. Set it only when the
	// router keeps orphans (a ResumeTimeout). Default true.
	Resume bool
	// Budget, if set, bounds the bytes buffered by the response bodies of
	// every session sharing it (see wire.Budget): a stream whose public
	// client lags while the budget is spent is cut off.
	Budget *wire.Budget
	// Running, if set, counts the session's reader and writer goroutines,
	// so that its owner can wait for them to end after stopping the
	// session (they close the socket on their own shortly after).
	Running *sync.WaitGroup
	// BytesIn and BytesOut, if set, count the bytes of the messages read
	// and written.
	BytesIn, BytesOut prometheus.Counter
	// Router, if set, receives what the session tells the router
	// (Response, Failed, Resume, HandedOver, SessionDown) straight, rather
	// than through the parent: one mailbox less on every response. nil
	// sends them to the parent.
	Router *actor.PID
	// Logger; nil discards.
	Logger *logrus.Logger
}

// DefaultConfig returns a Config with every default set.
func DefaultConfig() Config {
	return Config{
		AuthTimeout:      DefaultAuthTimeout,
		HeartbeatTimeout: DefaultHeartbeatTimeout,
		PingInterval:     DefaultPingInterval,
		WriteTimeout:     DefaultWriteTimeout,
		ReadLimit:        wire.DefaultReadLimit,
		AuthReadLimit:    DefaultAuthReadLimit,
		MaxReplyQueue:    DefaultMaxReplyQueue,
		Window:           wire.DefaultWindow,
		Resume:           true,
		Encodings:        []string{wire.EncodingBin1},
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"AuthTimeout", c.AuthTimeout}, {"HeartbeatTimeout", c.HeartbeatTimeout}, {"WriteTimeout", c.WriteTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("session: %s must be positive, got %v", d.name, d.v)
		}
	}
	if c.PingInterval < 0 {
		return fmt.Errorf("session: PingInterval must not be negative, got %v", c.PingInterval)
	}
	if c.ReadLimit < 1 {
		return errors.New("session: ReadLimit must be positive")
	}
	if c.AuthReadLimit < 1 || c.AuthReadLimit > c.ReadLimit {
		return fmt.Errorf("session: AuthReadLimit must be 1 to ReadLimit, got %d", c.AuthReadLimit)
	}
	if c.MaxReplyQueue < 1 {
		return fmt.Errorf("session: MaxReplyQueue must be positive, got %d", c.MaxReplyQueue)
	}
	if c.Window < 1 {
		return errors.New("session: Window must be positive")
	}
	return nil
}

// Props returns the props of a session that owns conn, a freshly upgraded
// connection from a supervisor at remoteAddr. cfg must be valid.
//
// The props hand conn to the first session they produce and forget it: a
// stopped actor's context, and with it its props, can stay reachable
// (protoactor's child set keeps stale slots), and must then hold nothing of
// the connection. A second instance, were the session ever restarted, finds
// no connection and stops.
func Props(conn *websocket.Conn, remoteAddr string, cfg Config) *actor.Props {
	h := &handoff{conn: conn}
	return actor.PropsFromProducer(func() actor.Actor { return newSession(h.take(), remoteAddr, cfg) })
}

// handoff holds a connection until one session takes it. Producers run on
// the spawning actor's goroutine, then on the session's own (a restart),
// never at once.
type handoff struct{ conn *websocket.Conn }

func (h *handoff) take() *websocket.Conn {
	c := h.conn
	h.conn = nil
	return c
}

type phase int

const (
	awaitingAuth   phase = iota // nothing received yet
	authenticating              // auth frame sent to the auth manager
	refusing                    // key wrong, the answer held for a while
	registering                 // key good, waiting for the router
	open                        // auth_ok sent
	closed
)

// call is one request dispatched on this session, until the router lets go.
type call struct {
	upload   *wire.SendWindow   // the request body's window, while it streams
	body     *wire.StreamReader // the response body, while it streams
	answered bool               // a response frame came
}

type session struct {
	cfg    Config
	conn   *websocket.Conn
	addr   string
	id     string
	tunnel string
	phase  phase
	// instance and index, from the auth frame, name the supervisor process
	// and which of its connections this is.
	instance string
	index    int
	// resume: auth_ok said resume, so the supervisor may move response
	// streams to and from this session.
	resume bool
	// encoding is the frame encoding chosen from the auth frame's offer.
	encoding string
	// registered is set once SessionUp went to the router, which must then
	// hear SessionDown.
	registered bool
	cause      Cause
	// code and reason, when set, replace the cause's close code and reason:
	// the router's, for a session replaced or refused.
	code   int
	reason string
	link   *link
	// client is the auth frame's client string, cut short for the log.
	client string
	// logger is cfg.Logger, or one that discards: see logs.
	logger *logrus.Logger

	timers    *scheduler.TimerScheduler
	authTimer scheduler.CancelFunc
	// refuseTimer ends the wait of a refusal the auth manager held.
	refuseTimer scheduler.CancelFunc
	// calls and the id sets are made on first use: a connection that never
	// authenticates holds none of them.
	calls map[string]*call
	// cancelled holds ids this side cancelled or refused: late frames about
	// them are dropped without a word. complained holds ids already
	// answered with an error frame, which is said once.
	cancelled  idSet
	complained idSet
}

func newSession(conn *websocket.Conn, addr string, cfg Config) *session {
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	if cfg.Running == nil {
		cfg.Running = new(sync.WaitGroup)
	}
	id := uuid.NewString()
	return &session{
		cfg:        cfg,
		conn:       conn,
		addr:       addr,
		id:         id,
		cancelled:  idSet{limit: rememberedIDs},
		complained: idSet{limit: rememberedIDs},
		logger:     logger,
	}
}

func (s *session) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		s.start(ctx)
		return
	case *actor.Stopping, *actor.Restarting:
		// A session owns its socket, so a restart closes it as a stop does
		// (the new instance then finds no socket, and stops).
		s.stopping(ctx)
		return
	case *actor.Stopped:
		// Keep nothing: a stale reference to this actor, protoactor's or
		// anyone's, must not hold the connection, its streams or its ids.
		*s = session{phase: closed}
		return
	}
	if s.phase == closed {
		// Stopping: what the goroutines sent before they were told is moot.
		return
	}
	msg := ctx.Message()
	if u, ok := msg.(*undecoded); ok {
		msg = decode(u.kind, u.data, false)
	}
	switch msg := msg.(type) {
	case *inbound:
		s.onFrame(ctx, msg.frame)
	case *inboundChunk:
		if s.phase != open {
			s.logs().Warn("Binary message before authentication; closing")
			s.close(ctx, NotAuthFirst)
			return
		}
		s.onChunk(msg.id, msg.data)
	case *malformed:
		s.logs().WithError(msg.err).Warn("Malformed frame from the supervisor")
		s.close(ctx, Malformed)
	case *readFailed:
		s.onReadFailed(ctx, msg.err)
	case *writeFailed:
		s.logs().WithError(msg.err).Warn("Writing to the supervisor failed")
		s.close(ctx, WriteFailed)
	case *backlogged:
		s.logs().WithField("limit", s.cfg.MaxReplyQueue).Warn("Supervisor is not reading its answers; dropping it")
		s.close(ctx, SlowReader)
	case *authTimedOut:
		switch s.phase {
		case open:
		case refusing:
			s.refuse(ctx)
		default:
			s.logs().WithField("delay", s.cfg.AuthTimeout.String()).Warn("No valid auth in time; closing")
			s.close(ctx, AuthTimeout)
		}
	case *refuseNow:
		if s.phase == refusing {
			s.refuse(ctx)
		}
	case *relaymsg.AuthResult:
		s.onAuthResult(ctx, msg)
	case *relaymsg.Registered:
		s.onRegistered(ctx, msg)
	case *relaymsg.Dispatch:
		s.onDispatch(msg.Exchange)
	case *relaymsg.Cancel:
		s.onCancel(msg.MessageID)
	case *relaymsg.Release:
		if c := s.calls[msg.MessageID]; c != nil {
			s.drop(msg.MessageID, c, errReleased)
		}
	case *relaymsg.Evict:
		if s.phase != open {
			s.logs().Debug("Unauthenticated connection evicted to make room")
			s.close(ctx, Evicted)
		}
	case *relaymsg.Handover:
		s.onHandover(ctx, msg)
	case *relaymsg.Adopt:
		s.onAdopt(msg)
	case *relaymsg.ResumeRefused:
		s.refuseResume(msg.MessageID)
	case *relaymsg.CloseSession:
		s.code, s.reason = msg.Code, msg.Reason
		if msg.Code == wire.ClosePolicy {
			// Only a reload that revoked the key closes a live session so.
			s.logs().WithField("reason", msg.Reason).Info("Session closed: its key was revoked")
			s.close(ctx, KeyRevoked)
			return
		}
		s.logs().WithField("reason", msg.Reason).Info("Session replaced")
		s.close(ctx, TakenOver)
	}
}

// router is where the session's reports for the router go.
func (s *session) router(ctx actor.Context) *actor.PID {
	if s.cfg.Router != nil {
		return s.cfg.Router
	}
	return ctx.Parent()
}

// logs is the session's log entry, made when a line is logged rather than
// kept: an idle session holds no map of fields.
func (s *session) logs() *logrus.Entry {
	fields := logrus.Fields{"actor": "session", "session_id": s.id, "remote_addr": s.addr}
	if s.tunnel != "" { // the auth frame came
		fields["tunnel"], fields["client"], fields["instance"] = wire.Excerpt(s.tunnel), s.client, wire.Excerpt(s.instance)
		fields["index"], fields["resume"] = s.index, s.resume
	}
	return s.logger.WithFields(fields)
}

// Timer messages: the auth timeout, the end of a held refusal.
type (
	authTimedOut struct{}
	refuseNow    struct{}
)

// start runs the reader. The writer waits until there is something to
// write for an authenticated session, or a close to send: a connection that
// never authenticates costs one goroutine.
func (s *session) start(ctx actor.Context) {
	if s.conn == nil {
		s.phase = closed
		ctx.Stop(ctx.Self())
		return
	}
	system := ctx.ActorSystem()
	self := ctx.Self()
	s.link = newLink(s.conn, s.cfg, func(msg any) { system.Root.Send(self, msg) })
	s.link.startReader()
	s.timers = scheduler.NewTimerScheduler(ctx)
	s.authTimer = s.timers.SendOnce(s.cfg.AuthTimeout, self, &authTimedOut{})
	s.logs().Debug("Supervisor connected")
}

// endCalls lets go of every call once the outbox is closed, and returns the
// ids of those whose request frame was written, or is being written: they
// may have reached the supervisor. A call whose frame never left keeps its
// upload window open, since the exchange may go on through another
// session, whose writer then hands the front its write. With resume, the
// response bodies still streaming in are returned as orphans rather than
// failed, their grants rebound to nothing since this socket is gone: the
// supervisor may resume them on another connection.
func (s *session) endCalls() (written []string, orphans []relaymsg.Orphan) {
	unsent := s.link.out.unsentIDs()
	for id, c := range s.calls {
		if unsent[id] {
			c.upload = nil
		} else {
			written = append(written, id)
		}
		if s.resume && c.body != nil {
			c.body.Rebind(discardGrant)
			orphans = append(orphans, relaymsg.Orphan{MessageID: id, Body: c.body})
			c.body = nil
		}
		s.drop(id, c, relaymsg.ErrTunnelLost)
	}
	return written, orphans
}

// close ends the session: its stopping handler does the rest.
func (s *session) close(ctx actor.Context, cause Cause) {
	if s.phase == closed {
		return
	}
	s.cause = cause
	s.phase = closed
	s.link.closing.Store(true)
	ctx.Stop(ctx.Self())
}

func (s *session) stopping(ctx actor.Context) {
	if s.link == nil {
		return // never started: no connection
	}
	if s.phase != closed {
		// Stopped from outside: the relay is shutting down.
		s.cause, s.phase = Shutdown, closed
		s.link.closing.Store(true)
	}
	s.authTimer()
	if s.refuseTimer != nil {
		s.refuseTimer()
	}
	code, reason := causes[s.cause].code, causes[s.cause].reason
	if s.code != 0 {
		code = s.code
	}
	if s.reason != "" {
		reason = s.reason
	}
	s.link.out.close(code, reason)
	s.link.proceed()
	if s.cause == AuthTimeout {
		ctx.Send(ctx.Parent(), &relaymsg.AuthTimedOut{Addr: s.addr})
	}
	written, orphans := s.endCalls()
	if s.registered {
		ctx.Send(s.router(ctx), &relaymsg.SessionDown{Tunnel: s.tunnel, SessionID: s.id, Session: ctx.Self(), Reason: s.cause.String(),
			Written: written, Orphans: orphans})
	}
	entry := s.logs().WithFields(logrus.Fields{"failure_type": s.cause.String(), "code": code})
	switch {
	case !s.registered:
		// Never authenticated: the cause was logged as it came, if it
		// matters, and an unauthenticated flood must not double the log.
		entry.Debug("Session closed")
	case s.cause == PeerGone, s.cause == Shutdown, s.cause == TakenOver:
		entry.Info("Session closed")
	default:
		entry.Warn("Session closed")
	}
}
