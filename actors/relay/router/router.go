package router

import (
	"cmp"
	"container/list"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Defaults of Config.
const (
	// DefaultRequestTimeout is how long a request waits for its response
	// frame: 60 s.
	DefaultRequestTimeout = 60 * time.Second
	// DefaultMaxSessionsPerTunnel is how many sessions one tunnel may have
	// at once, from one supervisor process or several: 16. One more is
	// refused (1013), unless it replaces one of them.
	DefaultMaxSessionsPerTunnel = 16
	// DefaultHoldTimeout is how long a request for a known tunnel with no
	// session waits for one before it is answered 503: 15 s, time for a
	// supervisor to reconnect after a network error.
	DefaultHoldTimeout = 15 * time.Second
	// DefaultMaxHeld is how many requests one tunnel may hold while it has
	// no session: 256 (503 beyond).
	DefaultMaxHeld = 256
	// DefaultMaxHeldBytes bounds the inline bodies of the requests one
	// tunnel holds: 16 MiB (503 beyond).
	DefaultMaxHeldBytes = 16 << 20
	// DefaultRetryIdempotent: an idempotent request with an inline body is
	// sent once more through another session when its session ends before
	// the response: true.
	DefaultRetryIdempotent = true
	// DefaultResumeTimeout is how long a response stream whose session
	// ended mid-body waits for its supervisor to resume it on another
	// connection: 15 s, as long as a request may wait for a reconnect.
	DefaultResumeTimeout = 15 * time.Second
)

// Results of stream resumes, the result label of Config.Resumes.
const (
	// ResultResumed: the stream went on through another session.
	ResultResumed = "resumed"
	// ResultRefused: a stream_resume was answered with an error.
	ResultRefused = "refused"
	// ResultExpired: an orphaned stream was cut off at the resume timeout.
	ResultExpired = "expired"
)

// Reasons of retries, the reason label of Config.Retries.
const (
	// ReasonUnwritten: the request frame never left the session that died.
	ReasonUnwritten = "unwritten"
	// ReasonIdempotent: the request had been written, and is idempotent.
	ReasonIdempotent = "idempotent"
)

// Config configures the router.
type Config struct {
	// RequestTimeout bounds the wait for a response frame (not for the end
	// of a streamed body), from each dispatch to a session. Default
	// DefaultRequestTimeout (60 s).
	RequestTimeout time.Duration
	// Tunnels names the tunnels that have a key. A request for any other
	// name is answered 404 at once; a request for one of these with no
	// session is held (see HoldTimeout). A tunnel that registers a session
	// is known from then on, whether it is named here or not.
	Tunnels []string
	// MaxSessionsPerTunnel bounds the sessions of one tunnel. A session
	// that would exceed it is refused (Registered.Refused, 1013), unless it
	// replaces one (same instance and index). Default
	// DefaultMaxSessionsPerTunnel (16).
	MaxSessionsPerTunnel int
	// HoldTimeout is how long a request for a known tunnel with no session
	// waits for one, before 503. 0 answers 503 at once. Default
	// DefaultHoldTimeout (15 s).
	HoldTimeout time.Duration
	// MaxHeld bounds the requests one tunnel holds, and MaxHeldBytes their
	// inline bodies (a streamed body is not read while its request is
	// held); a request beyond either is answered 503 at once. Defaults
	// DefaultMaxHeld (256) and DefaultMaxHeldBytes (16 MiB).
	MaxHeld      int
	MaxHeldBytes int64
	// RetryIdempotent sends again, once, through another session, a
	// request whose session ended after its request frame was written and
	// before its response frame came, if its method is idempotent (GET,
	// HEAD, OPTIONS, PUT, DELETE) and its body inline. Off, such requests
	// are answered 502. A request whose frame was never written always
	// goes through another session. Default DefaultRetryIdempotent (true).
	RetryIdempotent bool
	// ResumeTimeout is how long the response body of a session with
	// resume that ended mid-stream is kept for another session of the same
	// supervisor to resume (stream_resume); past it the body fails with
	// relaymsg.ErrTunnelLost. 0 fails it at once. Default
	// DefaultResumeTimeout (15 s).
	ResumeTimeout time.Duration
	// Resumes, if set, counts stream resumes by result: one label, valued
	// ResultResumed, ResultRefused or ResultExpired.
	Resumes *prometheus.CounterVec
	// Retries, if set, counts requests sent through another session, by
	// reason: one label, valued ReasonUnwritten or ReasonIdempotent.
	Retries *prometheus.CounterVec
	// Held, if set, is the number of requests each tunnel holds: one
	// label, the tunnel.
	Held *prometheus.GaugeVec
	// Sessions, if set, is the number of sessions of each tunnel: one
	// label, the tunnel.
	Sessions *prometheus.GaugeVec
	// OnSessions, if set, is told the number of sessions of a tunnel each
	// time it changes (0 when the router stops), from the router's actor:
	// it must not block. A relay in a fleet registers them in the tunnel
	// directory.
	OnSessions func(tunnel string, n int)
	// Logger; nil discards.
	Logger *logrus.Logger
}

// DefaultConfig returns a Config with every default set and no tunnel.
func DefaultConfig() Config {
	return Config{
		RequestTimeout:       DefaultRequestTimeout,
		MaxSessionsPerTunnel: DefaultMaxSessionsPerTunnel,
		HoldTimeout:          DefaultHoldTimeout,
		MaxHeld:              DefaultMaxHeld,
		MaxHeldBytes:         DefaultMaxHeldBytes,
		RetryIdempotent:      DefaultRetryIdempotent,
		ResumeTimeout:        DefaultResumeTimeout,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.RequestTimeout <= 0:
		return errors.New("router: RequestTimeout must be positive")
	case c.MaxSessionsPerTunnel < 1:
		return fmt.Errorf("router: MaxSessionsPerTunnel must be at least 1, got %d", c.MaxSessionsPerTunnel)
	case c.HoldTimeout < 0:
		return fmt.Errorf("router: HoldTimeout must not be negative, got %v", c.HoldTimeout)
	case c.MaxHeld < 1:
		return fmt.Errorf("router: MaxHeld must be at least 1, got %d", c.MaxHeld)
	case c.MaxHeldBytes < 0:
		return fmt.Errorf("router: MaxHeldBytes must not be negative, got %d", c.MaxHeldBytes)
	case c.ResumeTimeout < 0:
		return fmt.Errorf("router: ResumeTimeout must not be negative, got %v", c.ResumeTimeout)
	}
	return nil
}

// Props returns the router's props. cfg must be valid.
func Props(cfg Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newRouter(cfg) })
}

