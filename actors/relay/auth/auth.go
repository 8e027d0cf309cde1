package auth

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Defaults of Config.
const (
	// DefaultMaxFailures is how many auth failures (wrong keys, auth
	// timeouts) one address may have within the failure window before its
	// wrong keys are answered at a slower pace: 20.
	DefaultMaxFailures = 20
	// DefaultFailureWindow is the window over which failures are counted:
	// one minute.
	DefaultFailureWindow = time.Minute
	// DefaultUpgradeRate is how many WebSocket upgrades per second one
	// address may make, on average: 10.
	DefaultUpgradeRate = 10
	// DefaultUpgradeBurst is how many upgrades one address may make at once:
	// 50, room for a fleet of supervisors behind one NAT reconnecting
	// together after a relay restart.
	DefaultUpgradeBurst = 50
)

// Reasons of auth failures, the reason label of Config.Failures.
const (
	ReasonInvalidKey  = "invalid_key"
	ReasonOtherTunnel = "key_for_other_tunnel"
	ReasonTimeout     = "timeout"
)

// Config configures the auth manager.
type Config struct {
	// Keys maps each tunnel name to its API key. At least one is required,
	// each of MinKeyBits or more (see ValidateKeys).
	Keys map[string]string
	// MaxFailures auth failures from one address within FailureWindow
	// throttle it: its next wrong keys are answered one per
	// FailureWindow/MaxFailures (3 s by default), each connection held
	// until its turn or its auth timeout. Right keys are answered at once,
	// whatever the address did. Default DefaultMaxFailures (20).
	MaxFailures int
	// FailureWindow, default DefaultFailureWindow (1 minute).
	FailureWindow time.Duration
	// UpgradeRate and UpgradeBurst bound the WebSocket upgrades of one
	// address (a token bucket); beyond, the upgrade is answered 429.
	// Defaults DefaultUpgradeRate (10 per second) and DefaultUpgradeBurst (50).
	UpgradeRate  float64
	UpgradeBurst int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Failures, if set, counts auth failures by reason: one label, valued
	// ReasonInvalidKey, ReasonOtherTunnel or ReasonTimeout.
	Failures *prometheus.CounterVec
	// Logger; nil discards.
	Logger *logrus.Logger
}

// DefaultConfig returns a Config with every default set and no keys.
func DefaultConfig() Config {
	return Config{
		MaxFailures:   DefaultMaxFailures,
		FailureWindow: DefaultFailureWindow,
		UpgradeRate:   DefaultUpgradeRate,
		UpgradeBurst:  DefaultUpgradeBurst,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.MaxFailures < 1 {
		return fmt.Errorf("auth: MaxFailures must be at least 1, got %d", c.MaxFailures)
	}
	if c.FailureWindow <= 0 {
		return errors.New("auth: FailureWindow must be positive")
	}
	if c.UpgradeRate <= 0 || c.UpgradeBurst < 1 {
		return fmt.Errorf("auth: UpgradeRate and UpgradeBurst must be positive, got %v and %d", c.UpgradeRate, c.UpgradeBurst)
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
		return ReasonInvalidKey
	case OtherTunnel:
		return ReasonOtherTunnel
	}
	return fmt.Sprintf("Refusal(%d)", int(r))
}

// Props returns the auth manager's props. cfg must be valid.
func Props(cfg Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newManager(cfg) })
}

// address is what the manager knows of one client address.
type address struct {
	upgrades *rate.Limiter
	failures []time.Time // the most recent, within the window, oldest first
	// answerAt is when the next throttled refusal may go out.
	answerAt time.Time
}

type manager struct {
	cfg       Config
	keys      *keySet
	addrs     map[string]*address
	lastSweep time.Time
	// pace is the gap between two throttled refusals of one address.
	pace time.Duration
	log  *logrus.Entry
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
		cfg:   cfg,
		keys:  newKeySet(cfg.Keys),
		addrs: make(map[string]*address),
		pace:  cfg.FailureWindow / time.Duration(cfg.MaxFailures),
		log:   logger.WithField("actor", "auth"),
	}
}

