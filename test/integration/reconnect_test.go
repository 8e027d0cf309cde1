package integration

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/httpapi"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// freeAddr is a loopback address nothing listens on, for a relay that is
// not there yet.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// retryGaps returns, for every attempt that followed a failure, the time
// from the failure (its DISCONNECTED) to the attempt (its CONNECTING):
// retries in afterFailure, and the breaker's trials (attempts after a
// CIRCUIT_BREAKER) in afterBreaker. A trial is measured from the failure
// too: the breaker's recovery starts when it hears of the failure, a little
// before the supervisor reports CIRCUIT_BREAKER.
func retryGaps(changes []messages.StateChanged) (afterFailure, afterBreaker []time.Duration) {
	var down time.Time
	open := false
	for _, c := range changes {
		switch c.State {
		case messages.Disconnected:
			down = c.At
		case messages.CircuitBreaker:
			open = true
		case messages.Connecting:
			switch {
			case down.IsZero():
			case open:
				afterBreaker = append(afterBreaker, c.At.Sub(down))
			default:
				afterFailure = append(afterFailure, c.At.Sub(down))
			}
			down, open = time.Time{}, false
		}
	}
	return afterFailure, afterBreaker
}

// atLeast fails for every gap shorter than min.
func atLeast(t *testing.T, what string, gaps []time.Duration, min time.Duration) {
	t.Helper()
	for i, g := range gaps {
		if g < min {
			t.Errorf("%s %d came %v after its cause, before the %v delay", what, i+1, g, min)
		}
	}
}

func statesOf(changes []messages.StateChanged) []string {
	var s []string
	for _, c := range changes {
		s = append(s, c.State.String())
	}
	return s
}

func TestWrongKeyIsAnAuthFailureRetriedAfterTheAuthDelay(t *testing.T) {
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", nil)
	up := w.startUpstream(echoUpstream())
	const authDelay = 300 * time.Millisecond
	tn := w.startTunnel(harness.TunnelURL(r), up.URL, func(c *supervisor.Config) {
		c.APIKey = "itest-wrong-key-0c8e2f6a9b1d"
		c.AuthRetryDelay = authDelay
		c.RetryDelay = 50 * time.Millisecond // must not be the delay used
		c.BreakerThreshold = 100             // the breaker is another test's business
	})

	harness.Eventually(t, patience, "three auth failures", func() bool {
		return tn.Status().Health.FailureTypes[messages.AuthFailure.String()] >= 3
	})
	st := tn.Status()
	h := st.Health
	if st.Connected || h.Successes != 0 || h.LastFailureType != messages.AuthFailure.String() || len(h.FailureTypes) != 1 {
		t.Errorf("status: connected %v, %d successes, last failure %s, failure types %v; want only auth failures",
			st.Connected, h.Successes, h.LastFailureType, h.FailureTypes)
	}
	gaps, _ := retryGaps(tn.states.All())
	if len(gaps) < 2 {
		t.Fatalf("%d retries seen in %v, want at least 2", len(gaps), statesOf(tn.states.All()))
	}
	atLeast(t, "retry", gaps, authDelay)
	if code, _ := w.get(publicURL(r, "/anything")); code != http.StatusServiceUnavailable {
		t.Errorf("public request with no authenticated tunnel: %d, want 503", code)
	}
}

func TestRelayRestartIsANetworkErrorThenReconnects(t *testing.T) {
	w := newWorld(t)
	r1 := w.startRelay("127.0.0.1:0", nil)
	addr := r1.Addr().String()
	up := w.startUpstream(echoUpstream())
	const retry = 300 * time.Millisecond
	tn := w.startTunnel(harness.TunnelURL(r1), up.URL, func(c *supervisor.Config) {
		c.RetryDelay = retry
		c.BreakerThreshold = 100 // however long the relay takes to come back
	})
	w.waitConnected(tn, r1)

	harness.CloseRelay(t, r1)
	harness.Eventually(t, patience, "a NETWORK_ERROR", func() bool {
		return tn.Status().Health.FailureTypes[messages.NetworkError.String()] == 1
	})
	r2 := w.startRelay(addr, nil)
	w.waitConnected(tn, r2)

	h := tn.Status().Health
	if h.Successes != 2 || h.Drops != 1 || h.FailureTypes[messages.NetworkError.String()] != 1 {
		t.Errorf("health: %d successes, %d drops, failure types %v; want 2 successes, 1 drop, 1 NETWORK_ERROR",
			h.Successes, h.Drops, h.FailureTypes)
	}
	gaps, _ := retryGaps(tn.states.All())
	if len(gaps) == 0 {
		t.Fatalf("no retry seen in %v", statesOf(tn.states.All()))
	}
	atLeast(t, "retry", gaps, retry)
	req, _ := http.NewRequest(http.MethodPost, publicURL(r2, "/echo"), nil)
	if resp, _, err := w.do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("request through the new relay: %v %v, want 200", resp, err)
	}
}