// idempotent are the methods whose requests may be sent twice (RFC 9110
// section 9.2.2) that the router retries.
var idempotent = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true,
	http.MethodPut: true, http.MethodDelete: true,
}

// replica is what tells the sessions of one tunnel apart: the supervisor
// process and its connection. A newer session with the same replica
// replaces the older one.
type replica struct {
	instance string
	index    int
}

// session is a registered session, from SessionUp to SessionDown.
type session struct {
	pid     *actor.PID
	id      string
	tunnel  *tunnel
	replica replica
	// inFlight counts the exchanges dispatched to it that are not done.
	inFlight int
	// live is false once a newer session replaced it: it serves no new
	// request, and its SessionDown is still to come.
	live bool
	// resume: its supervisor can resume its response streams elsewhere.
	resume bool
	// since is when it registered (ListSessions).
	since time.Time
}

// tunnel is a known tunnel: its live sessions and the requests it holds.
type tunnel struct {
	name     string
	sessions []*session // live ones, oldest first
	// next is where the search for the least busy session starts, so that
	// ties go round the sessions.
	next      int
	held      list.List // of *pending, oldest first
	heldBytes int64
	// lastSeen is when its last session ended (ListSessions).
	lastSeen time.Time
}

// pick returns the live session with the fewest requests in flight, ties
// broken round-robin; nil when there is none.
func (t *tunnel) pick() *session {
	var best *session
	at := 0
	for k := range t.sessions {
		i := (t.next + k) % len(t.sessions)
		if s := t.sessions[i]; best == nil || s.inFlight < best.inFlight {
			best, at = s, i
		}
	}
	if best != nil {
		t.next = (at + 1) % len(t.sessions)
	}
	return best
}

