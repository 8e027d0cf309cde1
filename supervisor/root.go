package supervisor

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/breaker"
	"github.com/enhanced-tunnel/tunnel/actors/connection"
	"github.com/enhanced-tunnel/tunnel/actors/health"
	"github.com/enhanced-tunnel/tunnel/actors/heartbeat"
	"github.com/enhanced-tunnel/tunnel/messages"
)

// hooks is how the root actor hands what leaves the actor world to the
// Tunnel: inbound frames, connection loss, state changes. Each is called on
// the root's mailbox and must not block.
type hooks struct {
	deliver func(*messages.Inbound)
	lost    func(*messages.ConnectionFailed)
	state   func(messages.StateChanged)
}

// Messages only the Tunnel sends to the root.
type (
	// begin spawns the children. It is a message of its own, sent once
	// Start has stored the root's PID, so nothing the tree does can reach
	// the Tunnel before the Tunnel knows its root.
	begin      struct{}
	sendFrame  struct{ out *messages.Outbound }
	reconnect  struct{}
	restartDue struct{ gen int }
	// connectionFailed carries a failure from HandleFailure to Receive.
	connectionFailed struct{ f *messages.ConnectionFailed }
)

// root is the supervision tree's root: the SupervisorStrategy of its four
// children, the router between them, and the holder of the outbound queue
// (outside the connection actor, whose mailbox is suspended while it waits
// for its restart).
type root struct {
	cfg   Config
	hooks hooks
	log   *logrus.Entry

	conn, heartbeat, health, breaker *actor.PID
	sup                              actor.Supervisor // the root's own context, handed to HandleFailure

	state         messages.State
	attempts      int
	queue         []*messages.Outbound
	restartGen    int                  // identifies the one pending restart timer
	cancelRestart scheduler.CancelFunc // nil when no restart is pending
	awaitingTrial bool                 // breaker open: restart when it goes half-open
	failed        bool                 // the connection child is suspended, waiting for its restart
	replacing     bool                 // Reconnect stopped the connection child; spawn a new one when it ends
	stopping      bool
}

func newRoot(cfg Config, h hooks) *root {
	return &root{cfg: cfg, hooks: h, log: cfg.Logger.WithField("actor", "supervisor")}
}

func (r *root) connectionProps() *actor.Props {
	c := r.cfg
	return connection.Props(connection.Config{
		URL: c.RelayURL, APIKey: c.APIKey, Tunnel: c.Tunnel, Client: c.Client,
		ConnectTimeout: c.ConnectTimeout, PingInterval: c.PingInterval, PongTimeout: c.PongTimeout,
		WriteTimeout: c.WriteTimeout, CloseTimeout: c.CloseTimeout, ReadLimit: c.ReadLimit,
		WriteBufferSize: 64 << 10, ReadBufferSize: 64 << 10,
		TLSConfig: c.TLSConfig, NetDialContext: c.NetDialContext, Logger: c.Logger,
	})
}

func (r *root) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *begin:
		c := r.cfg
		r.health = ctx.Spawn(health.Props(health.Config{Tunnel: c.Tunnel, MaxTransitions: 20, Logger: c.Logger}))
		r.breaker = ctx.Spawn(breaker.Props(breaker.Config{Threshold: c.BreakerThreshold, Recovery: c.BreakerRecovery, FlapWindow: c.HeartbeatInterval, Logger: c.Logger}))
		r.heartbeat = ctx.Spawn(heartbeat.Props(heartbeat.Config{Interval: c.HeartbeatInterval, Timeout: c.HeartbeatTimeout, Logger: c.Logger}))
		r.conn = ctx.Spawn(r.connectionProps())
		ctx.Watch(r.conn)

	case *sendFrame:
		r.send(ctx, m.out)
	case *messages.Undeliverable:
		// Frames a connection could not start writing go back to the front of
		// the queue: they were accepted earlier than anything queued since.
		r.queue = append(append([]*messages.Outbound(nil), m.Frames...), r.queue...)
		r.flush(ctx)

	case *messages.StateChanged:
		r.stateChanged(ctx, m)
	case *connectionFailed:
		r.connectionFailed(ctx, m.f)
	case *messages.HeartbeatAck:
		ctx.Send(r.heartbeat, m)
	case *messages.SendHeartbeat:
		ctx.Send(r.conn, m)
	case *messages.Stale:
		ctx.Send(r.conn, m)
	case *messages.HeartbeatRTT:
		ctx.Send(r.health, m)
	case *messages.Inbound:
		r.hooks.deliver(m)

	case *messages.BreakerVerdict:
		r.verdict(ctx, m)
	case *messages.BreakerStatus:
		ctx.Send(r.health, m)
		if m.State == messages.BreakerHalfOpen && r.awaitingTrial {
			r.awaitingTrial = false
			r.log.WithField("state", m.State.String()).Info("Circuit breaker recovery elapsed: one trial connection")
			r.restartConnection()
		}
	case *restartDue:
		if m.gen == r.restartGen && r.cancelRestart != nil {
			r.cancelRestart = nil
			r.restartConnection()
		}
	case *messages.GetStatus:
		ctx.Forward(r.health)

	case *reconnect:
		r.reconnectNow(ctx)
	case *actor.Terminated:
		if r.replacing && m.Who.Equal(r.conn) && !r.stopping {
			r.replacing = false
			r.conn = ctx.Spawn(r.connectionProps())
			ctx.Watch(r.conn)
		}

	case *actor.Stopping:
		r.stopping = true
		r.cancelPendingRestart()
		for _, o := range r.queue {
			o.Answer(messages.ErrStopped)
		}
		r.queue = nil
	}
}

