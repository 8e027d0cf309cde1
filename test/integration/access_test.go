package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// The secrets of the access tests: the keys of their tunnels, the bearer
// token and the basic password, which no log line, metric or answer may
// show.
const (
	guardedKey    = "itest-guarded-key-4f1c9e7a2b5d8063"
	walledKey     = "itest-walled-key-8e2d6b0f4a1c9357"
	limitedKey    = "itest-limited-key-1a7c3e9f5b2d8046"
	studioKey     = "itest-studio-key-6d0b8f2a4e1c7935"
	accessBearer  = "itest-bearer-token-9c1e5a7f3b2d4068"
	accessUser    = "alice"
	accessPass    = "itest basic password 3e8a1f5c"
	accessDomain  = "relay.example"
	accessDenied  = "tunnel_relay_access_denied_total"
	seenAuthorize = "X-Seen-Authorization"
)

// accessUpstream answers every request with who it is and what it saw:
// X-Upstream, X-Seen-Path, X-Seen-Query, and in X-Seen-Authorization how
// many Authorization headers reached it.
func accessUpstream(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Upstream", name)
		h.Set("X-Seen-Path", r.URL.EscapedPath())
		h.Set("X-Seen-Query", r.URL.RawQuery)
		h.Set(seenAuthorize, strconv.Itoa(len(r.Header.Values("Authorization"))))
		w.WriteHeader(http.StatusOK)
	})
}