func (m *manager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *relaymsg.Authenticate:
		ctx.Respond(m.authenticate(msg))
	case *relaymsg.AuthTimedOut:
		m.fail(msg.Addr, ReasonTimeout)
	case *relaymsg.CheckAddress:
		ctx.Respond(m.admit(msg.Addr))
	case *relaymsg.ReloadKeys:
		res := m.reload(msg.Keys)
		if ctx.Sender() != nil {
			ctx.Respond(res)
		}
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
	delay := m.fail(msg.Addr, refusal.String())
	fields := logrus.Fields{"remote_addr": msg.Addr, "tunnel": wire.Excerpt(want), "failure_type": refusal.String()}
	if delay > 0 {
		m.log.WithFields(fields).WithField("delay", delay.String()).Debug("Authentication failed: Invalid API key; answer held")
	} else {
		m.log.WithFields(fields).Warn("Authentication failed: Invalid API key")
	}
	return &relaymsg.AuthResult{Tunnel: want, Delay: delay}
}

// fail records a failure of addr and returns how long its refusal is held:
// zero while addr is within its limit, else until its turn at the pace of
// one refusal per FailureWindow/MaxFailures.
func (m *manager) fail(addr, reason string) time.Duration {
	now := m.cfg.Now()
	if m.cfg.Failures != nil {
		m.cfg.Failures.WithLabelValues(reason).Inc()
	}
	a := m.address(addr, now)
	recent := m.recent(a, now)
	a.failures = append(recent, now)
	if len(a.failures) > m.cfg.MaxFailures {
		a.failures = a.failures[len(a.failures)-m.cfg.MaxFailures:]
	}
	if len(recent) < m.cfg.MaxFailures {
		if len(a.failures) == m.cfg.MaxFailures {
			m.log.WithFields(logrus.Fields{"remote_addr": addr, "limit": m.cfg.MaxFailures, "delay": m.pace.String()}).
				Warn("Too many auth failures from one address; its wrong keys are answered slowly, right keys still at once")
		}
		return 0
	}
	a.answerAt = later(a.answerAt, now).Add(m.pace)
	return a.answerAt.Sub(now)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// admit takes one upgrade from addr's bucket, or says when to come back.
func (m *manager) admit(addr string) *relaymsg.AddressVerdict {
	now := m.cfg.Now()
	a := m.address(addr, now)
	if a.upgrades.AllowN(now, 1) {
		return &relaymsg.AddressVerdict{}
	}
	return &relaymsg.AddressVerdict{Blocked: true, RetryAfter: time.Duration(float64(time.Second) / m.cfg.UpgradeRate)}
}

// address returns the record of addr, made on first use.
func (m *manager) address(addr string, now time.Time) *address {
	m.sweep(now)
	a := m.addrs[addr]
	if a == nil {
		a = &address{upgrades: rate.NewLimiter(rate.Limit(m.cfg.UpgradeRate), m.cfg.UpgradeBurst)}
		m.addrs[addr] = a
	}
	return a
}

// recent returns a's failures within the window ending at now.
func (m *manager) recent(a *address, now time.Time) []time.Time {
	times := a.failures
	for len(times) > 0 && !now.Before(times[0].Add(m.cfg.FailureWindow)) {
		times = times[1:]
	}
	return times
}

// sweep forgets, once per window, the addresses that are back where a new
// one starts: no failure in the window, no refusal held, a full bucket. So
// many addresses with a little traffic each do not add up.
func (m *manager) sweep(now time.Time) {
	if now.Sub(m.lastSweep) < m.cfg.FailureWindow {
		return
	}
	m.lastSweep = now
	for addr, a := range m.addrs {
		if len(m.recent(a, now)) == 0 && !a.answerAt.After(now) && a.upgrades.TokensAt(now) >= float64(m.cfg.UpgradeBurst) {
			delete(m.addrs, addr)
		}
	}
}
