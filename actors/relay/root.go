package relay

import (
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
	"github.com/enhanced-tunnel/tunnel/actors/relay/router"
	"github.com/enhanced-tunnel/tunnel/actors/relay/session"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// openSession asks the root actor to give conn to a new session; it
// answers *sessionOpened once the session has it.
type openSession struct {
	conn *websocket.Conn
	addr string
}

// sessionOpened answers openSession.
type sessionOpened struct{}

// routerPID asks the root for the router's PID, which the front sends
// Forward and Done to straight.
type routerPID struct{}

// rootActor is the relay's root: parent and supervisor of the auth manager,
// the router and every session, and the post office between them and the
// HTTP front. It forwards with the original sender kept, so answers go
// straight back to whoever asked.
//
// It keeps the count of sessions: unauthenticated ones are bounded apart
// from authenticated ones, in all and per address, and the oldest makes
// room for a newer one, so that connections that never authenticate can
// neither fill the relay nor keep a supervisor with a key out.
type rootActor struct {
	limits     sessionLimits
	authCfg    auth.Config
	routerCfg  router.Config
	sessionCfg session.Config
	metrics    *metrics

	auth, router *actor.PID
	sessions     map[string]*actor.PID // every session, by PID id
	pending      *pendingConns         // those not authenticated yet
	// authenticated holds the ids of those that are. A session in neither
	// set was evicted and is closing.
	authenticated map[string]struct{}
	// keys are the keys the auth manager holds (a reload changes them),
	// asked the tunnel each unauthenticated session asked for when its
	// auth went to the auth manager, and stale those whose key checked
	// out before a reload revoked it (see reload.go).
	keys  map[string]string
	asked map[string]string
	stale map[string]struct{}
	log   *logrus.Entry
}

// sessionLimits are the root's bounds on sessions.
type sessionLimits struct {
	maxSessions, maxPending, maxPendingPerAddr int
}

func newRoot(cfg Config, keys map[string]string, m *metrics, budget *wire.Budget, running *sync.WaitGroup) *rootActor {
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	ac := cfg.authConfig()
	ac.Keys = keys
	ac.Failures = m.authFailures
	rc := cfg.routerConfig()
	rc.Tunnels = slices.Sorted(maps.Keys(keys))
	rc.Retries, rc.Held, rc.Sessions, rc.Resumes = m.retries, m.held, m.tunnelSessions, m.resumes
	sc := cfg.sessionConfig()
	sc.Running = running
	sc.BytesIn, sc.BytesOut = m.bytesIn, m.bytesOut
	sc.Budget = budget
	return &rootActor{
		limits:        sessionLimits{maxSessions: cfg.MaxSessions, maxPending: cfg.MaxPending, maxPendingPerAddr: cfg.MaxPendingPerAddr},
		authCfg:       ac,
		routerCfg:     rc,
		sessionCfg:    sc,
		metrics:       m,
		sessions:      make(map[string]*actor.PID),
		pending:       newPendingConns(),
		authenticated: make(map[string]struct{}),
		keys:          keys,
		asked:         make(map[string]string),
		stale:         make(map[string]struct{}),
		log:           logger.WithField("actor", "relay"),
	}
}

func (r *rootActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		r.auth = ctx.Spawn(auth.Props(r.authCfg))
		r.router = ctx.Spawn(router.Props(r.routerCfg))
		// Sessions and the front talk to the router straight; a restarted
		// router keeps its PID.
		r.sessionCfg.Router = r.router
	case *routerPID:
		ctx.Respond(r.router)
	case *openSession:
		r.makeRoom(ctx, msg.addr)
		pid := ctx.Spawn(session.Props(msg.conn, msg.addr, r.sessionCfg))
		r.sessions[pid.Id] = pid
		r.pending.add(pid, msg.addr)
		r.count()
		ctx.Respond(&sessionOpened{})
	case *relaymsg.SessionUp:
		switch sender := ctx.Sender(); {
		case !r.pending.has(sender):
			// Evicted while its key was checked: it is closing already.
			ctx.Respond(&relaymsg.Registered{Refused: true})
		case len(r.authenticated) >= r.limits.maxSessions:
			r.log.WithFields(logrus.Fields{"tunnel": wire.Excerpt(msg.Tunnel), "limit": r.limits.maxSessions}).Warn("Session limit reached; refusing a supervisor")
			ctx.Respond(&relaymsg.Registered{Refused: true, Reason: "relay at its session limit"})
		default:
			r.pending.remove(sender)
			r.authenticated[sender.Id] = struct{}{}
			r.count()
			ctx.Forward(r.router)
			r.revokeStale(ctx, sender)
		}
	case *actor.Terminated:
		if _, ok := r.sessions[msg.Who.Id]; ok {
			delete(r.sessions, msg.Who.Id)
			delete(r.authenticated, msg.Who.Id)
			delete(r.asked, msg.Who.Id)
			delete(r.stale, msg.Who.Id)
			r.pending.remove(msg.Who)
			r.count()
		}
	case *relaymsg.Authenticate:
		r.noteAsked(ctx, msg)
		ctx.Forward(r.auth)
	case *reloadKeys:
		ctx.Respond(r.reload(ctx, msg))
	case *relaymsg.CheckAddress, *relaymsg.AuthTimedOut:
		ctx.Forward(r.auth)
	case *relaymsg.SessionDown, *relaymsg.Response, *relaymsg.Failed,
		*relaymsg.Resume, *relaymsg.HandedOver, *relaymsg.Forward, *relaymsg.Done, *relaymsg.Drain, *relaymsg.ListTunnels,
		*relaymsg.ListSessions:
		ctx.Forward(r.router)
	}
}

// makeRoom evicts the oldest unauthenticated session of addr, then the
// oldest of all, while a new one from addr would exceed a bound. An evicted
// session is forgotten at once (it closes with 1013 on its own), so the
// bounds hold for what is counted.
func (r *rootActor) makeRoom(ctx actor.Context, addr string) {
	evict := func(pid *actor.PID, scope string) {
		r.pending.remove(pid)
		r.metrics.evicted.WithLabelValues(scope).Inc()
		ctx.Send(pid, &relaymsg.Evict{})
	}
	for r.pending.count(addr) >= r.limits.maxPendingPerAddr {
		evict(r.pending.oldest(addr), "address")
	}
	for r.pending.len() >= r.limits.maxPending {
		evict(r.pending.oldest(""), "all")
	}
}

func (r *rootActor) count() {
	r.metrics.sessions.Set(float64(len(r.authenticated)))
	r.metrics.pending.Set(float64(r.pending.len()))
}

// HandleFailure decides for the root's children. A session that fails is
// stopped (closing its socket; its supervisor reconnects). The auth manager
// restarts as it was configured. A router that fails has lost the map of
// tunnels, so it restarts and every session is closed, to register anew.
func (r *rootActor) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	rs.Reset()
	r.log.WithFields(logrus.Fields{"child": child.Id, "failure_type": "PANIC", "error": reason}).Error("Relay actor failed")
	switch {
	case child.Equal(r.auth):
		sup.RestartChildren(child)
		// Its props hold the keys of the start; a reload may have
		// changed them since.
		system.Root.Send(child, &relaymsg.ReloadKeys{Keys: r.keys})
	case child.Equal(r.router):
		sup.RestartChildren(child)
		for _, pid := range r.sessions {
			sup.StopChildren(pid)
		}
	default:
		sup.StopChildren(child)
	}
}
