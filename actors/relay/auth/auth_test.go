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

type fixture struct {
	p        *probe.Probe
	auth     *actor.PID
	clock    *clock
	failures prometheus.Counter
	logs     *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	system := actor.NewActorSystem(probe.Quiet()...)
	p := probe.New(t, system)
	f := &fixture{p: p, clock: &clock{now: time.Unix(1_700_000_000, 0)}, logs: new(bytes.Buffer),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "failures"})}
	logger := logrus.New()
	logger.SetOutput(f.logs)
	cfg := auth.DefaultConfig()
	cfg.Keys = map[string]string{"default": "secret-default", "a": "secret-a"}
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

func TestTheKeyDecidesTheTunnel(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		key, tunnel string
		ok          bool
	}{
		{"secret-default", "", true},
		{"secret-default", "default", true},
		{"secret-a", "a", true},
		{"secret-a", "", false},
		{"secret-a", "default", false},
		{"secret-default", "a", false},
		{"wrong", "a", false},
		{"", "", false},
	} {
		r := f.authenticate(tc.key, tc.tunnel, "192.0.2.1")
		if r.OK != tc.ok {
			t.Errorf("key %q for tunnel %q: ok %v, want %v", tc.key, tc.tunnel, r.OK, tc.ok)
		}
	}
	var m dto.Metric
	if err := f.failures.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 5 {
		t.Errorf("failures counted %v, want 5", got)
	}
	for _, key := range []string{"secret-default", "secret-a", "wrong"} {
		if strings.Contains(f.logs.String(), key) {
			t.Errorf("a key reached the log:\n%s", f.logs)
		}
	}
	if !strings.Contains(f.logs.String(), "failure_type=key_for_other_tunnel") {
		t.Errorf("log lacks the failure type:\n%s", f.logs)
	}
}

func TestTwentyWrongKeysBlockAnAddressForTheRestOfTheMinute(t *testing.T) {
	f := newFixture(t)
	const addr = "192.0.2.7"
	for i := range 19 {
		f.authenticate("wrong", "", addr)
		f.clock.add(time.Second)
		if v := f.verdict(addr); v.Blocked {
			t.Fatalf("blocked after %d wrong keys", i+1)
		}
	}
	f.authenticate("wrong", "", addr) // the 20th, 19 s after the first
	if v := f.verdict(addr); !v.Blocked || v.RetryAfter != 41*time.Second {
		t.Fatalf("verdict %+v, want blocked for 41s", v)
	}
	if v := f.verdict("192.0.2.8"); v.Blocked {
		t.Fatal("another address is blocked too")
	}
	// A good key from the blocked address is still a good key (its
	// connection was upgraded before the block).
	if r := f.authenticate("secret-a", "a", addr); !r.OK {
		t.Fatal("good key refused")
	}
	f.clock.add(41*time.Second - time.Nanosecond)
	if v := f.verdict(addr); !v.Blocked || v.RetryAfter != time.Nanosecond {
		t.Fatalf("verdict just before the minute %+v", v)
	}
	f.clock.add(time.Nanosecond)
	if v := f.verdict(addr); v.Blocked {
		t.Fatalf("still blocked once the minute has passed: %+v", v)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := auth.DefaultConfig()
	if cfg.MaxFailures != 20 || cfg.FailureWindow != time.Minute {
		t.Fatalf("defaults %+v", cfg)
	}
	cfg.Keys = map[string]string{"a": "k"}
	cfg.MaxFailures = 0
	if err := cfg.Validate(); err == nil {
		t.Fatal("MaxFailures 0 accepted")
	}
}
