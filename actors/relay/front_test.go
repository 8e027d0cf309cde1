package relay_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

func health(t *testing.T, r *relay.Relay) (status string, tunnels []string) {
	t.Helper()
	resp, err := httpClient(t).Get(adminURL(r) + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status  string   `json:"status"`
		Tunnels []string `json:"tunnels"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Status, body.Tunnels
}

func TestHealthListsConnectedTunnels(t *testing.T) {
	r := startRelay(t, nil)
	if status, tunnels := health(t, r); status != "ok" || tunnels == nil || len(tunnels) != 0 {
		t.Fatalf("health before: %q %v (want an empty list, not null)", status, tunnels)
	}
	connect(t, r, keyB, "b", nil)
	a := connect(t, r, keyA, "a", nil)
	if _, tunnels := health(t, r); !slices.Equal(tunnels, []string{"a", "b"}) {
		t.Fatalf("tunnels %v", tunnels)
	}
	a.close()
	deadline := time.Now().Add(wait)
	for {
		_, tunnels := health(t, r)
		if slices.Equal(tunnels, []string{"b"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunnels %v after a left", tunnels)
		}
		runtime.Gosched()
	}
}

func TestMetricsCountSessionsFailuresRequestsAndBytes(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.HoldTimeout = 0 })
	connect(t, r, defaultKey, "", echo)
	bad, _, err := dial(t, r)
	if err != nil {
		t.Fatal(err)
	}
	bad.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "wrong"})
	bad.expectClosed()
	c := httpClient(t)
	for _, path := range []string{"/x", "/t/a/x", "/t/nonsense-name/x"} {
		resp, err := c.Get(baseURL(r) + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := c.Get(adminURL(r) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"tunnel_relay_sessions 1",
		`tunnel_relay_auth_failures_total{reason="invalid_key"} 1`,
		`tunnel_relay_upgrades_total{result="accepted"} 2`,
		"tunnel_relay_unauthenticated_connections 0",
		"tunnel_relay_buffered_bytes 0",
		`tunnel_relay_requests_total{code="200",tunnel="default"} 1`,
		`tunnel_relay_requests_total{code="503",tunnel="a"} 1`,
		`tunnel_relay_requests_total{code="404",tunnel="_other"} 1`,
		`tunnel_relay_tunnel_sessions{tunnel="default"} 1`,
		`tunnel_relay_tunnel_sessions{tunnel="a"} 0`,
		`tunnel_relay_held_requests{tunnel="a"} 0`,
		`tunnel_relay_retries_total{reason="unwritten"} 0`,
		`tunnel_relay_retries_total{reason="idempotent"} 0`,
		`tunnel_relay_request_duration_seconds_count{tunnel="default"} 1`,
		"tunnel_relay_bytes_in_total",
		"tunnel_relay_bytes_out_total",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(string(text), "tunnel_relay_bytes_in_total 0\n") {
		t.Error("no bytes counted in")
	}
}

// Profiles are served on the admin listener with Pprof only, never on the
// public one.
func TestPprofOnlyWhenAskedAndOnlyOnAdmin(t *testing.T) {
	for _, tc := range []struct {
		name         string
		pprof        bool
		admin, front int
	}{
		// The public front routes the path to the tunnel "default", which
		// has no session: 503, not a profile.
		{"off by default", false, http.StatusNotFound, http.StatusServiceUnavailable},
		{"on", true, http.StatusOK, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, func(c *relay.Config) { c.Pprof, c.HoldTimeout = tc.pprof, 0 })
			c := httpClient(t)
			for _, probe := range []struct {
				url  string
				want int
			}{{adminURL(r) + "/debug/pprof/heap?debug=1", tc.admin}, {baseURL(r) + "/debug/pprof/heap?debug=1", tc.front}} {
				resp, err := c.Get(probe.url)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if got := resp.StatusCode; got != probe.want {
					t.Errorf("GET %s: %d, want %d", probe.url, got, probe.want)
				}
			}
		})
	}
}

func TestTLSServesWSS(t *testing.T) {
	certFile, keyFile, pool := harness.SelfSigned(t)
	r := startRelay(t, func(c *relay.Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, HandshakeTimeout: wait}
	conn, _, err := d.Dial("wss://"+r.Addr().String()+"/tunnel", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.WriteMessage(websocket.TextMessage, wire.MustEncode(&wire.Frame{Type: wire.TypeAuth, APIKey: defaultKey}))
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	_, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if f, err := wire.Decode(data); err != nil || f.Type != wire.TypeAuthOK {
		t.Fatalf("got %s, %v", data, err)
	}
}

func TestConfigValidation(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keysFile, []byte("# tunnels\na "+keyA+"\ndefault "+defaultKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*relay.Config)
		err    string
	}{
		{"token only", func(c *relay.Config) { c.AuthToken = defaultKey }, ""},
		{"keys file", func(c *relay.Config) { c.KeysFile = keysFile }, ""},
		{"no key", func(*relay.Config) {}, "no API keys"},
		{"weak key", func(c *relay.Config) { c.AuthToken = "key-d" }, `the key of tunnel "default" is too weak`},
		{"default twice", func(c *relay.Config) { c.KeysFile, c.AuthToken = keysFile, keyB }, `tunnel "default"`},
		{"shared key", func(c *relay.Config) { c.AuthToken, c.Keys = keyB, map[string]string{"x": keyB} }, "share one key"},
		{"missing keys file", func(c *relay.Config) { c.AuthToken, c.KeysFile = keyB, keysFile+".gone" }, "no such file"},
		{"bad name", func(c *relay.Config) { c.Keys = map[string]string{"a/b": keyB} }, "invalid tunnel name"},
		{"cert without key", func(c *relay.Config) { c.AuthToken, c.TLSCertFile = keyB, "cert.pem" }, "go together"},
		{"zero timeout", func(c *relay.Config) { c.AuthToken, c.RequestTimeout = keyB, 0 }, "RequestTimeout"},
		{"zero body timeout", func(c *relay.Config) { c.AuthToken, c.BodyTimeout = keyB, 0 }, "BodyTimeout"},
		{"no pending room", func(c *relay.Config) { c.AuthToken, c.MaxPendingPerAddr = keyB, 0 }, "MaxPendingPerAddr"},
		{"auth read limit over the read limit", func(c *relay.Config) { c.AuthToken, c.AuthReadLimit = keyB, 32<<20 }, "AuthReadLimit"},
		{"PROXY protocol from nobody", func(c *relay.Config) { c.AuthToken, c.ProxyProtocol = keyB, true }, "TrustedProxies"},
		{"huge chunks", func(c *relay.Config) { c.AuthToken, c.ChunkSize = keyB, 1<<20 }, "ChunkSize"},
		{"no session per tunnel", func(c *relay.Config) { c.AuthToken, c.MaxSessionsPerTunnel = keyB, 0 }, "MaxSessionsPerTunnel"},
		{"negative hold timeout", func(c *relay.Config) { c.AuthToken, c.HoldTimeout = keyB, -time.Second }, "HoldTimeout"},
		{"no hold timeout: no holding", func(c *relay.Config) { c.AuthToken, c.HoldTimeout = keyB, 0 }, ""},
		{"no room to hold", func(c *relay.Config) { c.AuthToken, c.MaxHeld = keyB, 0 }, "MaxHeld"},
		{"negative held bytes", func(c *relay.Config) { c.AuthToken, c.MaxHeldBytes = keyB, -1 }, "MaxHeldBytes"},
		{"negative resume timeout", func(c *relay.Config) { c.AuthToken, c.ResumeTimeout = keyB, -time.Second }, "ResumeTimeout"},
		{"no resume timeout: no resume", func(c *relay.Config) { c.AuthToken, c.ResumeTimeout = keyB, 0 }, ""},
	} {
		cfg := relay.DefaultConfig()
		tc.change(&cfg)
		err := cfg.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.err)
		}
		if err != nil && (strings.Contains(err.Error(), keyA) || strings.Contains(err.Error(), keyB) || strings.Contains(err.Error(), "key-d")) {
			t.Errorf("%s: error quotes a key: %v", tc.name, err)
		}
	}
}

// Close ends every supervisor connection with 1001 and leaves no goroutine.
func TestCloseStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t)
	cfg := relay.DefaultConfig()
	cfg.Listen, cfg.AdminListen, cfg.AuthToken = "127.0.0.1:0", "127.0.0.1:0", defaultKey
	r, err := relay.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := connect(t, r, defaultKey, "", echo)
	resp, err := httpClient(t).Get(baseURL(r) + "/before-close")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if code := s.expectClosed(); code != websocket.CloseGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	s.close()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, url := range []string{baseURL(r) + "/x", adminURL(r) + "/health"} {
		if _, err := http.Get(url); err == nil {
			t.Fatalf("relay still answers %s after Close", url)
		}
	}
}