// pending is one exchange between Forward and Done.
type pending struct {
	ex  *relaymsg.Exchange
	seq uint64 // arrival order
	// session is where the exchange was dispatched last; nil while held.
	session  *session
	held     *list.Element // its place in its tunnel's hold queue, while held
	size     int64         // its inline body, counted while held
	answered bool          // the exchange has its Outcome
	// retried is set once it was sent again after being written: it may
	// have reached a supervisor, and is not sent a third time.
	retried bool
	// attempt numbers the dispatches, holds and orphanings, so that the
	// timer of an earlier one, fired as the exchange moved on, is ignored.
	attempt int
	cancel  scheduler.CancelFunc // the timer of the current attempt
	// body is the streamed response body, from the response until it is
	// cut off for good (its session ended and no resume came).
	body *wire.StreamReader
	// orphan is set while body waits for a resume: its session ended, and
	// session still names it (for the instance a resume must match).
	orphan bool
	// resumeTo is the session a handover is under way to, while its old
	// session has not answered.
	resumeTo *session
}

// Timer messages: the request timeout of a dispatch, the hold timeout.
type (
	timedOut struct {
		id      string
		attempt int
	}
	holdExpired struct {
		id      string
		attempt int
	}
	// orphanExpired is the resume timeout of an orphaned body.
	orphanExpired struct {
		id      string
		attempt int
	}
)

// maxDownFirst bounds the ends remembered for sessions not registered yet;
// each is claimed by its SessionUp within a mailbox's latency.
const maxDownFirst = 1024

type router struct {
	cfg      Config
	tunnels  map[string]*tunnel  // every known tunnel
	sessions map[string]*session // by PID id, until their SessionDown
	// downFirst holds the PID ids of sessions whose SessionDown came
	// before their SessionUp: a session reports its end straight here,
	// while its SessionUp comes through the relay's root, so the end of a
	// session that died at once can overtake its start. Its late SessionUp
	// is refused. Bounded: the oldest go first.
	downFirst []string
	pending   map[string]*pending
	seq       uint64
	// draining is set once the relay closes: no session can come, so
	// nothing is held.
	draining bool
	timers   *scheduler.TimerScheduler
	log      *logrus.Entry
}

func newRouter(cfg Config) *router {
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	r := &router{
		cfg:      cfg,
		tunnels:  make(map[string]*tunnel, len(cfg.Tunnels)),
		sessions: make(map[string]*session),
		pending:  make(map[string]*pending),
		log:      logger.WithField("actor", "router"),
	}
	for _, name := range cfg.Tunnels {
		r.tunnels[name] = &tunnel{name: name}
	}
	return r
}

