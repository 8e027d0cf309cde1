package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// errorOf is the "error" of a JSON error body.
func errorOf(t *testing.T, body []byte) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	return e.Error
}

func TestRequestWithNoTunnelIs503(t *testing.T) {
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", nil)
	code, body := w.get(publicURL(r, "/v1/tts"))
	if code != http.StatusServiceUnavailable || !strings.Contains(errorOf(t, body), "default") {
		t.Errorf("got %d %q, want 503 naming the tunnel", code, body)
	}
}

func TestUpstreamDownIs502(t *testing.T) {
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", nil)
	tn := w.startTunnel(harness.TunnelURL(r), "http://"+freeAddr(t), nil)
	w.waitConnected(tn, r)
	code, body := w.get(publicURL(r, "/v1/tts"))
	if code != http.StatusBadGateway || !strings.HasPrefix(errorOf(t, body), "upstream: ") {
		t.Errorf("got %d %q, want 502 blaming the upstream", code, body)
	}
	if st := tn.Status(); !st.Connected || st.Health.Drops != 0 {
		t.Errorf("after the upstream failed: state %s, %d drops; the tunnel should not suffer", st.State, st.Health.Drops)
	}
}

func TestUpstreamSlowerThanTheRequestTimeoutIs504AndCancelled(t *testing.T) {
	arrived := make(chan struct{})
	cancelled := make(chan struct{})
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(patience):
		}
	})
	w, r, tn := connect(t, upstream, func(c *relay.Config) { c.RequestTimeout = 300 * time.Millisecond }, nil)

	code, body := w.get(publicURL(r, "/v1/tts"))
	if code != http.StatusGatewayTimeout {
		t.Errorf("got %d %q, want 504", code, body)
	}
	select {
	case <-arrived:
	default:
		t.Fatal("the request never reached the upstream")
	}
	select {
	case <-cancelled:
	case <-time.After(patience):
		t.Fatal("the upstream request was not cancelled after the 504")
	}
	if st := tn.Status(); !st.Connected || st.Health.Drops != 0 {
		t.Errorf("after the timeout: state %s, %d drops; the tunnel should not suffer", st.State, st.Health.Drops)
	}
}
