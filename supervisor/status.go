package supervisor

import (
	"math"
	"net/url"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/enhanced-tunnel/tunnel/actors/health"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// Status is the tunnel's status in the seed's shape (see messages.Status).
type Status = messages.Status

// statusTimeout bounds a Status call; the ledger answers in microseconds.
const statusTimeout = 5 * time.Second

// Status returns the tunnel's status: each connection's, answered by its
// health ledger, and their aggregate at the top level (see aggregate).
func (t *Tunnel) Status() Status {
	var each []Status
	if !t.stopped.Load() {
		each = t.statuses()
	}
	return aggregate(t.cfg, each)
}

// statuses asks every connection's ledger, all at once.
func (t *Tunnel) statuses() []Status {
	res, err := t.system.Root.RequestFuture(t.root, &getPaths{}, statusTimeout).Result()
	ps, ok := res.(*paths)
	if err != nil || !ok {
		return nil
	}
	futures := make([]*actor.Future, len(ps.pids))
	for i, pid := range ps.pids {
		futures[i] = t.system.Root.RequestFuture(pid, &actormsg.GetStatus{}, statusTimeout)
	}
	each := make([]Status, len(futures))
	for i, f := range futures {
		res, err := f.Result()
		s, ok := res.(*messages.Status)
		if err != nil || !ok {
			return nil
		}
		each[i] = *s
	}
	return each
}

// rank orders the states from worst to best, for the tunnel's state: the
// best of its connections'.
var rank = map[messages.State]int{
	messages.CircuitBreaker: 0,
	messages.Disconnected:   1,
	messages.Connecting:     2,
	messages.Connected:      3,
	messages.Authenticating: 4,
	messages.Authenticated:  5,
}

// breakerRank orders breaker states from the least to the most severe.
var breakerRank = map[messages.BreakerState]int{
	messages.BreakerClosed:   0,
	messages.BreakerHalfOpen: 1,
	messages.BreakerOpen:     2,
}

// aggregate builds the tunnel's status from its connections' (each, in
// index order; nil when the ledgers could not answer, as after Stop):
//
//   - state is the best state of any connection, connected is true while at
//     least one is AUTHENTICATED, ready_connections counts those;
//   - the health counters (attempts, successes, consecutive failures,
//     drops, failure types) are sums, success_rate is their ratio, the means
//     are weighted by the samples behind them, time_since_last_success and
//     uptime come from the connection that is best off, the last error from
//     the connection that failed most recently, the last connect time and
//     round trip from the connection that changed most recently; recent_transitions merges every connection's, newest
//     last, each naming its connection;
//   - circuit_breaker shows the most severe breaker (with the nearest
//     recovery among the open ones) and the openings of all.
func aggregate(cfg Config, each []Status) Status {
	if len(each) == 0 {
		each = make([]Status, cfg.Connections)
		for i := range each {
			each[i] = Status{State: messages.Disconnected, Tunnel: cfg.Tunnel, Health: messages.Health{FailureTypes: map[string]int{}, Transitions: []messages.Transition{}}}
		}
	}
	s := Status{State: messages.CircuitBreaker, Tunnel: cfg.Tunnel, Health: messages.Health{FailureTypes: map[string]int{}, Transitions: []messages.Transition{}}}
	h := &s.Health
	var connected, connectTimes, rtts float64
	var latest, failedLast *Status
	newest := func(c *Status) (at int64) {
		if n := len(c.Health.Transitions); n > 0 {
			return c.Health.Transitions[n-1].At.UnixNano()
		}
		return 0
	}
	// lastFailure is when c last went down; a connection's ledger keeps only
	// its last error, so the tunnel's is the one that failed last.
	lastFailure := func(c *Status) (at int64) {
		for _, tr := range c.Health.Transitions {
			if tr.To == messages.Disconnected || tr.To == messages.CircuitBreaker {
				at = tr.At.UnixNano()
			}
		}
		return at
	}
	for i := range each {
		c := &each[i]
		if rank[c.State] > rank[s.State] {
			s.State = c.State
		}
		if c.State == messages.Authenticated {
			s.ReadyConnections++
		}
		s.Connections = append(s.Connections, messages.ConnectionStatus{
			Index: i, RelayURL: RedactURL(cfg.URLOf(i)), State: c.State, Connected: c.Connected,
			Health: c.Health, CircuitBreaker: c.CircuitBreaker,
		})

		ch := c.Health
		h.TotalAttempts += ch.TotalAttempts
		h.Successes += ch.Successes
		h.ConsecutiveFailures += ch.ConsecutiveFailures
		h.Drops += ch.Drops
		for name, n := range ch.FailureTypes {
			h.FailureTypes[name] += n
		}
		h.TimeSinceLastSuccess = either(h.TimeSinceLastSuccess, ch.TimeSinceLastSuccess, math.Min)
		h.Uptime = either(h.Uptime, ch.Uptime, math.Max)
		connected += ch.MeanConnectedTime * float64(max(ch.Successes-boolInt(c.State == messages.Authenticated), 0))
		connectTimes += ch.MeanConnectTime * float64(ch.Successes)
		if ch.MeanHeartbeatRTT > 0 {
			rtts += ch.MeanHeartbeatRTT
			h.MeanHeartbeatRTT++ // counts the connections with a mean, divided below
		}
		h.Transitions = append(h.Transitions, ch.Transitions...)
		if latest == nil || newest(c) > newest(latest) {
			latest = c
		}
		if c.Health.LastFailureType != "" && (failedLast == nil || lastFailure(c) > lastFailure(failedLast)) {
			failedLast = c
		}

		cb := c.CircuitBreaker
		s.CircuitBreaker.Openings += cb.Openings
		if breakerRank[cb.State] > breakerRank[s.CircuitBreaker.State] ||
			(cb.Active && s.CircuitBreaker.Active && cb.RecoveryIn < s.CircuitBreaker.RecoveryIn) {
			s.CircuitBreaker.State, s.CircuitBreaker.Active, s.CircuitBreaker.RecoveryIn = cb.State, cb.Active, cb.RecoveryIn
		}
	}
	s.Connected = s.ReadyConnections > 0
	if h.TotalAttempts > 0 {
		h.SuccessRate = float64(h.Successes) / float64(h.TotalAttempts)
	}
	if ended := h.Successes - s.ReadyConnections; ended > 0 {
		h.MeanConnectedTime = connected / float64(ended)
	}
	if h.Successes > 0 {
		h.MeanConnectTime = connectTimes / float64(h.Successes)
	}
	if h.MeanHeartbeatRTT > 0 {
		h.MeanHeartbeatRTT = rtts / h.MeanHeartbeatRTT
	}
	if failedLast != nil {
		h.LastError, h.LastFailureType = failedLast.Health.LastError, failedLast.Health.LastFailureType
	}
	if latest != nil {
		h.LastConnectTime, h.LastHeartbeatRTT = latest.Health.LastConnectTime, latest.Health.LastHeartbeatRTT
	}
	slices.SortStableFunc(h.Transitions, func(a, b messages.Transition) int { return a.At.Compare(b.At) })
	if extra := len(h.Transitions) - health.DefaultMaxTransitions; extra > 0 {
		h.Transitions = slices.Delete(h.Transitions, 0, extra)
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// either combines two optional values with pick; a missing one yields
// the other.
func either(a, b *float64, pick func(x, y float64) float64) *float64 {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	v := pick(*a, *b)
	return &v
}

// RedactURL hides any password in a URL, for logs and the status; a URL
// that does not parse is not shown at all.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
