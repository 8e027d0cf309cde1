package auth

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Defaults of Config.
const (
	// DefaultMaxFailures is how many wrong keys from one address within the
	// failure window block it: 20.
	DefaultMaxFailures = 20
	// DefaultFailureWindow is the window over which wrong keys are counted,
	// and how long a blocked address stays blocked: one minute.
	DefaultFailureWindow = time.Minute
)

// Config configures the auth manager.
type Config struct {
	// Keys maps each tunnel name to its API key. At least one is required.
	Keys map[string]string
	// MaxFailures wrong keys from one address within FailureWindow block
	// that address. Default DefaultMaxFailures (20).
	MaxFailures int
	// FailureWindow, default DefaultFailureWindow (1 minute).
	FailureWindow time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Failures, if set, counts refused keys.
	Failures prometheus.Counter
	// Logger; nil discards.
	Logger *logrus.Logger
}

// DefaultConfig returns a Config with every default set and no keys.
func DefaultConfig() Config {
	return Config{MaxFailures: DefaultMaxFailures, FailureWindow: DefaultFailureWindow}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.MaxFailures < 1 {
		return fmt.Errorf("auth: MaxFailures must be at least 1, got %d", c.MaxFailures)
	}
	if c.FailureWindow <= 0 {
		return errors.New("auth: FailureWindow must be positive")
	}
	return ValidateKeys(c.Keys)
}

// Refusal is why a key was refused.
type Refusal int

// Refusal classes, logged as failure_type.
const (
	// WrongKey: the key opens no tunnel.
	WrongKey Refusal = iota + 1
	// OtherTunnel: the key opens another tunnel than the one asked for.
	OtherTunnel
)

func (r Refusal) String() string {
	switch r {
	case WrongKey:
		return "invalid_key"
	case OtherTunnel:
		return "key_for_other_tunnel"
	}
	return fmt.Sprintf("Refusal(%d)", int(r))
}

// Props returns the auth manager's props. cfg must be valid.
func Props(cfg Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newManager(cfg) })
}

type manager struct {
	cfg       Config
	keys      *keySet
	failures  map[string][]time.Time // per address, its most recent wrong keys, oldest first
	lastSweep time.Time
	log       *logrus.Entry
}

func newManager(cfg Config) *manager {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	return &manager{
		cfg:      cfg,
		keys:     newKeySet(cfg.Keys),
		failures: make(map[string][]time.Time),
		log:      logger.WithField("actor", "auth"),
	}
}

func (m *manager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *relaymsg.Authenticate:
		ctx.Respond(m.authenticate(msg))
	case *relaymsg.CheckAddress:
		ctx.Respond(m.verdict(msg.Addr, m.cfg.Now()))
	}
}

func (m *manager) authenticate(msg *relaymsg.Authenticate) *relaymsg.AuthResult {
	want := msg.Tunnel
	if want == "" {
		want = wire.DefaultTunnel
	}
	tunnel, ok := m.keys.lookup(msg.APIKey)
	if ok && tunnel == want {
		return &relaymsg.AuthResult{OK: true, Tunnel: tunnel}
	}
	refusal := WrongKey
	if ok {
		refusal = OtherTunnel
	}
	m.fail(msg.Addr, want, refusal)
	return &relaymsg.AuthResult{Tunnel: want}
}

func (m *manager) fail(addr, tunnel string, refusal Refusal) {
	now := m.cfg.Now()
	if m.cfg.Failures != nil {
		m.cfg.Failures.Inc()
	}
	m.sweep(now)
	times := append(m.recent(addr, now), now)
	if len(times) > m.cfg.MaxFailures {
		times = times[len(times)-m.cfg.MaxFailures:]
	}
	m.failures[addr] = times
	m.log.WithFields(logrus.Fields{"remote_addr": addr, "tunnel": tunnel, "failure_type": refusal.String(), "recent_failures": len(times)}).
		Warn("Authentication failed: Invalid API key")
	if v := m.verdict(addr, now); v.Blocked && len(times) == m.cfg.MaxFailures {
		m.log.WithFields(logrus.Fields{"remote_addr": addr, "delay": v.RetryAfter.String()}).
			Warn("Too many invalid API keys from one address; refusing its connections")
	}
}

// recent returns addr's failures within the window ending at now.
func (m *manager) recent(addr string, now time.Time) []time.Time {
	times := m.failures[addr]
	for len(times) > 0 && !now.Before(times[0].Add(m.cfg.FailureWindow)) {
		times = times[1:]
	}
	return times
}

func (m *manager) verdict(addr string, now time.Time) *relaymsg.AddressVerdict {
	times := m.recent(addr, now)
	if len(times) < m.cfg.MaxFailures {
		return &relaymsg.AddressVerdict{}
	}
	return &relaymsg.AddressVerdict{Blocked: true, RetryAfter: times[0].Add(m.cfg.FailureWindow).Sub(now)}
}

// sweep forgets, once per window, the addresses with no failure left in it,
// so that many addresses with a few wrong keys each do not add up.
func (m *manager) sweep(now time.Time) {
	if now.Sub(m.lastSweep) < m.cfg.FailureWindow {
		return
	}
	m.lastSweep = now
	for addr := range m.failures {
		if len(m.recent(addr, now)) == 0 {
			delete(m.failures, addr)
		}
	}
}