func (r *router) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		r.timers = scheduler.NewTimerScheduler(ctx)
	case *relaymsg.SessionUp:
		r.sessionUp(ctx, msg)
	case *relaymsg.SessionDown:
		r.sessionDown(ctx, msg)
	case *relaymsg.Forward:
		r.forward(ctx, msg.Exchange)
	case *relaymsg.Response:
		r.response(msg)
	case *relaymsg.Failed:
		r.failed(msg)
	case *relaymsg.Done:
		r.done(ctx, msg)
	case *timedOut:
		r.timeout(ctx, msg)
	case *holdExpired:
		r.holdExpired(msg)
	case *relaymsg.Resume:
		r.resume(ctx, msg)
	case *relaymsg.HandedOver:
		r.handedOver(ctx, msg)
	case *orphanExpired:
		r.orphanExpired(msg)
	case *relaymsg.KnownTunnels:
		for _, name := range msg.Names {
			if r.tunnels[name] == nil {
				r.tunnels[name] = &tunnel{name: name}
			}
		}
	case *relaymsg.CloseSessions:
		r.closeSessions(ctx, msg)
	case *relaymsg.Drain:
		r.draining = true
		for _, t := range r.tunnels {
			for e := t.held.Front(); e != nil; e = t.held.Front() {
				p := e.Value.(*pending)
				r.finish(p.ex.ID(), p, r.unavailable(p, "relay shutting down"))
			}
		}
		// A public response kept open for a resume would hold the
		// shutdown up to the resume timeout.
		for _, p := range r.pending {
			if p.orphan {
				p.cancel()
				p.orphan = false
				r.cutOff(p)
			}
		}
	case *relaymsg.ListTunnels:
		names := make([]string, 0, len(r.tunnels))
		for name, t := range r.tunnels {
			if len(t.sessions) > 0 {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		ctx.Respond(&relaymsg.Tunnels{Names: names})
	case *relaymsg.ListSessions:
		ctx.Respond(r.listSessions())
	case *actor.Stopping, *actor.Restarting:
		for id, p := range r.pending {
			if p.orphan {
				// Nothing can resume it any more.
				r.cutOff(p)
			}
			r.finish(id, p, relaymsg.Outcome{Status: http.StatusServiceUnavailable, Error: "relay shutting down"})
		}
		// The sessions are closing with the relay (or with the router, on
		// a restart): the next instance starts with none.
		for _, t := range r.tunnels {
			if r.cfg.Sessions != nil {
				r.cfg.Sessions.WithLabelValues(t.name).Set(0)
			}
			if r.cfg.OnSessions != nil && len(t.sessions) > 0 {
				r.cfg.OnSessions(t.name, 0)
			}
		}
	}
}

func (r *router) sessionUp(ctx actor.Context, msg *relaymsg.SessionUp) {
	if i := slices.Index(r.downFirst, msg.Session.Id); i >= 0 {
		r.downFirst = slices.Delete(r.downFirst, i, i+1)
		ctx.Respond(&relaymsg.Registered{Refused: true, Reason: "session already ended"})
		return
	}
	t := r.tunnels[msg.Tunnel]
	if t == nil {
		// The auth manager let it in: its key is one of the relay's.
		t = &tunnel{name: msg.Tunnel}
		r.tunnels[msg.Tunnel] = t
	}
	rep := replica{instance: msg.Instance, index: msg.Index}
	if rep.instance == "" {
		// A supervisor that names no instance has one connection.
		rep.index = 0
	}
	at := slices.IndexFunc(t.sessions, func(s *session) bool { return s.replica == rep })
	fields := logrus.Fields{"tunnel": t.name, "session_id": msg.SessionID, "instance": wire.Excerpt(rep.instance), "index": rep.index}
	if at < 0 && len(t.sessions) >= r.cfg.MaxSessionsPerTunnel {
		r.log.WithFields(fields).WithField("limit", r.cfg.MaxSessionsPerTunnel).Warn("Tunnel at its session limit; refusing a session")
		ctx.Respond(&relaymsg.Registered{Refused: true, Reason: "tunnel at its session limit"})
		return
	}
	s := &session{pid: msg.Session, id: msg.SessionID, tunnel: t, replica: rep, live: true, resume: msg.Resume, since: time.Now()}
	r.sessions[msg.Session.Id] = s
	if at >= 0 {
		old := t.sessions[at]
		old.live = false
		t.sessions[at] = s
		r.log.WithFields(fields).WithField("replaced", old.id).Info("A newer session of the same supervisor connection replaces the old one; closing it")
		ctx.Send(old.pid, &relaymsg.CloseSession{Code: wire.CloseNormal, Reason: "replaced by a newer session"})
	} else {
		t.sessions = append(t.sessions, s)
	}
	r.countSessions(t)
	ctx.Respond(&relaymsg.Registered{})
	for e := t.held.Front(); e != nil; e = t.held.Front() {
		p := e.Value.(*pending)
		r.unhold(t, p)
		r.dispatch(ctx, t.pick(), p)
	}
}

