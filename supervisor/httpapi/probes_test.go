package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/enhanced-tunnel/tunnel/messages"
)

// pingStatus is a fakeStatus whose actors answer, or not.
type pingStatus struct {
	fakeStatus
	err error
}

func (p *pingStatus) Ping(context.Context) error { return p.err }

func probe(t *testing.T, url string) (int, Probe) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var p Probe
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("%s: body %q: %v", url, body, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", url, ct)
	}
	return resp.StatusCode, p
}

// TestReadyzFollowsAuthentication: 503 before a connection authenticates,
// 200 once one has, 503 again when it is lost.
func TestReadyzFollowsAuthentication(t *testing.T) {
	src := &pingStatus{}
	src.s = messages.Status{State: messages.Connecting, Tunnel: "default"}
	srv := serve(t, Config{Status: src})
	if code, p := probe(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || p.Status != "unavailable" || p.Reason == "" {
		t.Errorf("before auth: %d %+v", code, p)
	}
	src.mu.Lock()
	src.s = connected()
	src.mu.Unlock()
	if code, p := probe(t, srv.URL+"/readyz"); code != http.StatusOK || p != (Probe{Status: "ok"}) {
		t.Errorf("authenticated: %d %+v", code, p)
	}
	src.mu.Lock()
	src.s = messages.Status{State: messages.Disconnected}
	src.mu.Unlock()
	if code, _ := probe(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("connection lost: %d", code)
	}
}

// TestLivezDoesNotFollowTheTunnel: a supervisor with no connection is
// alive while its actors answer; it is not once they do not.
func TestLivezDoesNotFollowTheTunnel(t *testing.T) {
	src := &pingStatus{}
	src.s = messages.Status{State: messages.CircuitBreaker}
	srv := serve(t, Config{Status: src})
	if code, p := probe(t, srv.URL+"/livez"); code != http.StatusOK || p != (Probe{Status: "ok"}) {
		t.Errorf("no connection, actors answer: %d %+v", code, p)
	}
	src.err = errors.New("timeout")
	if code, p := probe(t, srv.URL+"/livez"); code != http.StatusServiceUnavailable || p.Reason == "" {
		t.Errorf("actors do not answer: %d %+v", code, p)
	}
	// A status source that cannot be pinged: alive while HTTP is served.
	plain := serve(t, Config{Status: &fakeStatus{}})
	if code, _ := probe(t, plain.URL+"/livez"); code != http.StatusOK {
		t.Errorf("no Pinger: %d", code)
	}
}
