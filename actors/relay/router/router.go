package router

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Defaults of Config.
const (
	// DefaultRequestTimeout is how long a request waits for its response
	// frame: 60 s.
	DefaultRequestTimeout = 60 * time.Second
)

// Config configures the router.
type Config struct {
	// RequestTimeout bounds the wait for a response frame (not for the end
	// of a streamed body). Default DefaultRequestTimeout (60 s).
	RequestTimeout time.Duration
	// Logger; nil discards.
	Logger *logrus.Logger
}

// DefaultConfig returns a Config with every default set.
func DefaultConfig() Config {
	return Config{RequestTimeout: DefaultRequestTimeout}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.RequestTimeout <= 0 {
		return errors.New("router: RequestTimeout must be positive")
	}
	return nil
}

// Props returns the router's props. cfg must be valid.
func Props(cfg Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newRouter(cfg) })
}

// pending is one exchange between Forward and Done.
type pending struct {
	ex       *relaymsg.Exchange
	session  *actor.PID
	answered bool                 // the exchange has its Outcome
	cancel   scheduler.CancelFunc // the request timeout, until the response
}

type timedOut struct{ id string }

type router struct {
	cfg     Config
	tunnels map[string]*actor.PID
	pending map[string]*pending
	timers  *scheduler.TimerScheduler
	log     *logrus.Entry
}

func newRouter(cfg Config) *router {
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	return &router{
		cfg:     cfg,
		tunnels: make(map[string]*actor.PID),
		pending: make(map[string]*pending),
		log:     logger.WithField("actor", "router"),
	}
}

func (r *router) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		r.timers = scheduler.NewTimerScheduler(ctx)
	case *relaymsg.SessionUp:
		r.sessionUp(ctx, msg)
	case *relaymsg.SessionDown:
		r.sessionDown(msg)
	case *relaymsg.Forward:
		r.forward(ctx, msg.Exchange)
	case *relaymsg.Response:
		r.response(msg)
	case *relaymsg.Failed:
		r.failed(msg)
	case *relaymsg.Done:
		r.done(ctx, msg)
	case *timedOut:
		r.timeout(ctx, msg.id)
	case *relaymsg.ListTunnels:
		names := make([]string, 0, len(r.tunnels))
		for name := range r.tunnels {
			names = append(names, name)
		}
		slices.Sort(names)
		ctx.Respond(&relaymsg.Tunnels{Names: names})
	case *actor.Stopping, *actor.Restarting:
		for id, p := range r.pending {
			r.finish(id, p, relaymsg.Outcome{Status: http.StatusServiceUnavailable, Error: "relay shutting down"})
		}
	}
}

func (r *router) sessionUp(ctx actor.Context, msg *relaymsg.SessionUp) {
	old := r.tunnels[msg.Tunnel]
	r.tunnels[msg.Tunnel] = msg.Session
	ctx.Respond(&relaymsg.Registered{})
	if old != nil && !old.Equal(msg.Session) {
		r.log.WithFields(logrus.Fields{"tunnel": msg.Tunnel, "session_id": msg.SessionID}).
			Warn("A new session took the tunnel over; closing the old one")
		ctx.Send(old, &relaymsg.CloseSession{Code: wire.CloseNormal, Reason: "replaced by a newer session"})
	}
}

func (r *router) sessionDown(msg *relaymsg.SessionDown) {
	if cur := r.tunnels[msg.Tunnel]; cur != nil && cur.Equal(msg.Session) {
		delete(r.tunnels, msg.Tunnel)
	}
	for id, p := range r.pending {
		if !p.session.Equal(msg.Session) {
			continue
		}
		// Answered exchanges learn of the loss from their body stream,
		// which the session failed; the rest get a 502 here.
		r.finish(id, p, relaymsg.Outcome{Status: http.StatusBadGateway, Error: "tunnel lost before the response"})
	}
}

func (r *router) forward(ctx actor.Context, ex *relaymsg.Exchange) {
	id := ex.ID()
	session := r.tunnels[ex.Tunnel]
	switch {
	case session == nil:
		answer(ex, relaymsg.Outcome{Status: http.StatusServiceUnavailable, Error: fmt.Sprintf("no tunnel %q connected", ex.Tunnel)})
		return
	case r.pending[id] != nil:
		answer(ex, relaymsg.Outcome{Status: http.StatusInternalServerError, Error: "duplicate message_id"})
		return
	}
	p := &pending{ex: ex, session: session}
	p.cancel = r.timers.SendOnce(r.cfg.RequestTimeout, ctx.Self(), &timedOut{id: id})
	r.pending[id] = p
	ctx.Send(session, &relaymsg.Dispatch{Exchange: ex})
}

func (r *router) response(msg *relaymsg.Response) {
	p := r.pending[msg.MessageID]
	if p == nil || p.answered {
		// Too late (timed out, or the front gave up): the session was told
		// to cancel, and nobody will read this body.
		if msg.Body != nil {
			_ = msg.Body.Close()
		}
		return
	}
	p.answered = true
	p.cancel()
	answer(p.ex, relaymsg.Outcome{Response: msg.Frame, Body: msg.Body})
}

func (r *router) failed(msg *relaymsg.Failed) {
	if p := r.pending[msg.MessageID]; p != nil && !p.answered {
		r.finish(msg.MessageID, p, relaymsg.Outcome{Status: http.StatusBadGateway, Error: "tunnel: " + msg.Error})
	}
}

func (r *router) done(ctx actor.Context, msg *relaymsg.Done) {
	p := r.pending[msg.MessageID]
	if p == nil {
		return
	}
	r.forget(msg.MessageID, p)
	if msg.Cancel || !p.answered {
		ctx.Send(p.session, &relaymsg.Cancel{MessageID: msg.MessageID})
	} else {
		ctx.Send(p.session, &relaymsg.Release{MessageID: msg.MessageID})
	}
}

func (r *router) timeout(ctx actor.Context, id string) {
	p := r.pending[id]
	if p == nil || p.answered {
		return
	}
	r.log.WithFields(logrus.Fields{"tunnel": p.ex.Tunnel, "message_id": id, "delay": r.cfg.RequestTimeout.String()}).
		Warn("No response through the tunnel in time; cancelling the request")
	r.finish(id, p, relaymsg.Outcome{Status: http.StatusGatewayTimeout, Error: fmt.Sprintf("no response from tunnel %q within %v", p.ex.Tunnel, r.cfg.RequestTimeout)})
	ctx.Send(p.session, &relaymsg.Cancel{MessageID: id})
}

// finish answers an exchange that has no Outcome yet with out, and forgets it.
func (r *router) finish(id string, p *pending, out relaymsg.Outcome) {
	r.forget(id, p)
	if !p.answered {
		p.answered = true
		answer(p.ex, out)
	}
}

func (r *router) forget(id string, p *pending) {
	p.cancel()
	delete(r.pending, id)
}

// answer gives an exchange its outcome. The router answers each exchange
// once, into a channel with room for one, so this never has to wait; the
// select only keeps a slip from ever blocking the router.
func answer(ex *relaymsg.Exchange, out relaymsg.Outcome) {
	select {
	case ex.Outcome <- out:
	default:
	}
}