// closeSessions closes the live sessions of msg.Tunnels and those of
// msg.Sessions (a reload revoked their key); each still reports its end
// with SessionDown, as any session that closes.
func (r *router) closeSessions(ctx actor.Context, msg *relaymsg.CloseSessions) {
	var closing []*session
	for _, name := range msg.Tunnels {
		if t := r.tunnels[name]; t != nil {
			closing = append(closing, t.sessions...)
		}
	}
	for _, pid := range msg.Sessions {
		if s := r.sessions[pid.Id]; s != nil && s.live && !slices.Contains(closing, s) {
			closing = append(closing, s)
		}
	}
	for _, s := range closing {
		r.log.WithFields(logrus.Fields{"tunnel": s.tunnel.name, "session_id": s.id, "reason": msg.Reason}).Info("Closing a session: its key was revoked")
		ctx.Send(s.pid, &relaymsg.CloseSession{Code: msg.Code, Reason: msg.Reason})
	}
}

// sessionDown lets go of a session, and of the exchanges it had: those
// answered learn of the loss from their body stream, which the session
// failed or handed over as an orphan (kept for a resume); those whose
// request frame never left go through another session (or wait for one);
// those written are sent again once if idempotent, and the rest get 502.
func (r *router) sessionDown(ctx actor.Context, msg *relaymsg.SessionDown) {
	s := r.sessions[msg.Session.Id]
	if s == nil {
		if len(r.downFirst) == maxDownFirst {
			r.downFirst = slices.Delete(r.downFirst, 0, 1)
		}
		r.downFirst = append(r.downFirst, msg.Session.Id)
		return
	}
	delete(r.sessions, msg.Session.Id)
	t := s.tunnel
	if s.live {
		s.live = false
		t.sessions = slices.DeleteFunc(t.sessions, func(o *session) bool { return o == s })
		t.next = 0
		t.lastSeen = time.Now()
		r.countSessions(t)
	}
	r.settleStreams(ctx, s, msg.Orphans)
	var lost []*pending
	for _, p := range r.pending {
		if p.session == s && !p.answered {
			lost = append(lost, p)
		}
	}
	// In arrival order, so that a tunnel's requests keep theirs.
	slices.SortFunc(lost, func(a, b *pending) int { return cmp.Compare(a.seq, b.seq) })
	written := make(map[string]bool, len(msg.Written))
	for _, id := range msg.Written {
		written[id] = true
	}
	for _, p := range lost {
		id := p.ex.ID()
		reason := ReasonUnwritten
		if written[id] {
			if !r.cfg.RetryIdempotent || p.retried || !idempotent[p.ex.Request.Method] || p.ex.Upload != nil {
				r.finish(id, p, relaymsg.Outcome{Status: http.StatusBadGateway, Error: "tunnel lost before the response"})
				continue
			}
			p.retried = true
			reason = ReasonIdempotent
		}
		p.cancel()
		s.inFlight--
		p.session = nil
		if r.cfg.Retries != nil {
			r.cfg.Retries.WithLabelValues(reason).Inc()
		}
		r.log.WithFields(logrus.Fields{"tunnel": t.name, "message_id": id, "session_id": s.id, "reason": reason}).
			Info("Session lost before the response; sending the request through another")
		r.route(ctx, t, p)
	}
}

// settleStreams takes the response bodies of the ended session s: each
// orphan is kept for a resume (or adopted at once by the session a
// handover was under way to); every other answered body of s is failed,
// which changes nothing for a body that ended, and cuts off one that no
// session feeds any more (an Adopt that came too late to s).
func (r *router) settleStreams(ctx actor.Context, s *session, orphans []relaymsg.Orphan) {
	kept := make(map[string]bool, len(orphans))
	for _, o := range orphans {
		p := r.pending[o.MessageID]
		if p == nil || p.session != s || p.body != o.Body {
			// The front is done with it already.
			_ = o.Body.Close()
			continue
		}
		kept[o.MessageID] = true
		to := p.resumeTo
		p.resumeTo = nil
		if to != nil && r.sessions[to.pid.Id] != nil {
			r.adopt(ctx, p, to)
			continue
		}
		r.orphan(ctx, p)
	}
	for id, p := range r.pending {
		if p.session != s || !p.answered || p.orphan || kept[id] {
			continue
		}
		if p.body != nil {
			r.cutOff(p)
		}
		if to := p.resumeTo; to != nil {
			// The handover never reached s: the stream had ended there.
			p.resumeTo = nil
			r.refuse(ctx, id, to.pid, "the stream has ended")
		}
	}
}

