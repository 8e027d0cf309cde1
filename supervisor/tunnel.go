package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/supervisor/internal/datapath"
)

// The data path's errors, also under these names: they are the
// messages package's, where every public error of the tunnel lives.
var (
	// ErrInvalidMessage is wrapped by Send and Request for a message they
	// cannot put on the wire (no type, an unknown type, a response without id).
	ErrInvalidMessage = messages.ErrInvalidMessage
	// ErrRemote is wrapped by Request when the relay answered with an error frame.
	ErrRemote = messages.ErrRemote
	// ErrDuplicateID: a message with this message_id is already in flight.
	ErrDuplicateID = messages.ErrDuplicateID
)

// Tunnel is a running tunnel supervisor: the supervision tree in an actor
// system, and the API a host uses to send, receive and watch. All methods are
// safe for concurrent use.
type Tunnel struct {
	cfg       Config
	system    *actor.ActorSystem
	ownSystem bool
	root      *actor.PID
	log       *logrus.Entry
	// data owns what travels on the connections (requests and their
	// answers, streams, the host's handlers); the tree hands it inbound
	// frames and losses directly (see props). The Tunnel owns the tree's
	// life.
	data *datapath.Plane

	// stopped keeps Status and Reconnect from asking actors that are gone.
	stopped  atomic.Bool
	stopOnce sync.Once

	// begun is set once root holds the root's PID (see hooks.begun).
	begun atomic.Bool
	// sessions numbers authenticated sessions (see env.sessions).
	sessions atomic.Int64
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
		cfg:    cfg,
		system: system,
		log:    cfg.Logger.WithFields(logrus.Fields{"actor": "tunnel", "tunnel": cfg.Tunnel}),
	}
	var handle func(context.Context, *messages.TunnelMessage)
	if cfg.OnMessage != nil {
		handle = func(ctx context.Context, msg *messages.TunnelMessage) { cfg.OnMessage(ctx, t, msg) }
	}
	t.data = datapath.New(datapath.Config{
		InlineLimit: cfg.InlineLimit, ChunkSize: cfg.ChunkSize, Window: cfg.Window,
		RetryIdempotent: cfg.RetryIdempotent, ResumeStreams: cfg.ResumeStreams, ResumeTimeout: cfg.ResumeTimeout,
		Log: t.log,
		// Read when a frame is posted: by then Start has stored the root.
		Post:   func(o *actormsg.Outbound) { t.system.Root.Send(t.root, &sendFrame{out: o}) },
		Handle: handle,
	})
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
	return t, nil
}

// props is the root's: the whole tree grows from it.
func (t *Tunnel) props() *actor.Props {
	e := env{
		cfg:      t.cfg,
		hooks:    hooks{deliver: t.data.Deliver, lost: t.data.Lost, state: t.stateChanged, acked: t.data.Acked, begun: t.begun.Load},
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

// stateChanged tells the data path, then the host.
func (t *Tunnel) stateChanged(s messages.StateChanged) {
	t.data.StateChanged(s)
	if t.cfg.OnStateChange != nil {
		t.cfg.OnStateChange(s)
	}
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
	return t.data.Send(ctx, msg)
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
	return t.data.Request(ctx, msg)
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
	t.data.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- t.system.Root.StopFuture(t.root).Wait() }()
	var err error
	select {
	case err = <-stopped:
	case <-ctx.Done():
		err = fmt.Errorf("supervisor: stopping the actors: %w", ctx.Err())
	}
	if drainErr := t.data.Drain(ctx); drainErr != nil {
		err = errors.Join(err, drainErr)
	}
	if t.ownSystem {
		t.system.Shutdown()
	}
	t.log.Info("Tunnel stopped")
	return err
}
