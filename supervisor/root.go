package supervisor

import (
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// hooks is how the tree hands what leaves the actor world to the data
// path (package datapath) and the host: inbound frames, a connection's
// loss, state changes. Each is called on a path's mailbox, or deliver on a
// connection's reader, and must not block.
type hooks struct {
	deliver func(*actormsg.Inbound)
	lost    func(conn, epoch int, f *actormsg.ConnectionFailed)
	state   func(messages.StateChanged)
	// acked hears every heartbeat_ack: the relay has read all that the
	// connection wrote before that heartbeat.
	acked func(conn int, ack *actormsg.HeartbeatAck)
	// begun reports whether the Tunnel knows the root's PID: a root that a
	// host's supervisor restarted spawns its paths again at once.
	begun func() bool
}

// errReconnect is the loss Reconnect causes on purpose.
var errReconnect = errors.New("reconnect requested")

// Messages only the Tunnel sends to the root.
type (
	// begin spawns the paths. It is a message of its own, sent once Start
	// has stored the root's PID, so nothing the tree does can reach the
	// data path before the Tunnel knows the root the data path posts to.
	begin struct{}
	// sendFrame carries a frame the data path posts (datapath.Config.Post).
	sendFrame struct{ out *actormsg.Outbound }
	reconnect struct{}
	// getPaths asks for the paths, in connection order (answered *paths),
	// whose ledgers Status then asks.
	getPaths struct{}
	paths    struct{ pids []*actor.PID }
)

// root is the supervision tree's root: the SupervisorStrategy of one path
// per connection (rootTree), the router of outbound frames over the
// authenticated ones, and the holder of the outbound queue while none is.
type root struct {
	env
	log *logrus.Entry

	paths []*actor.PID
	ready []bool // path i is AUTHENTICATED, as far as the root has heard
	next  int    // where the round over ready paths starts
	queue []*actormsg.Outbound

	stopping bool
}

func newRoot(e env) *root {
	return &root{env: e, log: e.cfg.Logger.WithField("actor", "supervisor")}
}

func (r *root) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if r.hooks.begun() {
			r.spawn(ctx)
		}
	case *begin:
		r.spawn(ctx)

	case *sendFrame:
		r.send(ctx, m.out)
	case *actormsg.Undeliverable:
		// Frames a path could not start writing go back to the front of
		// the line: they were accepted earlier than anything queued since.
		r.queue = append(append([]*actormsg.Outbound(nil), m.Frames...), r.queue...)
		r.flush(ctx)
	case *pathState:
		r.ready[m.conn] = m.state == messages.Authenticated
		r.flush(ctx)

	case *getPaths:
		ctx.Respond(&paths{pids: r.paths})
	case *reconnect:
		for _, pid := range r.paths {
			ctx.Send(pid, m)
		}

	case *actor.Stopping, *actor.Restarting:
		r.stopping = true
		for _, o := range r.queue {
			o.Answer(messages.ErrStopped)
		}
		r.queue = nil
	}
}

// spawn starts one path per connection, once.
func (r *root) spawn(ctx actor.Context) {
	if r.paths != nil {
		return
	}
	specs := rootTree(r.cfg.Connections)
	r.paths = make([]*actor.PID, len(specs))
	r.ready = make([]bool, len(specs))
	for i, spec := range specs {
		r.paths[i] = ctx.SpawnPrefix(spec.props(r.env, i), spec.name)
	}
}

// send hands o to the path it is pinned to, or to an authenticated path,
// or queues it while there is none: a full queue is an immediate error,
// never a silent drop.
func (r *root) send(ctx actor.Context, o *actormsg.Outbound) {
	switch {
	case r.stopping:
		o.Answer(messages.ErrStopped)
	case o.Pinned:
		if o.Conn < 0 || o.Conn >= len(r.paths) {
			o.Answer(fmt.Errorf("%w (no connection %d)", messages.ErrConnectionLost, o.Conn))
			return
		}
		ctx.Send(r.paths[o.Conn], o)
	default:
		if pid := r.pick(); pid != nil {
			ctx.Send(pid, o)
			return
		}
		if len(r.queue) >= r.cfg.MaxQueue {
			o.Answer(fmt.Errorf("%w (%d frames waiting for a connection)", messages.ErrQueueFull, len(r.queue)))
			return
		}
		r.queue = append(r.queue, o)
	}
}

// pick takes the authenticated paths in turn, so that the host's requests
// spread over them; nil when none is.
func (r *root) pick() *actor.PID {
	for range r.paths {
		i := r.next
		r.next = (r.next + 1) % len(r.paths)
		if r.ready[i] {
			return r.paths[i]
		}
	}
	return nil
}

func (r *root) flush(ctx actor.Context) {
	for len(r.queue) > 0 {
		pid := r.pick()
		if pid == nil {
			return
		}
		o := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		ctx.Send(pid, o)
	}
	r.queue = nil
}

// HandleFailure restarts a failed path at once (rootTree's rule): a path
// only fails on a defect, and its connection's failures are its own to
// handle.
func (r *root) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	rs.Reset()
	r.log.WithFields(logrus.Fields{"child": child.Id, "reason": fmt.Sprint(reason)}).Error("Connection subtree failed; restarting it")
	for i, pid := range r.paths {
		if pid.Equal(child) {
			r.ready[i] = false
		}
	}
	sup.RestartChildren(child)
}