// orphan keeps the body of p for a resume until the resume timeout, or
// fails it at once when there is none or the relay is closing.
func (r *router) orphan(ctx actor.Context, p *pending) {
	id := p.ex.ID()
	fields := logrus.Fields{"tunnel": p.ex.Tunnel, "message_id": wire.Excerpt(id), "session_id": p.session.id}
	if r.cfg.ResumeTimeout == 0 || r.draining {
		r.log.WithFields(fields).Info("Session lost mid-stream; cutting the response off")
		r.cutOff(p)
		return
	}
	r.log.WithFields(fields).WithField("delay", r.cfg.ResumeTimeout.String()).Info("Session lost mid-stream; keeping the response for a resume")
	p.orphan = true
	p.attempt++
	p.cancel = r.timers.SendOnce(r.cfg.ResumeTimeout, ctx.Self(), &orphanExpired{id: id, attempt: p.attempt})
}

func (r *router) orphanExpired(msg *orphanExpired) {
	p := r.pending[msg.id]
	if p == nil || !p.orphan || p.attempt != msg.attempt {
		return
	}
	p.orphan = false
	r.countResume(ResultExpired)
	r.log.WithFields(logrus.Fields{"tunnel": p.ex.Tunnel, "message_id": wire.Excerpt(msg.id), "delay": r.cfg.ResumeTimeout.String()}).
		Warn("No resume of a stream within the resume timeout; cutting the response off")
	r.cutOff(p)
}

// cutOff fails the response body of p for good: the public client sees
// its response cut, and no resume can take it any more.
func (r *router) cutOff(p *pending) {
	p.body.Fail(relaymsg.ErrTunnelLost)
	p.body = nil
}

// resume moves a response stream to the session that asks for it: at once
// for an orphan, through a handover when its session is alive.
func (r *router) resume(ctx actor.Context, msg *relaymsg.Resume) {
	id := msg.MessageID
	to := r.sessions[msg.Session.Id]
	p := r.pending[id]
	var why string
	switch {
	case to == nil:
		why = "the session is gone"
	case !to.resume:
		why = "the session did not negotiate resume"
	case p == nil:
		why = "no such exchange"
	case p.session == nil || !p.answered || p.body == nil:
		why = "no response stream"
	case p.ex.Tunnel != to.tunnel.name:
		why = "another tunnel's stream"
	case to.replica.instance == "" || p.session.replica.instance != to.replica.instance || !p.session.resume:
		why = "another supervisor's stream"
	case p.resumeTo != nil:
		why = "a resume of the stream is under way"
	}
	if why != "" {
		r.refuse(ctx, id, msg.Session, why)
		return
	}
	if p.orphan {
		r.adopt(ctx, p, to)
		return
	}
	p.resumeTo = to
	ctx.Send(p.session.pid, &relaymsg.Handover{MessageID: id, To: to.pid})
}

// handedOver completes a handover: the body goes to the session that
// resumed it, or, if that one has ended meanwhile, waits for another.
func (r *router) handedOver(ctx actor.Context, msg *relaymsg.HandedOver) {
	p := r.pending[msg.MessageID]
	if p != nil {
		p.resumeTo = nil
	}
	switch {
	case msg.Body == nil:
		// The old session no longer fed it: it ended, or was let go.
		r.refuse(ctx, msg.MessageID, msg.To, "the stream has ended")
	case p == nil:
		// The front let go meanwhile: nobody reads it.
		_ = msg.Body.Close()
		r.refuse(ctx, msg.MessageID, msg.To, "no such exchange")
	case r.sessions[msg.To.Id] == nil:
		r.orphan(ctx, p)
	default:
		r.adopt(ctx, p, r.sessions[msg.To.Id])
	}
}

// adopt gives the body of p to session to, which owns the exchange from
// now on.
func (r *router) adopt(ctx actor.Context, p *pending, to *session) {
	id := p.ex.ID()
	if p.orphan {
		p.cancel()
		p.orphan = false
	}
	r.log.WithFields(logrus.Fields{"tunnel": p.ex.Tunnel, "message_id": wire.Excerpt(id), "from": p.session.id, "session_id": to.id}).
		Info("Response stream resumed through another session")
	p.session.inFlight--
	p.session = to
	to.inFlight++
	r.countResume(ResultResumed)
	ctx.Send(to.pid, &relaymsg.Adopt{MessageID: id, Body: p.body})
}

