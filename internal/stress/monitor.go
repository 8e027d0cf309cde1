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

// monitor follows the tunnel through its state changes and its logs, and
// measures each recovery as it happens: from the moment the relay could be
// reached again (the later of the connection's loss, the end of the fault
// that made the relay unreachable, and the breaker's last trial) to the
// next AUTHENTICATED.
type monitor struct {
	mu            sync.Mutex
	state         messages.State
	changes       []stateAt
	authenticated int
	downAt        time.Time // when the last authenticated connection was lost
	reachableAt   time.Time // when the last fault that cut the relay off ended
	trialAt       time.Time // the breaker's last trial
	stales        []time.Time
	recoveries    []time.Duration
	actorPanics   []string
	up            chan struct{} // closed on AUTHENTICATED; replaced when it ends
}

type stateAt struct {
	state messages.State
	at    time.Time
}

func newMonitor() *monitor {
	return &monitor{up: make(chan struct{})}
}

// stateChanged is the tunnel's OnStateChange.
func (m *monitor) stateChanged(s messages.StateChanged) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at := s.At
	if at.IsZero() {
		at = time.Now()
	}
	if m.state == messages.Authenticated && s.State != messages.Authenticated {
		m.downAt = at
		m.up = make(chan struct{})
	}
	if s.State == messages.Authenticated && m.state != messages.Authenticated {
		if m.authenticated > 0 {
			from := latest(m.downAt, m.reachableAt, m.trialAt)
			m.recoveries = append(m.recoveries, at.Sub(from))
		}
		m.authenticated++
		close(m.up)
	}
	m.state = s.State
	m.changes = append(m.changes, stateAt{s.State, at})
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

// reachable notes that a fault which cut the relay off has ended.
func (m *monitor) reachable(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reachableAt = at
}

// upSignal is closed once the tunnel is AUTHENTICATED.
func (m *monitor) upSignal() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.up
}

func (m *monitor) current() messages.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// authenticatedAt says whether the tunnel was AUTHENTICATED at t.
func (m *monitor) authenticatedAt(t time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	state := messages.Disconnected
	for _, c := range m.changes {
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
	return snapshot{
		reconnects:  max(0, m.authenticated-1),
		stales:      len(m.stales),
		recoveries:  append([]time.Duration(nil), m.recoveries...),
		actorPanics: append([]string(nil), m.actorPanics...),
	}
}
