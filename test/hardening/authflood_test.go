package hardening_test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// clock is a hand-moved clock for the relay's auth failure window.
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

// The log lines of the connection actor for the two ways a wrong key is
// refused.
const (
	refusedKey     = `"msg":"Authentication failed: Invalid API key"`
	refusedUpgrade = `"msg":"Authentication failed: connection: relay refused the upgrade with HTTP 429 Too Many Requests"`
)

// A supervisor retrying a wrong key as fast as it can gets 20 auth_errors,
// then HTTP 429 on every upgrade (an AUTH_FAILURE) until the minute since
// its first wrong key has passed. Meanwhile a supervisor from another
// address connects and serves, and the relay answers everyone else.
func TestWrongKeyFloodGets429WhileOthersAreServed(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	r := startRelay(t, func(c *relay.Config) { c.Now = clk.Now })
	logger, logs := debugLogger()
	flood := startTunnel(t, harness.TunnelURL(r), wrongKey, "", func(c *supervisor.Config) {
		fastRetry(c)
		c.Logger = logger
	})

	harness.Eventually(t, wait, "an upgrade refused with 429", func() bool { return logs.Count(refusedUpgrade) > 0 })
	if n := logs.Count(refusedKey); n != 20 {
		t.Fatalf("%d auth_errors before the first 429, want 20", n)
	}
	st := flood.Status()
	if st.Health.LastFailureType != messages.AuthFailure.String() || len(st.Health.FailureTypes) != 1 {
		t.Fatalf("flooding supervisor: last failure %s, failures %v; want AUTH_FAILURE only", st.Health.LastFailureType, st.Health.FailureTypes)
	}

	other := startTunnel(t, harness.TunnelURL(r), defaultKey, upstream(t, hello), func(c *supervisor.Config) {
		c.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext
	})
	other.await(messages.Authenticated)
	c := httpClient(t)
	if status, body := get(t, c, publicURL(r)+"/tts"); status != http.StatusOK || body != "hello" {
		t.Fatalf("public request during the flood: %d %q", status, body)
	}
	if status, _ := get(t, c, publicURL(r)+"/health"); status != http.StatusOK {
		t.Fatalf("/health during the flood: %d", status)
	}
	refused := logs.Count(refusedUpgrade)
	harness.Eventually(t, wait, "the flood still refused", func() bool { return logs.Count(refusedUpgrade) > refused })
	if n := logs.Count(refusedKey); n != 20 {
		t.Fatalf("%d auth_errors while blocked, want still 20", n)
	}

	clk.add(time.Minute)
	harness.Eventually(t, wait, "the key tried again after the minute", func() bool { return logs.Count(refusedKey) > 20 })
	if err := flood.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := other.Status(); st.State != messages.Authenticated || len(st.Health.FailureTypes) != 0 {
		t.Fatalf("the other supervisor: %s, failures %v", st.State, st.Health.FailureTypes)
	}
}
