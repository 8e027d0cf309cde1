package hardening_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// A relay at its session limit closes a new supervisor with 1013, which the
// supervisor counts as a NETWORK_ERROR and retries; once a place is free it
// gets in.
func TestSessionLimitIsANetworkErrorForTheSupervisor(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.MaxSessions = 1 })
	first := startTunnel(t, harness.TunnelURL(r), defaultKey, "", nil)
	first.await(messages.Authenticated)

	second := startTunnel(t, harness.TunnelURL(r), keyB, "", func(c *supervisor.Config) {
		fastRetry(c)
		c.Tunnel = "b"
	})
	st := second.failure()
	if st.Health.LastFailureType != messages.NetworkError.String() || !strings.Contains(st.Health.LastError, "1013") {
		t.Fatalf("failure %s: %q; want NETWORK_ERROR with close 1013", st.Health.LastFailureType, st.Health.LastError)
	}

	if err := first.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	second.await(messages.Authenticated)
}

// held is an upstream that counts the requests reaching it and holds those
// for /hold until released.
type held struct {
	arrived chan struct{}
	release chan struct{}
	count   atomic.Int64
}

func newHeld() *held {
	return &held{arrived: make(chan struct{}, 16), release: make(chan struct{})}
}

func (h *held) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h.count.Add(1)
	h.arrived <- struct{}{}
	if req.URL.Path == "/hold" {
		select {
		case <-h.release:
		case <-req.Context().Done():
			return
		}
	}
	_, _ = io.Copy(io.Discard, req.Body)
	_, _ = io.WriteString(w, "done")
}

// next waits for the next request to reach the upstream.
func (h *held) next(t *testing.T) {
	t.Helper()
	select {
	case <-h.arrived:
	case <-time.After(wait):
		t.Fatal("no request reached the upstream")
	}
}

// Beyond MaxConcurrent requests in flight, the relay answers 503 itself:
// the supervisor never sees the excess, and its tunnel is untouched.
func TestConcurrencyLimitIs503AndTheSupervisorNeverSeesTheExcess(t *testing.T) {
	h := newHeld()
	r := startRelay(t, func(c *relay.Config) { c.MaxConcurrent = 2 })
	tu := startTunnel(t, harness.TunnelURL(r), defaultKey, upstream(t, h.ServeHTTP), nil)
	tu.await(messages.Authenticated)
	c := httpClient(t)

	results := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := c.Get(publicURL(r) + "/hold")
			if err != nil {
				results <- 0
				return
			}
			resp.Body.Close()
			results <- resp.StatusCode
		}()
		h.next(t)
	}
	status, body := get(t, c, publicURL(r)+"/third")
	if status != http.StatusServiceUnavailable || !strings.Contains(errorText(t, body), "too many requests") {
		t.Fatalf("third request: %d %q, want 503 too many requests", status, body)
	}
	if n := h.count.Load(); n != 2 {
		t.Fatalf("%d requests reached the upstream, want 2", n)
	}
	close(h.release)
	for range 2 {
		if status := <-results; status != http.StatusOK {
			t.Fatalf("held request: %d", status)
		}
	}
	if status, _ := get(t, c, publicURL(r)+"/after"); status != http.StatusOK {
		t.Fatalf("after the held requests: %d", status)
	}
	if st := tu.Status(); st.State != messages.Authenticated || len(st.Health.FailureTypes) != 0 {
		t.Fatalf("tunnel %s, failures %v", st.State, st.Health.FailureTypes)
	}
}

// A body or header over the relay's limits is refused before anything goes
// through the tunnel.
func TestBodyAndHeaderLimitsAreEnforcedBeforeTheTunnel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		request func(url string) *http.Request
		status  int
	}{
		{"declared body over the limit", func(url string) *http.Request {
			req, _ := http.NewRequest(http.MethodPost, url+"/up", strings.NewReader(strings.Repeat("x", 2000)))
			return req
		}, http.StatusRequestEntityTooLarge},
		{"header over the limit", func(url string) *http.Request {
			req, _ := http.NewRequest(http.MethodGet, url+"/up", nil)
			req.Header.Set("X-Pad", strings.Repeat("h", 16<<10))
			return req
		}, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHeld()
			r := startRelay(t, func(c *relay.Config) { c.MaxBody, c.MaxHeaderBytes = 1000, 1024 })
			tu := startTunnel(t, harness.TunnelURL(r), defaultKey, upstream(t, h.ServeHTTP), nil)
			tu.await(messages.Authenticated)
			c := httpClient(t)

			resp, err := c.Do(tc.request(publicURL(r)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if status, _ := get(t, c, publicURL(r)+"/after"); status != http.StatusOK {
				t.Fatalf("next request: %d", status)
			}
			if n := h.count.Load(); n != 1 {
				t.Fatalf("%d requests reached the upstream, want only the one after", n)
			}
			if st := tu.Status(); st.State != messages.Authenticated || len(st.Health.FailureTypes) != 0 {
				t.Fatalf("tunnel %s, failures %v", st.State, st.Health.FailureTypes)
			}
		})
	}
}

// A body of unknown length that turns out too big while it streams gets
// the public client a 413, and the upstream request already under way is
// cut off; the tunnel stays up.
func TestStreamedBodyOverTheLimitCutsTheUpstreamRequestOff(t *testing.T) {
	arrived := make(chan struct{})
	bodyErr := make(chan error, 1)
	up := upstream(t, func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/up" {
			hello(w, req)
			return
		}
		close(arrived)
		_, err := io.Copy(io.Discard, req.Body)
		bodyErr <- err
	})
	r := startRelay(t, func(c *relay.Config) { c.MaxBody, c.InlineLimit = 1000, 100 })
	tu := startTunnel(t, harness.TunnelURL(r), defaultKey, up, nil)
	tu.await(messages.Authenticated)
	c := httpClient(t)

	// The body goes out in two parts: 900 bytes, which the upstream starts
	// to receive, then 200 more, which take it over the limit.
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		if _, err := pw.Write([]byte(strings.Repeat("x", 900))); err != nil {
			return
		}
		select {
		case <-arrived:
		case <-time.After(wait):
		}
		_, _ = pw.Write([]byte(strings.Repeat("y", 200)))
		_ = pw.Close()
	}()
	resp, err := c.Post(publicURL(r)+"/up", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	select {
	case err := <-bodyErr:
		if err == nil {
			t.Fatal("the upstream read the whole body of a request refused 413")
		}
	case <-time.After(wait):
		t.Fatal("the upstream request was not cut off")
	}
	if status, body := get(t, c, publicURL(r)+"/after"); status != http.StatusOK || body != "hello" {
		t.Fatalf("next request: %d %q", status, body)
	}
	if st := tu.Status(); st.State != messages.Authenticated || len(st.Health.FailureTypes) != 0 {
		t.Fatalf("tunnel %s, failures %v", st.State, st.Health.FailureTypes)
	}
}
