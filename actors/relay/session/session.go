package session

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
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
	// DefaultPingInterval is how often the session pings its supervisor: 15 s.
	DefaultPingInterval = 15 * time.Second
	// DefaultWriteTimeout bounds each write to the socket: 10 s.
	DefaultWriteTimeout = 10 * time.Second
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
	// PingInterval, default DefaultPingInterval (15 s).
	PingInterval time.Duration
	// WriteTimeout, default DefaultWriteTimeout (10 s).
	WriteTimeout time.Duration
	// ReadLimit is the largest message accepted; a larger one closes the
	// connection with 1009. Default wire.DefaultReadLimit (16 MiB).
	ReadLimit int64
	// Window is the flow-control window of each streamed response body.
	// Default wire.DefaultWindow (1 MiB).
	Window int64
	// Running, if set, counts the session's reader and writer goroutines,
	// so that its owner can wait for them to end after stopping the
	// session (they close the socket on their own shortly after).
	Running *sync.WaitGroup
	// BytesIn and BytesOut, if set, count the bytes of the messages read
	// and written.
	BytesIn, BytesOut prometheus.Counter
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
		Window:           wire.DefaultWindow,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"AuthTimeout", c.AuthTimeout}, {"HeartbeatTimeout", c.HeartbeatTimeout}, {"PingInterval", c.PingInterval}, {"WriteTimeout", c.WriteTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("session: %s must be positive, got %v", d.name, d.v)
		}
	}
	if c.ReadLimit < 1 {
		return errors.New("session: ReadLimit must be positive")
	}
	if c.Window < 1 {
		return errors.New("session: Window must be positive")
	}
	return nil
}

// Props returns the props of a session that owns conn, a freshly upgraded
// connection from a supervisor at remoteAddr. cfg must be valid.
func Props(conn *websocket.Conn, remoteAddr string, cfg Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newSession(conn, remoteAddr, cfg) })
}

type phase int

const (
	awaitingAuth   phase = iota // nothing received yet
	authenticating              // auth frame sent to the auth manager
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
	// registered is set once SessionUp went to the router, which must then
	// hear SessionDown.
	registered bool
	cause      Cause
	code       int // close code, when a peer gave it (TakenOver)
	link       *link
	log        *logrus.Entry

	authTimer scheduler.CancelFunc
	calls     map[string]*call
	// cancelled holds ids this side cancelled or refused: late frames about
	// them are dropped without a word. complained holds ids already
	// answered with an error frame, which is said once.
	cancelled  *idSet
	complained *idSet
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
		calls:      make(map[string]*call),
		cancelled:  newIDSet(rememberedIDs),
		complained: newIDSet(rememberedIDs),
		log:        logger.WithFields(logrus.Fields{"actor": "session", "session_id": id, "remote_addr": addr}),
	}
}

func (s *session) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		s.start(ctx)
		return
	case *actor.Stopping, *actor.Restarting:
		// A session owns its socket, so a restart closes it as a stop does
		// (the new instance then finds it closed, and stops).
		s.stopping(ctx)
		return
	}
	if s.phase == closed {
		// Stopping: what the goroutines sent before they were told is moot.
		return
	}
	switch msg := ctx.Message().(type) {
	case *inbound:
		s.onFrame(ctx, msg.frame)
	case *inboundChunk:
		if s.phase != open {
			s.log.Warn("Binary message before authentication; closing")
			s.close(ctx, NotAuthFirst)
			return
		}
		s.onChunk(msg.id, msg.data)
	case *malformed:
		s.log.WithError(msg.err).Warn("Malformed frame from the supervisor")
		s.close(ctx, Malformed)
	case *readFailed:
		s.onReadFailed(ctx, msg.err)
	case *writeFailed:
		s.log.WithError(msg.err).Warn("Writing to the supervisor failed")
		s.close(ctx, WriteFailed)
	case *authTimedOut:
		if s.phase != open {
			s.log.WithField("delay", s.cfg.AuthTimeout.String()).Warn("No valid auth in time; closing")
			s.close(ctx, AuthTimeout)
		}
	case *relaymsg.AuthResult:
		s.onAuthResult(ctx, msg)
	case *relaymsg.Registered:
		s.onRegistered()
	case *relaymsg.Dispatch:
		s.onDispatch(msg.Exchange)
	case *relaymsg.Cancel:
		s.onCancel(msg.MessageID)
	case *relaymsg.Release:
		if c := s.calls[msg.MessageID]; c != nil {
			s.drop(msg.MessageID, c, errReleased)
		}
	case *relaymsg.CloseSession:
		s.code = msg.Code
		s.log.WithField("reason", msg.Reason).Info("Session replaced")
		s.close(ctx, TakenOver)
	}
}

type authTimedOut struct{}

func (s *session) start(ctx actor.Context) {
	s.conn.SetReadLimit(s.cfg.ReadLimit)
	system := ctx.ActorSystem()
	self := ctx.Self()
	s.link = &link{
		conn:       s.conn,
		out:        newOutbox(),
		cfg:        s.cfg,
		closing:    new(atomic.Bool),
		report:     func(msg any) { system.Root.Send(self, msg) },
		readerDone: make(chan struct{}),
	}
	s.cfg.Running.Add(2)
	go s.link.read()
	go s.link.write()
	s.authTimer = scheduler.NewTimerScheduler(ctx).SendOnce(s.cfg.AuthTimeout, self, &authTimedOut{})
	s.log.Debug("Supervisor connected")
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
	if s.phase != closed {
		// Stopped from outside: the relay is shutting down.
		s.cause, s.phase = Shutdown, closed
		s.link.closing.Store(true)
	}
	s.authTimer()
	code, reason := causes[s.cause].code, causes[s.cause].reason
	if s.code != 0 {
		code = s.code
	}
	s.link.out.close(code, reason)
	for id, c := range s.calls {
		s.drop(id, c, relaymsg.ErrTunnelLost)
	}
	if s.registered {
		ctx.Send(ctx.Parent(), &relaymsg.SessionDown{Tunnel: s.tunnel, SessionID: s.id, Session: ctx.Self(), Reason: s.cause.String()})
	}
	entry := s.log.WithFields(logrus.Fields{"failure_type": s.cause.String(), "code": code})
	switch s.cause {
	case PeerGone, Shutdown, TakenOver:
		entry.Info("Session closed")
	default:
		entry.Warn("Session closed")
	}
}
