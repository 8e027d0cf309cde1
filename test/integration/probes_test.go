package integration

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/supervisor/agent"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// probeAnswer is a probe's code and body.
func (w *world) probe(url string) (int, map[string]string) {
	w.t.Helper()
	code, body := w.get(url)
	var p map[string]string
	if err := json.Unmarshal(body, &p); err != nil {
		w.t.Fatalf("%s: body %q is not JSON: %v", url, body, err)
	}
	return code, p
}

// TestRelayProbes: a relay alone (no fleet) is live and ready from its
// start, whether or not a supervisor is connected; once Close begins it is
// no longer ready. /health is as it was.
func TestRelayProbes(t *testing.T) {
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", func(c *relay.Config) { c.HoldTimeout = 0 })
	admin := harness.AdminURL(r)
	if code, p := w.probe(admin + "/livez"); code != http.StatusOK || p["status"] != "ok" {
		t.Errorf("livez: %d %v", code, p)
	}
	if code, p := w.probe(admin + "/readyz"); code != http.StatusOK || p["status"] != "ok" {
		t.Errorf("readyz: %d %v", code, p)
	}
	if code, _ := w.get(admin + "/health"); code != http.StatusOK {
		t.Errorf("health: %d", code)
	}
	// The public listener does not serve them: they are the default
	// tunnel's paths there.
	if code, _ := w.get(publicURL(r, "/livez")); code == http.StatusOK {
		t.Error("the public listener answers /livez itself")
	}
}

// TestSupervisorProbes: the agent's /readyz is 503 while its key opens no
// tunnel, 200 once a reload of the relay's keys lets it authenticate;
// /livez is 200 throughout.
func TestSupervisorProbes(t *testing.T) {
	w := newWorld(t)
	const lateKey = "itest-late-key-2e6a0c4f8b1d3957"
	w.secrets = append(w.secrets, lateKey)
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("default "+testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := harness.StartRelay(t, "", newLogger(w.logs), func(c *relay.Config) { c.KeysFile = keys })
	up := w.startUpstream(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Tunnel.RelayURL = harness.TunnelURL(r)
	cfg.Tunnel.APIKey, cfg.Tunnel.Tunnel = lateKey, "late"
	cfg.Tunnel.Connections = 1
	cfg.Tunnel.AuthRetryDelay = 200 * time.Millisecond
	cfg.Tunnel.BreakerThreshold = 1000
	cfg.Forward, cfg.Listener, cfg.Logger = up.URL, ln, newLogger(w.logs)
	cfg.DrainTimeout = 0
	harness.StartAgent(t, cfg)
	base := "http://" + ln.Addr().String()
	if code, p := w.probe(base + "/readyz"); code != http.StatusServiceUnavailable || p["status"] == "ok" || p["reason"] == "" {
		t.Errorf("readyz before auth: %d %v", code, p)
	}
	if code, p := w.probe(base + "/livez"); code != http.StatusOK || p["status"] != "ok" {
		t.Errorf("livez before auth: %d %v", code, p)
	}
	if err := os.WriteFile(keys, []byte("default "+testKey+"\nlate "+lateKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, patience, "readyz 200 after auth", func() bool {
		code, _ := w.probe(base + "/readyz")
		return code == http.StatusOK
	})
	if code, _ := w.probe(base + "/livez"); code != http.StatusOK {
		t.Errorf("livez after auth: %d", code)
	}
}
