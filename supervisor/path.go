package supervisor

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// Messages between the root and its paths.
type (
	// pathState tells the root a path's state: only AUTHENTICATED paths take
	// frames. Epoch names its last authenticated session.
	pathState struct {
		conn  int
		state messages.State
		epoch int
	}
	// restartDue is a path's own restart timer firing.
	restartDue struct{ gen int }
	// connectionFailed carries a failure from HandleFailure to Receive.
	connectionFailed struct{ f *actormsg.ConnectionFailed }
)

// pathProps makes the subtree of connection conn.
func pathProps(e env, conn int) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newPath(e, conn) })
}

// path supervises one connection's subtree (pathTree): it is the
// SupervisorStrategy of its four children and routes between them. It
// writes frames through its connection while AUTHENTICATED and hands every
// other frame back: to the root when any connection may carry it, or to its
// sender with an error when it was pinned to this connection's session.
type path struct {
	env
	conn int
	log  *logrus.Entry

	children [len(pathTree)]*actor.PID
	sup      actor.Supervisor // the path's own context, handed to HandleFailure

	state         messages.State
	epoch         int // the last authenticated session's (env.sessions); the current one while AUTHENTICATED
	attempts      int
	restartGen    int                  // identifies the one pending restart timer
	cancelRestart scheduler.CancelFunc // nil when no restart is pending
	awaitingTrial bool                 // breaker open: restart when it goes half-open
	failed        bool                 // the connection child is suspended, waiting for its restart
	replacing     bool                 // Reconnect stopped the connection child; spawn a new one when it ends
	stopping      bool
}

func newPath(e env, conn int) *path {
	return &path{env: e, conn: conn, log: e.cfg.Logger.WithFields(logrus.Fields{"actor": "supervisor", "connection": conn})}
}

func (p *path) child(i int) *actor.PID { return p.children[i] }

func (p *path) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		for i, spec := range pathTree {
			p.children[i] = ctx.SpawnPrefix(spec.props(p.env, p.conn), spec.name)
		}
		ctx.Watch(p.child(childConnection))

	case *actormsg.Outbound:
		p.send(ctx, m)
	case *actormsg.Undeliverable:
		p.giveBack(ctx, m.Frames)

	case *messages.StateChanged:
		p.stateChanged(ctx, m)
	case *connectionFailed:
		p.connectionFailed(ctx, m.f)
	case *actormsg.HeartbeatAck:
		p.hooks.acked(p.conn, m)
		ctx.Send(p.child(childHeartbeat), m)
	case *actormsg.SendHeartbeat, *actormsg.Stale:
		ctx.Send(p.child(childConnection), m)
	case *actormsg.HeartbeatRTT:
		ctx.Send(p.child(childHealth), m)

	case *actormsg.BreakerVerdict:
		p.verdict(ctx, m)
	case *actormsg.BreakerStatus:
		ctx.Send(p.child(childHealth), m)
		if m.State == messages.BreakerHalfOpen && p.awaitingTrial {
			p.awaitingTrial = false
			p.log.WithField("state", m.State.String()).Info("Circuit breaker recovery elapsed: one trial connection")
			p.restartConnection()
		}
	case *restartDue:
		if m.gen == p.restartGen && p.cancelRestart != nil {
			p.cancelRestart = nil
			p.restartConnection()
		}
	case *actormsg.GetStatus:
		ctx.Forward(p.child(childHealth))

	case *reconnect:
		p.reconnectNow(ctx)
	case *actor.Terminated:
		if p.replacing && m.Who.Equal(p.child(childConnection)) && !p.stopping {
			p.replacing = false
			p.children[childConnection] = ctx.SpawnPrefix(pathTree[childConnection].props(p.env, p.conn), pathTree[childConnection].name)
			ctx.Watch(p.child(childConnection))
		}

	case *actor.Stopping:
		p.stopping = true
		p.cancelPendingRestart()
	}
}

// send writes o through the connection while it is authenticated, in the
// session o is pinned to if it is; otherwise o goes back (see giveBack).
func (p *path) send(ctx actor.Context, o *actormsg.Outbound) {
	if p.stopping {
		o.Answer(messages.ErrStopped)
		return
	}
	if p.state != messages.Authenticated || p.failed || (o.Pinned && o.Epoch != p.epoch) {
		p.giveBack(ctx, []*actormsg.Outbound{o})
		return
	}
	o.Conn, o.Epoch = p.conn, p.epoch
	ctx.Send(p.child(childConnection), o)
}

// giveBack returns frames this path could not start writing. A pinned
// frame belonged to a session that is gone: its answer is an error. Any
// other goes back to the root, which hands it to another connection or
// queues it: it never reached the relay, so nothing is lost by moving it.
func (p *path) giveBack(ctx actor.Context, frames []*actormsg.Outbound) {
	var free []*actormsg.Outbound
	for _, o := range frames {
		if o.Pinned {
			o.Answer(fmt.Errorf("%w (connection %d, session %d ended)", messages.ErrConnectionLost, o.Conn, o.Epoch))
			continue
		}
		free = append(free, o)
	}
	if len(free) > 0 {
		ctx.Send(ctx.Parent(), &actormsg.Undeliverable{Frames: free})
	}
}

// tellRoot passes the path's state to the root, which routes frames by it.
func (p *path) tellRoot(ctx actor.Context) {
	state := p.state
	if p.failed {
		state = messages.Disconnected
	}
	ctx.Send(ctx.Parent(), &pathState{conn: p.conn, state: state, epoch: p.epoch})
}

