package relay

import (
	"io"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
	"github.com/enhanced-tunnel/tunnel/actors/relay/router"
	"github.com/enhanced-tunnel/tunnel/actors/relay/session"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
)

// openSession asks the root actor to give conn to a new session; it
// answers *sessionOpened.
type openSession struct {
	conn *websocket.Conn
	addr string
}

// sessionOpened answers openSession; ok is false at the session limit, and
// conn is then still the caller's.
type sessionOpened struct{ ok bool }

// rootActor is the relay's root: parent and supervisor of the auth manager,
// the router and every session, and the post office between them and the
// HTTP front. It forwards with the original sender kept, so answers go
// straight back to whoever asked.
type rootActor struct {
	maxSessions int
	authCfg     auth.Config
	routerCfg   router.Config
	sessionCfg  session.Config
	metrics     *metrics

	auth, router *actor.PID
	sessions     map[string]*actor.PID // by PID id
	log          *logrus.Entry
}

func newRoot(cfg Config, keys map[string]string, m *metrics, running *sync.WaitGroup) *rootActor {
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	ac := cfg.authConfig()
	ac.Keys = keys
	ac.Failures = m.authFailures
	sc := cfg.sessionConfig()
	sc.Running = running
	sc.BytesIn, sc.BytesOut = m.bytesIn, m.bytesOut
	return &rootActor{
		maxSessions: cfg.MaxSessions,
		authCfg:     ac,
		routerCfg:   cfg.routerConfig(),
		sessionCfg:  sc,
		metrics:     m,
		sessions:    make(map[string]*actor.PID),
		log:         logger.WithField("actor", "relay"),
	}
}

func (r *rootActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		r.auth = ctx.Spawn(auth.Props(r.authCfg))
		r.router = ctx.Spawn(router.Props(r.routerCfg))
	case *openSession:
		if len(r.sessions) >= r.maxSessions {
			r.log.WithFields(logrus.Fields{"remote_addr": msg.addr, "limit": r.maxSessions}).Warn("Session limit reached; refusing a supervisor")
			ctx.Respond(&sessionOpened{})
			return
		}
		pid := ctx.Spawn(session.Props(msg.conn, msg.addr, r.sessionCfg))
		r.sessions[pid.Id] = pid
		r.metrics.sessions.Set(float64(len(r.sessions)))
		ctx.Respond(&sessionOpened{ok: true})
	case *actor.Terminated:
		if _, ok := r.sessions[msg.Who.Id]; ok {
			delete(r.sessions, msg.Who.Id)
			r.metrics.sessions.Set(float64(len(r.sessions)))
		}
	case *relaymsg.Authenticate, *relaymsg.CheckAddress:
		ctx.Forward(r.auth)
	case *relaymsg.SessionUp, *relaymsg.SessionDown, *relaymsg.Response, *relaymsg.Failed,
		*relaymsg.Forward, *relaymsg.Done, *relaymsg.ListTunnels:
		ctx.Forward(r.router)
	}
}

// HandleFailure decides for the root's children. A session that fails is
// stopped (closing its socket; its supervisor reconnects). The auth manager
// restarts as it was configured. A router that fails has lost the map of
// tunnels, so it restarts and every session is closed, to register anew.
func (r *rootActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	rs.Reset()
	r.log.WithFields(logrus.Fields{"child": child.Id, "failure_type": "PANIC", "error": reason}).Error("Relay actor failed")
	switch {
	case child.Equal(r.auth):
		sup.RestartChildren(child)
	case child.Equal(r.router):
		sup.RestartChildren(child)
		for _, pid := range r.sessions {
			sup.StopChildren(pid)
		}
	default:
		sup.StopChildren(child)
	}
}