// startAccessRelay runs a relay with host routing on accessDomain and a
// keys file of four tunnels: guarded (bearer, basic, loopback only),
// walled (192.0.2.0/24 only), limited (1/m, bursts of 2) and studio (no
// rule), each with a supervisor and an upstream of its own. Loopback is a
// trusted proxy, so that X-Forwarded-For can stand for other clients.
func startAccessRelay(t *testing.T) (*world, *relay.Relay) {
	t.Helper()
	w := newWorld(t)
	hash, err := bcrypt.GenerateFromPassword([]byte(accessPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	w.secrets = append(w.secrets, accessBearer, accessPass, string(hash), basicCredentials(accessUser, accessPass))
	keysFile := filepath.Join(t.TempDir(), "keys")
	text := fmt.Sprintf(`# the tunnels of the access tests
guarded %s bearer=%s basic=%s:%s allow=127.0.0.0/8,::1   # any one credential
walled  %s allow=192.0.2.0/24
limited %s rate=1/m burst=2
studio  %s
`, guardedKey, accessBearer, accessUser, hash, walledKey, limitedKey, studioKey)
	if err := os.WriteFile(keysFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	r := w.startRelay("127.0.0.1:0", func(c *relay.Config) {
		c.KeysFile = keysFile
		c.Domain = accessDomain
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	names := []string{"guarded", "walled", "limited", "studio"}
	for i, key := range []string{guardedKey, walledKey, limitedKey, studioKey} {
		up := w.startUpstream(accessUpstream(names[i]))
		w.startTunnel(harness.TunnelURL(r), up.URL, func(c *supervisor.Config) { c.APIKey, c.Tunnel = key, names[i] })
	}
	harness.Eventually(t, patience, "the relay to list the four tunnels", func() bool {
		var h struct{ Tunnels []string }
		code, body := w.get(harness.AdminURL(r) + "/health")
		if code != http.StatusOK || json.Unmarshal(body, &h) != nil {
			return false
		}
		for _, name := range names {
			if !slices.Contains(h.Tunnels, name) {
				return false
			}
		}
		return true
	})
	return w, r
}

func basicCredentials(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// accessAnswer is what a public request got.
type accessAnswer struct {
	status int
	header http.Header
	error  string // the JSON body's "error", for a refusal
}

// send sends a public request for path to r, with host as its Host (the
// relay's address when empty) and header.
func (w *world) send(r *relay.Relay, host, path string, header http.Header) accessAnswer {
	w.t.Helper()
	req, err := http.NewRequest(http.MethodGet, publicURL(r, path), nil)
	if err != nil {
		w.t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, body, err := w.do(req)
	if err != nil {
		w.t.Fatalf("GET %s (Host %s): %v", path, host, err)
	}
	a := accessAnswer{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Error == "" {
			w.t.Errorf("GET %s: %d with body %q, want a JSON error", path, resp.StatusCode, body)
		}
		a.error = e.Error
	}
	return a
}

// TestPublicAccessControl sends public requests through a real relay and
// real supervisors to tunnels with access rules: the refusals (401 with
// WWW-Authenticate, 403, 429 with Retry-After, all JSON), the credentials
// that pass and never reach the upstream, the metric, and the logs free
// of every secret.
func TestPublicAccessControl(t *testing.T) {
	w, r := startAccessRelay(t)
	bothChallenges := []string{`Bearer realm="guarded"`, `Basic realm="guarded"`}

	t.Run("no credentials: 401 with both challenges", func(t *testing.T) {
		a := w.send(r, "", "/t/guarded/x", nil)
		if a.status != http.StatusUnauthorized || !slices.Equal(a.header.Values("WWW-Authenticate"), bothChallenges) ||
			a.error != `tunnel "guarded" needs credentials` || a.header.Get(seenAuthorize) != "" {
			t.Fatalf("%d %q %q", a.status, a.header.Values("WWW-Authenticate"), a.error)
		}
	})
	t.Run("wrong credentials: 401", func(t *testing.T) {
		for _, authz := range []string{"Bearer " + accessBearer + "0", basicCredentials(accessUser, accessPass+"0"), basicCredentials("bob", accessPass)} {
			a := w.send(r, "", "/t/guarded/x", http.Header{"Authorization": {authz}})
			if a.status != http.StatusUnauthorized || !slices.Equal(a.header.Values("WWW-Authenticate"), bothChallenges) ||
				a.error != `wrong credentials for tunnel "guarded"` {
				t.Fatalf("%d %q %q", a.status, a.header.Values("WWW-Authenticate"), a.error)
			}
		}
	})
	t.Run("good bearer: through, without its Authorization", func(t *testing.T) {
		a := w.send(r, "", "/t/guarded/v1/tts?voice=en", http.Header{"Authorization": {"Bearer " + accessBearer}})
		if a.status != http.StatusOK || a.header.Get("X-Upstream") != "guarded" || a.header.Get("X-Seen-Path") != "/v1/tts" ||
			a.header.Get("X-Seen-Query") != "voice=en" || a.header.Get(seenAuthorize) != "0" {
			t.Fatalf("%d %v", a.status, a.header)
		}
	})
	t.Run("good basic user: through, without its Authorization, twice", func(t *testing.T) {
		for range 2 { // the second verified lately, without bcrypt
			a := w.send(r, "", "/t/guarded/x", http.Header{"Authorization": {basicCredentials(accessUser, accessPass)}})
			if a.status != http.StatusOK || a.header.Get("X-Upstream") != "guarded" || a.header.Get(seenAuthorize) != "0" {
				t.Fatalf("%d %v", a.status, a.header)
			}
		}
	})
	t.Run("a tunnel without credentials passes the client's Authorization on", func(t *testing.T) {
		a := w.send(r, "", "/t/studio/x", http.Header{"Authorization": {"Bearer the upstream's own"}})
		if a.status != http.StatusOK || a.header.Get("X-Upstream") != "studio" || a.header.Get(seenAuthorize) != "1" {
			t.Fatalf("%d %v", a.status, a.header)
		}
	})
	t.Run("wrong address: 403", func(t *testing.T) {
		for _, xff := range []string{"", "198.51.100.7"} {
			var h http.Header
			if xff != "" {
				h = http.Header{"X-Forwarded-For": {xff}}
			}
			a := w.send(r, "", "/t/walled/x", h)
			if a.status != http.StatusForbidden || a.error != `tunnel "walled" is not open to this address` || a.header.Get("WWW-Authenticate") != "" {
				t.Fatalf("X-Forwarded-For %q: %d %q", xff, a.status, a.error)
			}
		}
	})
	t.Run("allowed address, through a trusted proxy", func(t *testing.T) {
		a := w.send(r, "", "/t/walled/x", http.Header{"X-Forwarded-For": {"192.0.2.9"}})
		if a.status != http.StatusOK || a.header.Get("X-Upstream") != "walled" {
			t.Fatalf("%d %v", a.status, a.header)
		}
	})
	t.Run("a burst over the rate: 429 with Retry-After", func(t *testing.T) {
		for i := range 2 {
			if a := w.send(r, "", "/t/limited/x", nil); a.status != http.StatusOK || a.header.Get("X-Upstream") != "limited" {
				t.Fatalf("request %d of the burst: %d", i+1, a.status)
			}
		}
		a := w.send(r, "", "/t/limited/x", nil)
		retry, err := strconv.Atoi(a.header.Get("Retry-After"))
		if a.status != http.StatusTooManyRequests || err != nil || retry < 1 || retry > 60 ||
			a.error != `tunnel "limited" is over its request rate; retry later` {
			t.Fatalf("%d, Retry-After %q, %q; want 429 and 1 to 60 s", a.status, a.header.Get("Retry-After"), a.error)
		}
	})
	t.Run("host routing: the tunnel's hostname, path untouched", func(t *testing.T) {
		for _, c := range []struct{ host, path, wantPath, wantQuery string }{
			{"studio." + accessDomain, "/echo/a%20b?q=1", "/echo/a%20b", "q=1"},
			{"Studio.RELAY.example:8443", "/", "/", ""},
			// Host routing comes before the /t/ prefix, which is then the
			// tunnel's own path; limited's rate is not touched.
			{"studio." + accessDomain, "/t/limited/x", "/t/limited/x", ""},
			// The bare domain routes by path, as any other host.
			{accessDomain, "/t/studio/echo", "/echo", ""},
		} {
			a := w.send(r, c.host, c.path, nil)
			if a.status != http.StatusOK || a.header.Get("X-Upstream") != "studio" ||
				a.header.Get("X-Seen-Path") != c.wantPath || a.header.Get("X-Seen-Query") != c.wantQuery {
				t.Errorf("Host %s, %s: %d from %q, path %q, query %q; want studio's %q %q", c.host, c.path, a.status,
					a.header.Get("X-Upstream"), a.header.Get("X-Seen-Path"), a.header.Get("X-Seen-Query"), c.wantPath, c.wantQuery)
			}
		}
	})
	t.Run("host routing keeps the tunnel's access rules", func(t *testing.T) {
		host := "guarded." + accessDomain
		if a := w.send(r, host, "/x", nil); a.status != http.StatusUnauthorized || !slices.Equal(a.header.Values("WWW-Authenticate"), bothChallenges) {
			t.Fatalf("no credentials: %d", a.status)
		}
		a := w.send(r, host, "/t/x/y", http.Header{"Authorization": {"Bearer " + accessBearer}})
		if a.status != http.StatusOK || a.header.Get("X-Upstream") != "guarded" || a.header.Get("X-Seen-Path") != "/t/x/y" || a.header.Get(seenAuthorize) != "0" {
			t.Fatalf("bearer: %d %v", a.status, a.header)
		}
	})
	t.Run("unknown name under the domain: 404", func(t *testing.T) {
		a := w.send(r, "nosuch."+accessDomain, "/t/studio/x", nil)
		if a.status != http.StatusNotFound || a.error != `unknown tunnel "nosuch"` {
			t.Fatalf("%d %q", a.status, a.error)
		}
	})
	t.Run("the metric", func(t *testing.T) {
		code, body := w.get(harness.AdminURL(r) + "/metrics")
		if code != http.StatusOK {
			t.Fatalf("metrics: %d", code)
		}
		for _, want := range []string{
			accessDenied + `{reason="credentials",tunnel="guarded"} 5`,
			accessDenied + `{reason="address",tunnel="guarded"} 0`,
			accessDenied + `{reason="address",tunnel="walled"} 2`,
			accessDenied + `{reason="rate",tunnel="limited"} 1`,
		} {
			if !strings.Contains(string(body), want+"\n") {
				t.Errorf("metrics lack %s", want)
			}
		}
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, accessDenied+"{") && strings.Contains(line, `tunnel="studio"`) {
				t.Errorf("a tunnel without rules has a refusal series: %s", line)
			}
		}
		for _, secret := range w.secrets {
			if strings.Contains(string(body), secret) {
				t.Error("a secret appears in the metrics")
			}
		}
	})

	// The world's clean-up looks for every secret in every log line; that
	// proves something only if the refusals were logged at all.
	if w.logs.Count("access rules") == 0 {
		t.Fatal("no refusal in the logs: the search for secrets in them would prove nothing")
	}
	for _, secret := range w.secrets {
		if n := w.logs.Count(secret); n > 0 {
			t.Errorf("a secret appears in %d log lines", n)
		}
	}
}