// stateChanged passes a state change on, in order. A change that arrives
// after its connection already failed (see HandleFailure) is still history
// for the ledger, the breaker and the host, but no longer the path's state.
func (p *path) stateChanged(ctx actor.Context, m *messages.StateChanged) {
	if m.State == messages.Connecting {
		p.attempts++
	}
	m.Attempt, m.Connection = p.attempts, p.conn
	for _, i := range []int{childHeartbeat, childBreaker, childHealth} {
		ctx.Send(p.child(i), m)
	}
	if p.failed {
		p.hooks.state(*m)
		return
	}
	p.state = m.State
	if m.State == messages.Authenticated {
		p.epoch = m.Epoch
		p.log.WithFields(logrus.Fields{"state": m.State.String(), "attempt": m.Attempt, "session_id": m.SessionID}).Info("Tunnel authenticated")
	}
	// The root first: a host that sends as soon as it hears of the change
	// finds its request routed by it.
	p.tellRoot(ctx)
	p.hooks.state(*m)
}

// HandleFailure is the restart rule of the path's children, read from
// pathTree. A child with a delay (the connection) fails through the
// breaker, whose verdict chooses the delay; the others are restarted at once.
//
// A failure is a system message and overtakes the user messages the
// connection sent just before failing (its last state changes, say). So the
// path stops writing through the connection at once, but handles the failure
// as a user message of its own, queued behind those: everyone hears of the
// connection's life in the order it happened.
func (p *path) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	p.sup = sup
	rs.Reset() // restart statistics would otherwise grow without bound (protoactor issue 712)
	spec := p.specOf(child)
	if spec == nil || spec.delay == nil {
		p.log.WithFields(logrus.Fields{"child": child.Id, "reason": fmt.Sprint(reason)}).Error("Child actor failed; restarting it")
		sup.RestartChildren(child)
		return
	}
	f, ok := reason.(*actormsg.ConnectionFailed)
	if !ok {
		f = &actormsg.ConnectionFailed{Type: messages.Unknown, Err: fmt.Errorf("connection actor panicked: %v", reason), At: time.Now(), WasAuthenticated: p.state == messages.Authenticated}
	}
	p.failed = true
	ctx := sup.(actor.Context) // the path's own context: HandleFailure runs on its mailbox
	p.tellRoot(ctx)
	p.state = messages.Disconnected
	ctx.Send(ctx.Self(), &connectionFailed{f: f})
}

func (p *path) specOf(child *actor.PID) *childSpec {
	for i, pid := range p.children {
		if pid != nil && pid.Equal(child) {
			return &pathTree[i]
		}
	}
	return nil
}

func (p *path) connectionFailed(ctx actor.Context, f *actormsg.ConnectionFailed) {
	if p.stopping {
		return
	}
	p.hooks.lost(p.conn, p.epoch, f)
	down := &messages.StateChanged{State: messages.Disconnected, At: f.At, Attempt: p.attempts, Connection: p.conn}
	ctx.Send(p.child(childHeartbeat), down)
	p.hooks.state(*down)
	for _, i := range []int{childBreaker, childHealth} {
		ctx.Send(p.child(i), f)
	}
}

func (p *path) verdict(ctx actor.Context, v *actormsg.BreakerVerdict) {
	if p.stopping || !p.failed {
		return
	}
	fields := logrus.Fields{"failure_type": v.Failure.Type.String(), "attempt": p.attempts, "consecutive_failures": v.ConsecutiveFailures}
	if v.Open {
		p.awaitingTrial = true
		p.log.WithFields(fields).WithField("delay", p.cfg.BreakerRecovery.String()).Warn("Reconnect held by the circuit breaker")
		// Stamped with the breaker's own opening, so that the trial comes
		// exactly BreakerRecovery after this state change.
		cb := messages.StateChanged{State: messages.CircuitBreaker, At: v.OpenedAt, Attempt: p.attempts, Connection: p.conn}
		p.state = messages.CircuitBreaker
		p.hooks.state(cb)
		return
	}
	delay := pathTree[childConnection].delay(p.cfg, v.Failure.Type, v.ConsecutiveFailures)
	p.log.WithFields(fields).WithField("delay", delay.String()).Info("Reconnecting")
	p.restartGen++
	p.cancelRestart = scheduler.NewTimerScheduler(ctx).SendOnce(delay, ctx.Self(), &restartDue{gen: p.restartGen})
}

func (p *path) restartConnection() {
	if p.stopping || !p.failed {
		return
	}
	p.failed = false
	p.sup.RestartChildren(p.child(childConnection))
}

// reconnectNow drops the current connection, or cuts short the wait for the
// next attempt: an operator's answer to a network change.
func (p *path) reconnectNow(ctx actor.Context) {
	if p.stopping {
		return
	}
	if p.failed {
		p.cancelPendingRestart()
		p.awaitingTrial = false
		p.restartConnection()
		return
	}
	if p.replacing {
		return
	}
	p.log.WithField("state", p.state.String()).Info("Reconnect requested")
	p.replacing = true
	p.state = messages.Disconnected
	p.tellRoot(ctx)
	down := &messages.StateChanged{State: messages.Disconnected, At: time.Now(), Attempt: p.attempts, Connection: p.conn}
	ctx.Send(p.child(childHeartbeat), down)
	ctx.Send(p.child(childHealth), down)
	p.hooks.lost(p.conn, p.epoch, &actormsg.ConnectionFailed{Type: messages.Unknown, Err: errReconnect, At: down.At, WasAuthenticated: true})
	p.hooks.state(*down)
	ctx.Stop(p.child(childConnection))
}

func (p *path) cancelPendingRestart() {
	if p.cancelRestart != nil {
		p.cancelRestart()
		p.cancelRestart = nil
	}
	p.restartGen++
}
