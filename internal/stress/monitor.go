package stress

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
)

// The log lines the monitor watches for: the seed's, and the libraries'
// words for an actor that panicked.
const (
	staleLine      = "Stale connection detected"
	trialLine      = "Circuit breaker recovery elapsed: one trial connection"
	relayPanicLine = "Relay actor failed"
	childPanicLine = "Child actor failed; restarting it"
	recoveringLine = "[ACTOR] Recovering" // protoactor's, for every failing actor
)

// monitor follows the tunnel's connections through their state changes
// and the logs, and measures each recovery as it happens: from the moment
// the relay could be reached again on the connection's path (the later of
// the connection's loss, the end of the fault that cut that path off, and
// the breaker's last trial) to the connection's next AUTHENTICATED.
type monitor struct {
	mu          sync.Mutex
	conns       []connTrack // one per connection, by index; connection i goes through path i
	reachableAt []time.Time // per path: when the last fault that cut the relay off ended
	trialAt     time.Time   // the last breaker trial, of any connection
	stales      []time.Time
	recoveries  []time.Duration
	actorPanics []string
	up          chan struct{} // closed while every connection is AUTHENTICATED; replaced when one is no longer
}

// connTrack is what the monitor knows of one connection.
type connTrack struct {
	state         messages.State
	changes       []stateAt
	authenticated int       // times it became AUTHENTICATED
	downAt        time.Time // when it last stopped being AUTHENTICATED
}

type stateAt struct {
	state messages.State
	at    time.Time
}

func newMonitor(connections int) *monitor {
	return &monitor{
		conns:       make([]connTrack, connections),
		reachableAt: make([]time.Time, connections),
		up:          make(chan struct{}),
	}
}

// stateChanged is the tunnel's OnStateChange: s is one connection's change.
func (m *monitor) stateChanged(s messages.StateChanged) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.Connection < 0 || s.Connection >= len(m.conns) {
		// The tunnel has exactly as many connections as the run has paths.
		return
	}
	c := &m.conns[s.Connection]
	at := s.At
	if at.IsZero() {
		at = time.Now()
	}
	if c.state == messages.Authenticated && s.State != messages.Authenticated {
		c.downAt = at
		if m.allUp() {
			m.up = make(chan struct{})
		}
	}
	wasUp := c.state == messages.Authenticated
	c.state = s.State
	c.changes = append(c.changes, stateAt{s.State, at})
	if s.State == messages.Authenticated && !wasUp {
		if c.authenticated > 0 {
			from := latest(c.downAt, m.reachableAt[s.Connection], m.trialAt)
			m.recoveries = append(m.recoveries, at.Sub(from))
		}
		c.authenticated++
		if m.allUp() {
			close(m.up)
		}
	}
}

// allUp says whether every connection is AUTHENTICATED; m.mu is held.
func (m *monitor) allUp() bool {
	for _, c := range m.conns {
		if c.state != messages.Authenticated {
			return false
		}
	}
	return true
}

func latest(ts ...time.Time) time.Time {
	var t time.Time
	for _, x := range ts {
		if x.After(t) {
			t = x
		}
	}
	return t
}

// reachable notes that a fault which cut the relay off on the given paths
// has ended.
func (m *monitor) reachable(at time.Time, paths ...int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range paths {
		m.reachableAt[p] = at
	}
}

// upSignal is closed once every connection is AUTHENTICATED.
func (m *monitor) upSignal() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.up
}

// current is the connections' states, separated by slashes.
func (m *monitor) current() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	states := make([]string, len(m.conns))
	for i, c := range m.conns {
		states[i] = c.state.String()
	}
	return strings.Join(states, "/")
}

// authenticatedAt says whether connection conn was AUTHENTICATED at t.
func (m *monitor) authenticatedAt(conn int, t time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	state := messages.Disconnected
	for _, c := range m.conns[conn].changes {
		if c.at.After(t) {
			break
		}
		state = c.state
	}
	return state == messages.Authenticated
}

// firstStale is the first stale connection caught in [from, to].
func (m *monitor) firstStale(from, to time.Time) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.stales {
		if !s.Before(from) && !s.After(to) {
			return s, true
		}
	}
	return time.Time{}, false
}

// Levels and Fire make the monitor a logrus hook on the supervisor's logger.
func (m *monitor) Levels() []logrus.Level { return logrus.AllLevels }

func (m *monitor) Fire(e *logrus.Entry) error {
	switch {
	case strings.HasPrefix(e.Message, staleLine):
		m.mu.Lock()
		m.stales = append(m.stales, e.Time)
		m.mu.Unlock()
	case e.Message == trialLine:
		m.mu.Lock()
		m.trialAt = e.Time
		m.mu.Unlock()
	case e.Message == childPanicLine:
		m.actorPanic(fmt.Sprintf("%s: %v", e.Message, e.Data["reason"]))
	case e.Message == recoveringLine:
		// The connection actor fails on purpose, with a typed reason that
		// names its failure type; any other reason is a panic.
		if reason := fmt.Sprint(e.Data["reason"]); !typedFailure(reason) {
			m.actorPanic("actor panicked: " + reason)
		}
	}
	return nil
}

// relayHook watches the relay's logger for its actors' panics.
type relayHook struct{ m *monitor }

func (h relayHook) Levels() []logrus.Level { return []logrus.Level{logrus.ErrorLevel} }

func (h relayHook) Fire(e *logrus.Entry) error {
	if e.Message == relayPanicLine {
		h.m.actorPanic(fmt.Sprintf("%s: %v", e.Message, e.Data["error"]))
	}
	return nil
}

func typedFailure(reason string) bool {
	for _, t := range messages.FailureTypes {
		if reason == t.String() || strings.HasPrefix(reason, t.String()+": ") {
			return true
		}
	}
	return false
}

func (m *monitor) actorPanic(what string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.actorPanics = append(m.actorPanics, what)
}

// snapshot is what the monitor has seen so far.
type snapshot struct {
	reconnects  int
	stales      int
	recoveries  []time.Duration
	actorPanics []string
}

func (m *monitor) snapshot() snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	reconnects := 0
	for _, c := range m.conns {
		reconnects += max(0, c.authenticated-1)
	}
	return snapshot{
		reconnects:  reconnects,
		stales:      len(m.stales),
		recoveries:  append([]time.Duration(nil), m.recoveries...),
		actorPanics: append([]string(nil), m.actorPanics...),
	}
}