// send writes through an authenticated connection, or queues while there is
// none: a full queue is an immediate error, never a silent drop.
func (r *root) send(ctx actor.Context, o *messages.Outbound) {
	if r.stopping {
		o.Answer(messages.ErrStopped)
		return
	}
	if r.state == messages.Authenticated {
		ctx.Send(r.conn, o)
		return
	}
	if o.NoQueue {
		o.Answer(fmt.Errorf("%w (state %s)", messages.ErrNotConnected, r.state))
		return
	}
	if len(r.queue) >= r.cfg.MaxQueue {
		o.Answer(fmt.Errorf("%w (%d frames waiting for the connection)", messages.ErrQueueFull, len(r.queue)))
		return
	}
	r.queue = append(r.queue, o)
}

func (r *root) flush(ctx actor.Context) {
	if r.state != messages.Authenticated {
		return
	}
	for _, o := range r.queue {
		ctx.Send(r.conn, o)
	}
	r.queue = nil
}

// stateChanged passes a state change on, in order. A change that arrives
// after its connection already failed (see HandleFailure) is still history
// for the ledger, the breaker and the host, but no longer the root's state.
func (r *root) stateChanged(ctx actor.Context, m *messages.StateChanged) {
	if m.State == messages.Connecting {
		r.attempts++
	}
	m.Attempt = r.attempts
	for _, pid := range []*actor.PID{r.heartbeat, r.breaker, r.health} {
		ctx.Send(pid, m)
	}
	r.hooks.state(*m)
	if r.failed {
		return
	}
	r.state = m.State
	if m.State == messages.Authenticated {
		r.log.WithFields(logrus.Fields{"state": m.State.String(), "attempt": m.Attempt, "session_id": m.SessionID}).Info("Tunnel authenticated")
		r.flush(ctx)
	}
}

// HandleFailure is the restart rule of the tree. A connection failure goes to
// the breaker, whose verdict chooses the delay; the other children hold no
// resources and are restarted at once should they ever fail.
//
// A failure is a system message and overtakes the user messages the
// connection sent just before failing (its last state changes, say). So the
// root stops writing through the connection at once, but handles the failure
// as a user message of its own, queued behind those: everyone hears of the
// connection's life in the order it happened.
func (r *root) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	r.sup = sup
	rs.Reset() // restart statistics would otherwise grow without bound (protoactor issue 712)
	if !child.Equal(r.conn) {
		r.log.WithFields(logrus.Fields{"child": child.Id, "reason": fmt.Sprint(reason)}).Error("Child actor failed; restarting it")
		sup.RestartChildren(child)
		return
	}
	f, ok := reason.(*messages.ConnectionFailed)
	if !ok {
		f = &messages.ConnectionFailed{Type: messages.Unknown, Err: fmt.Errorf("connection actor panicked: %v", reason), At: time.Now(), WasAuthenticated: r.state == messages.Authenticated}
	}
	r.failed = true
	r.state = messages.Disconnected
	ctx := sup.(actor.Context) // the root's own context: HandleFailure runs on its mailbox
	ctx.Send(ctx.Self(), &connectionFailed{f: f})
}

func (r *root) connectionFailed(ctx actor.Context, f *messages.ConnectionFailed) {
	if r.stopping {
		return
	}
	r.hooks.lost(f)
	down := &messages.StateChanged{State: messages.Disconnected, At: f.At, Attempt: r.attempts}
	ctx.Send(r.heartbeat, down)
	r.hooks.state(*down)
	for _, pid := range []*actor.PID{r.breaker, r.health} {
		ctx.Send(pid, f)
	}
}

func (r *root) verdict(ctx actor.Context, v *messages.BreakerVerdict) {
	if r.stopping || !r.failed {
		return
	}
	fields := logrus.Fields{"failure_type": v.Failure.Type.String(), "attempt": r.attempts, "consecutive_failures": v.ConsecutiveFailures}
	if v.Open {
		r.awaitingTrial = true
		r.log.WithFields(fields).WithField("delay", r.cfg.BreakerRecovery.String()).Warn("Reconnect held by the circuit breaker")
		// Stamped with the breaker's own opening, so that the trial comes
		// exactly BreakerRecovery after this state change.
		cb := messages.StateChanged{State: messages.CircuitBreaker, At: v.OpenedAt, Attempt: r.attempts}
		r.state = messages.CircuitBreaker
		r.hooks.state(cb)
		return
	}
	delay := r.cfg.restartDelay(v.Failure.Type, v.ConsecutiveFailures)
	r.log.WithFields(fields).WithField("delay", delay.String()).Info("Reconnecting")
	r.restartGen++
	r.cancelRestart = scheduler.NewTimerScheduler(ctx).SendOnce(delay, ctx.Self(), &restartDue{gen: r.restartGen})
}

func (r *root) restartConnection() {
	if r.stopping || !r.failed {
		return
	}
	r.failed = false
	r.sup.RestartChildren(r.conn)
}

// reconnectNow drops the current connection, or cuts short the wait for the
// next attempt: an operator's answer to a network change.
func (r *root) reconnectNow(ctx actor.Context) {
	if r.stopping {
		return
	}
	if r.failed {
		r.cancelPendingRestart()
		r.awaitingTrial = false
		r.restartConnection()
		return
	}
	if r.replacing {
		return
	}
	r.log.WithField("state", r.state.String()).Info("Reconnect requested")
	r.replacing = true
	r.state = messages.Disconnected
	down := &messages.StateChanged{State: messages.Disconnected, At: time.Now(), Attempt: r.attempts}
	ctx.Send(r.heartbeat, down)
	ctx.Send(r.health, down)
	r.hooks.state(*down)
	ctx.Stop(r.conn)
}

func (r *root) cancelPendingRestart() {
	if r.cancelRestart != nil {
		r.cancelRestart()
		r.cancelRestart = nil
	}
	r.restartGen++
}
