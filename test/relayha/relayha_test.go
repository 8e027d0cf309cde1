package relayha_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// answerWithName answers every request with the supervisor's name.
func answerWithName(s *rawSupervisor, req *wire.Frame) {
	s.respond(req.MessageID, http.StatusOK, s.name)
}

// Two supervisor processes (two instances) serve one tunnel side by side:
// both are registered, both get requests, neither is closed, and /health
// lists the tunnel once.
func TestTwoSupervisorsServeOneTunnelSideBySide(t *testing.T) {
	r := startRelay(t, nil)
	a := connect(t, r, "a", "instance-a", 0, answerWithName)
	b := connect(t, r, "b", "instance-b", 0, answerWithName)
	c := client(t)
	served := map[string]int{}
	for range 10 {
		status, body := do(t, c, http.MethodGet, publicURL(r)+"/v1/tts", "")
		if status != http.StatusOK {
			t.Fatalf("status %d %q", status, body)
		}
		served[body]++
	}
	if served["a"] == 0 || served["b"] == 0 {
		t.Fatalf("served %v: want both supervisors to get requests", served)
	}
	if !a.isOpen() || !b.isOpen() {
		t.Fatal("a supervisor was closed")
	}
	text := metrics(t, c, r)
	for _, want := range []string{`tunnel_relay_tunnel_sessions{tunnel="default"} 2`, "tunnel_relay_sessions 2"} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	_, body := do(t, c, http.MethodGet, "http://"+r.AdminAddr().String()+"/health", "")
	var health struct{ Tunnels []string }
	if err := json.Unmarshal([]byte(body), &health); err != nil || len(health.Tunnels) != 1 || health.Tunnels[0] != "default" {
		t.Fatalf("health %q (%v), want the tunnel listed once", body, err)
	}
}

// Requests in flight at once go to the supervisor with the fewest: eight
// that no one answers yet split four and four.
func TestConcurrentRequestsSpreadOverTheSupervisors(t *testing.T) {
	r := startRelay(t, nil)
	a := connect(t, r, "a", "instance-a", 0, nil)
	b := connect(t, r, "b", "instance-b", 0, nil)
	c := client(t)
	const n = 8
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for range n {
		wg.Go(func() {
			status, _, err := fetch(c, http.MethodGet, publicURL(r)+"/slow", "")
			if err != nil {
				t.Error(err)
			}
			statuses <- status
		})
	}
	got := map[*rawSupervisor][]string{}
	for range n {
		select {
		case f := <-a.frames:
			got[a] = append(got[a], f.MessageID)
		case f := <-b.frames:
			got[b] = append(got[b], f.MessageID)
		case <-a.closed:
			t.Fatal("a closed")
		case <-b.closed:
			t.Fatal("b closed")
		}
	}
	if len(got[a]) != n/2 || len(got[b]) != n/2 {
		t.Errorf("a got %d, b got %d; want %d each", len(got[a]), len(got[b]), n/2)
	}
	for s, ids := range got {
		for _, id := range ids {
			s.respond(id, http.StatusOK, s.name)
		}
	}
	wg.Wait()
	close(statuses)
	for status := range statuses {
		if status != http.StatusOK {
			t.Errorf("status %d", status)
		}
	}
}

// A supervisor that drops its connection after receiving a request: an
// idempotent request is answered by the other supervisor; a POST, which
// may have been carried out, is 502.
func TestRequestWhoseSupervisorDropsMidRequest(t *testing.T) {
	for _, tc := range []struct {
		method string
		status int
		reason string // of the retry counted
	}{
		{http.MethodGet, http.StatusOK, "idempotent"},
		{http.MethodPut, http.StatusOK, "idempotent"},
		{http.MethodPost, http.StatusBadGateway, ""},
	} {
		t.Run(tc.method, func(t *testing.T) {
			r := startRelay(t, nil)
			var dropped atomic.Pointer[rawSupervisor]
			// The first supervisor to get the request drops dead; the
			// other answers.
			h := func(s *rawSupervisor, req *wire.Frame) {
				if dropped.CompareAndSwap(nil, s) {
					s.drop()
					return
				}
				s.respond(req.MessageID, http.StatusOK, s.name)
			}
			connect(t, r, "a", "instance-a", 0, h)
			connect(t, r, "b", "instance-b", 0, h)
			c := client(t)
			status, body := do(t, c, tc.method, publicURL(r)+"/v1/tts", "inline body")
			if status != tc.status {
				t.Fatalf("status %d %q, want %d", status, body, tc.status)
			}
			if d := dropped.Load(); d == nil || (status == http.StatusOK && body == d.name) {
				t.Fatalf("answered %q; the supervisor that dropped was %v", body, d)
			}
			if tc.reason != "" && !strings.Contains(metrics(t, c, r), `tunnel_relay_retries_total{reason="`+tc.reason+`"} 1`) {
				t.Errorf("no %s retry counted", tc.reason)
			}
			// The survivor serves on.
			if status, body := do(t, c, http.MethodGet, publicURL(r)+"/after", ""); status != http.StatusOK || body == dropped.Load().name {
				t.Fatalf("after the drop: %d %q", status, body)
			}
		})
	}
}

// A request for a tunnel with a key and no supervisor waits for one; a name
// no key opens is 404 at once.
func TestRequestWaitsForASupervisorToConnect(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.HoldTimeout = wait })
	c := client(t)
	if status, body := do(t, c, http.MethodGet, publicURL(r)+"/t/nobody/x", ""); status != http.StatusNotFound {
		t.Fatalf("unknown tunnel: %d %q, want 404", status, body)
	}
	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		status, body, err := fetch(c, http.MethodPost, publicURL(r)+"/v1/tts", `{"text":"hi"}`)
		answered <- answer{status, body, err}
	}()
	eventually(t, "the request is held", func() bool {
		return strings.Contains(metrics(t, c, r), `tunnel_relay_held_requests{tunnel="default"} 1`)
	})
	connect(t, r, "late", "instance-late", 0, answerWithName)
	if a := <-answered; a.err != nil || a.status != http.StatusOK || a.body != "late" {
		t.Fatalf("held request: %d %q (%v), want it served by the supervisor that came", a.status, a.body, a.err)
	}
}

// A newer connection with the same instance and index replaces the older
// (1000); past the tunnel's session limit one more is refused (1013); the
// sessions left serve.
func TestReplacementAndTheTunnelsSessionLimit(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.MaxSessionsPerTunnel = 2 })
	first := connect(t, r, "first", "instance-a", 0, answerWithName)
	connect(t, r, "second", "instance-a", 1, answerWithName)
	for _, instance := range []string{"instance-b", ""} {
		over := dialRaw(t, r, "over", instance, 0, nil)
		if code, reason := over.expectClosed(); code != wire.CloseTryAgainLater || reason != "tunnel at its session limit" {
			t.Fatalf("instance %q past the limit: closed %d %q, want 1013 at the tunnel's limit", instance, code, reason)
		}
	}
	connect(t, r, "again", "instance-a", 0, answerWithName)
	if code, reason := first.expectClosed(); code != wire.CloseNormal || reason != "replaced by a newer session" {
		t.Fatalf("replaced session closed %d %q, want 1000", code, reason)
	}
	c := client(t)
	served := map[string]int{}
	for range 4 {
		status, body := do(t, c, http.MethodGet, publicURL(r)+"/x", "")
		if status != http.StatusOK {
			t.Fatalf("status %d %q", status, body)
		}
		served[body]++
	}
	if served["first"] != 0 || served["second"] == 0 || served["again"] == 0 {
		t.Fatalf("served %v: want the two live sessions only", served)
	}
}