// refuse answers a stream_resume of id with an error, through session.
func (r *router) refuse(ctx actor.Context, id string, session *actor.PID, why string) {
	r.log.WithFields(logrus.Fields{"message_id": wire.Excerpt(id), "why": why}).Info("Refusing a stream resume")
	r.countResume(ResultRefused)
	ctx.Send(session, &relaymsg.ResumeRefused{MessageID: id})
}

// countResume counts one stream resume by its result.
func (r *router) countResume(result string) {
	if r.cfg.Resumes != nil {
		r.cfg.Resumes.WithLabelValues(result).Inc()
	}
}

func (r *router) forward(ctx actor.Context, ex *relaymsg.Exchange) {
	id := ex.ID()
	t := r.tunnels[ex.Tunnel]
	switch {
	case t == nil:
		answer(ex, relaymsg.Outcome{Status: http.StatusNotFound, Error: fmt.Sprintf("unknown tunnel %q", wire.Excerpt(ex.Tunnel))})
		return
	case r.pending[id] != nil:
		answer(ex, relaymsg.Outcome{Status: http.StatusInternalServerError, Error: "duplicate message_id"})
		return
	}
	r.seq++
	p := &pending{ex: ex, seq: r.seq, cancel: func() {}}
	r.pending[id] = p
	r.route(ctx, t, p)
}

// route dispatches p to the least busy session of t, or holds it until
// one comes up.
func (r *router) route(ctx actor.Context, t *tunnel, p *pending) {
	if s := t.pick(); s != nil {
		r.dispatch(ctx, s, p)
		return
	}
	id := p.ex.ID()
	size := int64(len(p.ex.Request.Body))
	switch {
	case r.draining:
		r.finish(id, p, r.unavailable(p, "relay shutting down"))
		return
	case r.cfg.HoldTimeout == 0:
		r.finish(id, p, r.unavailable(p, fmt.Sprintf("no tunnel %q connected", t.name)))
		return
	case t.held.Len() >= r.cfg.MaxHeld:
		r.finish(id, p, r.unavailable(p, fmt.Sprintf("no tunnel %q connected, and it holds %d requests already", t.name, r.cfg.MaxHeld)))
		return
	case t.heldBytes+size > r.cfg.MaxHeldBytes:
		r.finish(id, p, r.unavailable(p, fmt.Sprintf("no tunnel %q connected, and the bodies it holds would exceed %d bytes", t.name, r.cfg.MaxHeldBytes)))
		return
	}
	p.attempt++
	p.held, p.size = t.held.PushBack(p), size
	t.heldBytes += size
	if r.cfg.Held != nil {
		r.cfg.Held.WithLabelValues(t.name).Inc()
	}
	p.cancel = r.timers.SendOnce(r.cfg.HoldTimeout, ctx.Self(), &holdExpired{id: id, attempt: p.attempt})
}

// unavailable is the outcome of a request that no session can take: 503
// with why, or 502 for one that may have reached a supervisor already.
func (r *router) unavailable(p *pending, why string) relaymsg.Outcome {
	if p.retried {
		return relaymsg.Outcome{Status: http.StatusBadGateway, Error: "tunnel lost before the response"}
	}
	return relaymsg.Outcome{Status: http.StatusServiceUnavailable, Error: why}
}

func (r *router) dispatch(ctx actor.Context, s *session, p *pending) {
	id := p.ex.ID()
	p.session = s
	s.inFlight++
	p.attempt++
	p.cancel = r.timers.SendOnce(r.cfg.RequestTimeout, ctx.Self(), &timedOut{id: id, attempt: p.attempt})
	ctx.Send(s.pid, &relaymsg.Dispatch{Exchange: p.ex})
}

