package auth_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Keys of the fixture's tunnels: strong enough for ValidateKeys.
const (
	keyDefault = "secret-default-Qm9uam91cg"
	keyA       = "secret-a-SGVsbG8gd29ybGQ"
)

type fixture struct {
	p        *probe.Probe
	auth     *actor.PID
	clock    *clock
	failures *prometheus.CounterVec
	logs     *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	system := actor.NewActorSystem(probe.Quiet()...)
	p := probe.New(t, system)
	f := &fixture{p: p, clock: &clock{now: time.Unix(1_700_000_000, 0)}, logs: new(bytes.Buffer),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "failures"}, []string{"reason"})}
	logger := logrus.New()
	logger.SetOutput(f.logs)
	logger.SetLevel(logrus.DebugLevel)
	cfg := auth.DefaultConfig()
	cfg.Keys = map[string]string{"default": keyDefault, "a": keyA}
	cfg.Now, cfg.Failures, cfg.Logger = f.clock.Now, f.failures, logger
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f.auth = p.SpawnChild(auth.Props(cfg))
	return f
}

func (f *fixture) authenticate(key, tunnel, addr string) *relaymsg.AuthResult {
	f.p.Send(f.auth, &relaymsg.Authenticate{APIKey: key, Tunnel: tunnel, Addr: addr})
	r, _ := probe.Expect[*relaymsg.AuthResult](f.p)
	return r
}

func (f *fixture) verdict(addr string) *relaymsg.AddressVerdict {
	f.p.Send(f.auth, &relaymsg.CheckAddress{Addr: addr})
	v, _ := probe.Expect[*relaymsg.AddressVerdict](f.p)
	return v
}

func (f *fixture) failed(t *testing.T, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := f.failures.WithLabelValues(reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestTheKeyDecidesTheTunnel(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		key, tunnel string
		ok          bool
	}{
		{keyDefault, "", true},
		{keyDefault, "default", true},
		{keyA, "a", true},
		{keyA, "", false},
		{keyA, "default", false},
		{keyDefault, "a", false},
		{"wrong", "a", false},
		{"", "", false},
	} {
		r := f.authenticate(tc.key, tc.tunnel, "192.0.2.1")
		if r.OK != tc.ok || r.Delay != 0 {
			t.Errorf("key %q for tunnel %q: ok %v, delay %v; want %v at once", tc.key, tc.tunnel, r.OK, r.Delay, tc.ok)
		}
	}
	if got := f.failed(t, auth.ReasonOtherTunnel); got != 3 {
		t.Errorf("key_for_other_tunnel failures %v, want 3", got)
	}
	if got := f.failed(t, auth.ReasonInvalidKey); got != 2 {
		t.Errorf("invalid_key failures %v, want 2", got)
	}
	for _, key := range []string{keyDefault, keyA, "wrong"} {
		if strings.Contains(f.logs.String(), key) {
			t.Errorf("a key reached the log:\n%s", f.logs)
		}
	}
	if !strings.Contains(f.logs.String(), "failure_type=key_for_other_tunnel") {
		t.Errorf("log lacks the failure type:\n%s", f.logs)
	}
}

// Past 20 failures in a minute, an address's wrong keys are held, one more
// per 3 s, whatever kind the failures were; its right keys are answered at
// once all along. Once the window has slid past, wrong keys are answered at
// once again.
func TestFailuresPastTheLimitHoldWrongKeysButNeverRightOnes(t *testing.T) {
	f := newFixture(t)
	const addr = "192.0.2.7"
	for i := range 10 {
		f.p.Send(f.auth, &relaymsg.AuthTimedOut{Addr: addr})
		if r := f.authenticate("wrong", "", addr); r.Delay != 0 {
			t.Fatalf("failure %d held %v", 2*i+2, r.Delay)
		}
		f.clock.add(time.Second)
	}
	if got := f.failed(t, auth.ReasonTimeout); got != 10 {
		t.Fatalf("timeouts counted %v, want 10", got)
	}
	for i, want := range []time.Duration{3 * time.Second, 6 * time.Second, 9 * time.Second} {
		if r := f.authenticate("wrong", "", addr); r.OK || r.Delay != want {
			t.Fatalf("wrong key %d past the limit: %+v, want refused after %v", i+1, r, want)
		}
		if r := f.authenticate(keyA, "a", addr); !r.OK || r.Delay != 0 {
			t.Fatalf("right key from the same address: %+v, want accepted at once", r)
		}
	}
	if r := f.authenticate("wrong", "", "192.0.2.8"); r.Delay != 0 {
		t.Fatalf("another address held %v", r.Delay)
	}
	// A minute on, every failure has left the window.
	f.clock.add(time.Minute)
	if r := f.authenticate("wrong", "", addr); r.Delay != 0 {
		t.Fatalf("a minute later the wrong key was held %v", r.Delay)
	}
	if !strings.Contains(f.logs.String(), "Too many auth failures from one address") {
		t.Errorf("the limit was crossed without a word:\n%s", f.logs)
	}
}

// Upgrades come from a token bucket per address: 50 at once, then 10 a
// second; another address has its own.
func TestUpgradesAreRateLimitedPerAddress(t *testing.T) {
	f := newFixture(t)
	const addr = "192.0.2.9"
	for i := range auth.DefaultUpgradeBurst {
		if v := f.verdict(addr); v.Blocked {
			t.Fatalf("upgrade %d refused", i+1)
		}
	}
	if v := f.verdict(addr); !v.Blocked || v.RetryAfter != 100*time.Millisecond {
		t.Fatalf("past the burst: %+v, want blocked, retry after 100ms", v)
	}
	if v := f.verdict("192.0.2.10"); v.Blocked {
		t.Fatal("another address is refused too")
	}
	f.clock.add(100 * time.Millisecond)
	if v := f.verdict(addr); v.Blocked {
		t.Fatal("refused after the bucket refilled a token")
	}
	if v := f.verdict(addr); !v.Blocked {
		t.Fatal("a second upgrade passed on one token")
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := auth.DefaultConfig()
	if cfg.MaxFailures != 20 || cfg.FailureWindow != time.Minute || cfg.UpgradeRate != 10 || cfg.UpgradeBurst != 50 {
		t.Fatalf("defaults %+v", cfg)
	}
	cfg.Keys = map[string]string{"a": keyA}
	for name, change := range map[string]func(*auth.Config){
		"MaxFailures":  func(c *auth.Config) { c.MaxFailures = 0 },
		"UpgradeRate":  func(c *auth.Config) { c.UpgradeRate = 0 },
		"UpgradeBurst": func(c *auth.Config) { c.UpgradeBurst = 0 },
	} {
		c := cfg
		change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v", name, err)
		}
	}
}