// healthOf asks a supervisor's /health.
func healthOf(t *testing.T, w *world, url string) (int, httpapi.Health) {
	t.Helper()
	code, body := w.get(url + "/health")
	var h httpapi.Health
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("/health body %q: %v", body, err)
	}
	return code, h
}

func TestAbsentRelayOpensTheBreakerWhichTriesOncePerRecovery(t *testing.T) {
	w := newWorld(t)
	addr := freeAddr(t)
	up := w.startUpstream(echoUpstream())
	const retry, recovery = 100 * time.Millisecond, time.Second
	tn := w.startTunnel("ws://"+addr+"/tunnel", up.URL, func(c *supervisor.Config) {
		c.RetryDelay = retry
		c.BreakerRecovery = recovery
	})
	api := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Status: tn}))
	defer api.Close()
	refused := func() int { return tn.Status().Health.FailureTypes[messages.ConnectionRefused.String()] }

	tn.waitState(t, messages.CircuitBreaker)
	st := tn.Status()
	if refused() != 5 || st.Health.TotalAttempts != 5 || st.Health.ConsecutiveFailures != 5 {
		t.Errorf("breaker open after %d attempts, %d refused, %d consecutive failures; want 5 each",
			st.Health.TotalAttempts, refused(), st.Health.ConsecutiveFailures)
	}
	if cb := st.CircuitBreaker; !cb.Active || cb.State != messages.BreakerOpen || cb.Openings != 1 {
		t.Errorf("breaker %+v, want active, open, opened once", cb)
	}
	if code, h := healthOf(t, w, api.URL); code != http.StatusServiceUnavailable || h.TunnelConnected || h.Status != "degraded" {
		t.Errorf("/health with the breaker open: %d %+v, want 503 degraded", code, h)
	}

	// The relay is still away: the one trial fails and the breaker opens again.
	harness.Eventually(t, patience, "the breaker to open a second time", func() bool {
		return tn.Status().CircuitBreaker.Openings == 2
	})
	if got := refused(); got != 6 {
		t.Errorf("%d connections refused after the first recovery, want 6 (one trial)", got)
	}

	r := w.startRelay(addr, nil)
	w.waitConnected(tn, r)
	st = tn.Status()
	if h := st.Health; h.TotalAttempts != 7 || h.Successes != 1 || refused() != 6 || h.ConsecutiveFailures != 0 {
		t.Errorf("after the relay came back: %d attempts, %d successes, %d refused, %d consecutive failures; want 7, 1, 6, 0",
			h.TotalAttempts, h.Successes, refused(), h.ConsecutiveFailures)
	}
	if cb := st.CircuitBreaker; cb.Active || cb.State != messages.BreakerClosed || cb.Openings != 2 {
		t.Errorf("breaker %+v, want closed after opening twice", cb)
	}
	if code, h := healthOf(t, w, api.URL); code != http.StatusOK || !h.TunnelConnected || h.Status != "healthy" {
		t.Errorf("/health once connected: %d %+v, want 200 healthy", code, h)
	}

	changes := tn.states.All()
	if n := tn.states.Count(messages.CircuitBreaker); n != 2 {
		t.Errorf("%d CIRCUIT_BREAKER states in %v, want 2", n, statesOf(changes))
	}
	afterFailure, afterBreaker := retryGaps(changes)
	if len(afterFailure) != 4 || len(afterBreaker) != 2 {
		t.Fatalf("%d retries and %d trials in %v, want 4 and 2", len(afterFailure), len(afterBreaker), statesOf(changes))
	}
	atLeast(t, "retry", afterFailure, retry)
	atLeast(t, "trial", afterBreaker, recovery)
}

// named answers every request with its name.
func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
}
