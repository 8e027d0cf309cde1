package health

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// DefaultMaxTransitions is how many recent state transitions the status
// shows unless configured.
const DefaultMaxTransitions = 20

// Config configures the health ledger.
type Config struct {
	// Tunnel names the tunnel in the status (its "tunnel" field). Default "".
	Tunnel string
	// Connection is the index of the tunnel's connection this ledger keeps,
	// shown in its transitions. Default 0.
	Connection int
	// MaxTransitions is how many recent state transitions are kept.
	// Default 20.
	MaxTransitions int
	// Logger receives a debug line per state transition. Default nil, which
	// discards.
	Logger *logrus.Logger
}

// DefaultConfig returns an empty Tunnel name, MaxTransitions 20 and a nil
// (discarding) Logger.
func DefaultConfig() Config {
	return Config{MaxTransitions: DefaultMaxTransitions}
}

// Validate reports a configuration the actor cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.MaxTransitions < 1 {
		errs = append(errs, fmt.Errorf("health: MaxTransitions must be at least 1, got %d", c.MaxTransitions))
	}
	return errors.Join(errs...)
}

// Props returns the props of a health ledger with cfg, which should have
// passed Validate.
func Props(cfg Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newLedger(cfg) })
}

// mean is a running mean that also remembers its last sample.
type mean struct {
	n    int
	sum  float64
	last float64
}

func (m *mean) add(x float64) {
	m.n++
	m.sum += x
	m.last = x
}

func (m *mean) value() float64 {
	if m.n == 0 {
		return 0
	}
	return m.sum / float64(m.n)
}

// lastOrNil is the last sample, or nil before the first.
func (m *mean) lastOrNil() *float64 {
	if m.n == 0 {
		return nil
	}
	return seconds(m.last)
}

func seconds(s float64) *float64 { return &s }

type ledger struct {
	cfg Config
	log *logrus.Entry

	// conn is the connection's own state; the tunnel's state shows
	// CIRCUIT_BREAKER over it while the breaker is open.
	conn        messages.State
	breaker     actormsg.BreakerStatus
	transitions []messages.Transition

	attempts, successes int
	lastSuccess         time.Time // zero before the first success
	authenticatedAt     time.Time // start of the current authenticated connection

	failureTypes    map[string]int
	lastError       string
	lastFailureType string

	drops         int
	connectedTime mean
	connectTime   mean
	heartbeatRTT  mean
}

func newLedger(cfg Config) *ledger {
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	return &ledger{
		cfg:          cfg,
		log:          logger.WithField("actor", "health"),
		conn:         messages.Disconnected,
		transitions:  []messages.Transition{},
		failureTypes: map[string]int{},
	}
}

func (l *ledger) Receive(ctx actor.Context) {
	before := l.state()
	switch m := ctx.Message().(type) {
	case *messages.StateChanged:
		l.stateChanged(m)
	case *actormsg.ConnectionFailed:
		l.failed(m)
	case *actormsg.HeartbeatRTT:
		l.heartbeatRTT.add(m.RTT.Seconds())
	case *actormsg.BreakerStatus:
		l.breaker = *m
	case *actormsg.GetStatus:
		ctx.Respond(l.status())
	}
	if after := l.state(); after != before {
		l.transitions = append(l.transitions, messages.Transition{Connection: l.cfg.Connection, From: before, To: after, At: time.Now()})
		if extra := len(l.transitions) - l.cfg.MaxTransitions; extra > 0 {
			l.transitions = slices.Delete(l.transitions, 0, extra)
		}
		l.log.WithFields(logrus.Fields{"state": after.String(), "from": before.String()}).Debug("Tunnel state changed")
	}
}

// state is the tunnel's state as the status shows it.
func (l *ledger) state() messages.State {
	if l.breaker.State == messages.BreakerOpen {
		return messages.CircuitBreaker
	}
	return l.conn
}

func (l *ledger) stateChanged(m *messages.StateChanged) {
	l.endConnection()
	l.conn = m.State
	switch m.State {
	case messages.Connecting:
		l.attempts++
	case messages.Authenticated:
		now := time.Now()
		l.successes++
		l.lastSuccess = now
		l.authenticatedAt = now
		l.connectTime.add(m.ConnectTime.Seconds())
	}
}

func (l *ledger) failed(f *actormsg.ConnectionFailed) {
	l.endConnection()
	l.conn = messages.Disconnected
	if f.WasAuthenticated {
		l.drops++
	}
	name := f.Type.String()
	l.failureTypes[name]++
	l.lastFailureType = name
	l.lastError = ""
	if f.Err != nil {
		l.lastError = f.Err.Error()
	}
}

// endConnection accounts for the authenticated connection, if any, that
// whatever is being handled ends.
func (l *ledger) endConnection() {
	if l.conn == messages.Authenticated {
		l.connectedTime.add(time.Since(l.authenticatedAt).Seconds())
	}
}

func (l *ledger) status() *messages.Status {
	now := time.Now()
	state := l.state()
	h := messages.Health{
		TotalAttempts:       l.attempts,
		Successes:           l.successes,
		ConsecutiveFailures: l.breaker.ConsecutiveFailures,
		FailureTypes:        maps.Clone(l.failureTypes),
		LastError:           l.lastError,
		LastFailureType:     l.lastFailureType,
		Drops:               l.drops,
		MeanConnectedTime:   l.connectedTime.value(),
		LastConnectTime:     l.connectTime.lastOrNil(),
		MeanConnectTime:     l.connectTime.value(),
		LastHeartbeatRTT:    l.heartbeatRTT.lastOrNil(),
		MeanHeartbeatRTT:    l.heartbeatRTT.value(),
		Transitions:         append([]messages.Transition{}, l.transitions...),
	}
	if l.attempts > 0 {
		h.SuccessRate = float64(l.successes) / float64(l.attempts)
	}
	if !l.lastSuccess.IsZero() {
		h.TimeSinceLastSuccess = seconds(now.Sub(l.lastSuccess).Seconds())
	}
	if l.conn == messages.Authenticated {
		h.Uptime = seconds(now.Sub(l.authenticatedAt).Seconds())
	}
	cb := messages.BreakerReport{State: l.breaker.State, Openings: l.breaker.Openings}
	if l.breaker.State == messages.BreakerOpen {
		cb.Active = true
		cb.RecoveryIn = max(0, l.breaker.OpenUntil.Sub(now)).Seconds()
	}
	ready := 0
	if state == messages.Authenticated {
		ready = 1
	}
	return &messages.Status{
		State:            state,
		Connected:        state == messages.Authenticated,
		ReadyConnections: ready,
		Tunnel:           l.cfg.Tunnel,
		Health:           h,
		CircuitBreaker:   cb,
	}
}