// unhold takes p out of its tunnel's hold queue.
func (r *router) unhold(t *tunnel, p *pending) {
	p.cancel()
	t.held.Remove(p.held)
	t.heldBytes -= p.size
	p.held, p.size = nil, 0
	if r.cfg.Held != nil {
		r.cfg.Held.WithLabelValues(t.name).Dec()
	}
}

func (r *router) countSessions(t *tunnel) {
	if r.cfg.Sessions != nil {
		r.cfg.Sessions.WithLabelValues(t.name).Set(float64(len(t.sessions)))
	}
	if r.cfg.OnSessions != nil {
		r.cfg.OnSessions(t.name, len(t.sessions))
	}
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
	p.body = msg.Body
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
	s := p.session
	r.forget(msg.MessageID, p)
	switch {
	case p.orphan:
		// Its session is gone: the body is dropped here.
		p.orphan = false
		_ = p.body.Close()
	case s == nil:
		// Held: no session has heard of it.
	case msg.Cancel || !p.answered:
		ctx.Send(s.pid, &relaymsg.Cancel{MessageID: msg.MessageID})
	case p.body != nil || p.ex.Upload != nil:
		ctx.Send(s.pid, &relaymsg.Release{MessageID: msg.MessageID})
	default:
		// An inline response to an inline request: the session forgot
		// the exchange when it routed the response.
	}
}

func (r *router) timeout(ctx actor.Context, msg *timedOut) {
	p := r.pending[msg.id]
	if p == nil || p.answered || p.attempt != msg.attempt {
		return
	}
	s := p.session
	r.log.WithFields(logrus.Fields{"tunnel": p.ex.Tunnel, "message_id": msg.id, "session_id": s.id, "delay": r.cfg.RequestTimeout.String()}).
		Warn("No response through the tunnel in time; cancelling the request")
	r.finish(msg.id, p, relaymsg.Outcome{Status: http.StatusGatewayTimeout, Error: fmt.Sprintf("no response from tunnel %q within %v", p.ex.Tunnel, r.cfg.RequestTimeout)})
	ctx.Send(s.pid, &relaymsg.Cancel{MessageID: msg.id})
}

func (r *router) holdExpired(msg *holdExpired) {
	p := r.pending[msg.id]
	if p == nil || p.held == nil || p.attempt != msg.attempt {
		return
	}
	r.log.WithFields(logrus.Fields{"tunnel": p.ex.Tunnel, "message_id": msg.id, "delay": r.cfg.HoldTimeout.String()}).
		Info("No session for the tunnel within the hold timeout")
	r.finish(msg.id, p, r.unavailable(p, fmt.Sprintf("no tunnel %q connected", p.ex.Tunnel)))
}

// finish answers an exchange that has no Outcome yet with out, and forgets it.
func (r *router) finish(id string, p *pending, out relaymsg.Outcome) {
	r.forget(id, p)
	if !p.answered {
		p.answered = true
		answer(p.ex, out)
	}
}

// forget drops p: out of the hold queue, or off its session's count.
func (r *router) forget(id string, p *pending) {
	p.cancel()
	delete(r.pending, id)
	switch {
	case p.held != nil:
		r.unhold(r.tunnels[p.ex.Tunnel], p)
	case p.session != nil:
		p.session.inFlight--
	}
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

// listSessions answers ListSessions: every known tunnel, its live sessions
// and its held requests, sorted by name.
func (r *router) listSessions() *relaymsg.Sessions {
	out := &relaymsg.Sessions{Tunnels: make([]relaymsg.TunnelSessions, 0, len(r.tunnels))}
	for _, t := range r.tunnels {
		ts := relaymsg.TunnelSessions{Name: t.name, Held: t.held.Len(), LastSeen: t.lastSeen,
			Sessions: make([]relaymsg.SessionInfo, 0, len(t.sessions))}
		for _, s := range t.sessions {
			ts.Sessions = append(ts.Sessions, relaymsg.SessionInfo{
				ID: s.id, Instance: s.replica.instance, Index: s.replica.index, InFlight: s.inFlight, Since: s.since,
			})
		}
		out.Tunnels = append(out.Tunnels, ts)
	}
	slices.SortFunc(out.Tunnels, func(a, b relaymsg.TunnelSessions) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
