package relay

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
)

// TestInternalRouteHost proves host routing and its place in the routing
// order: NAME.{domain} first (any case, any port, a trailing dot; the path
// untouched but normalised, the query kept), then /t/{name}/, then the
// default tunnel; the bare domain and other hosts route by path; a name
// no tunnel has is returned as it is, for the 404.
func TestInternalRouteHost(t *testing.T) {
	tunnels := map[string]string{"default": "", "studio": "", "Caps": "", "Dup": "", "dup": "", "a.b": ""}
	hosts := newHostRoutes("Relay.Example.", tunnels)
	tests := []struct {
		name, host, target   string
		wantTunnel, wantPath string
	}{
		{"tunnel host", "studio.relay.example", "/v1/tts?voice=en", "studio", "/v1/tts?voice=en"},
		{"any case, a port", "STUDIO.Relay.Example:8443", "/x", "studio", "/x"},
		{"trailing dot", "studio.relay.example.", "/x", "studio", "/x"},
		{"host beats the /t/ prefix", "studio.relay.example", "/t/other/x", "studio", "/t/other/x"},
		{"path normalised under a host", "studio.relay.example", "/a/%2e%2e/b/./c", "studio", "/b/c"},
		{"unknown name", "nosuch.relay.example", "/x", "nosuch", "/x"},
		{"unknown name, in lower case", "NoSuch.relay.example", "/x", "nosuch", "/x"},
		{"a name with upper case", "caps.relay.example", "/x", "Caps", "/x"},
		{"names differing in case: the lower-case one", "DUP.relay.example", "/x", "dup", "/x"},
		{"a dotted name", "a.b.relay.example", "/x", "a.b", "/x"},
		{"bare domain, /t/", "relay.example", "/t/studio/x", "studio", "/x"},
		{"bare domain, any path", "relay.example:80", "/x", "default", "/x"},
		{"another host, /t/", "other.example", "/t/studio/x", "studio", "/x"},
		{"another host", "studio.relay.example.evil.example", "/x", "default", "/x"},
		{"a host ending like the domain", "xrelay.example", "/x", "default", "/x"},
		{"an empty name", ".relay.example", "/x", "default", "/x"},
		{"an address", "127.0.0.1:8080", "/t/studio/x", "studio", "/x"},
		{"an IPv6 literal", "[::1]:8080", "/x", "default", "/x"},
		{"an IPv6 literal without port", "[::1]", "/x", "default", "/x"},
		{"no host", "", "/x", "default", "/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tt.target, nil)
			req.Host = tt.host
			tunnel, path, ok := routeHost(req, hosts)
			if !ok || tunnel != tt.wantTunnel || path != tt.wantPath {
				t.Errorf("routeHost(%q, %q) = %q, %q, %v; want %q, %q", tt.host, tt.target, tunnel, path, ok, tt.wantTunnel, tt.wantPath)
			}
			// Without a domain, every host routes by path, as route does.
			wantTunnel, wantPath, _ := route(req)
			if tunnel, path, _ := routeHost(req, newHostRoutes("", tunnels)); tunnel != wantTunnel || path != wantPath {
				t.Errorf("without a domain: %q, %q; want %q, %q", tunnel, path, wantTunnel, wantPath)
			}
		})
	}
}

func TestInternalValidDomain(t *testing.T) {
	valid := []string{"relay.example", "Relay.Example.", "localhost", "a-b.c0.example", "xn--bcher-kva.example",
		strings.Repeat("a", 63) + ".example"}
	invalid := []string{"", ".", "relay..example", ".relay.example", "-relay.example", "relay-.example", "relay_x.example",
		"relay.example:8080", "*.relay.example", "192.0.2.1", "[::1]", "relä.example",
		strings.Repeat("a", 64) + ".example", strings.Repeat("abcdefghi.", 26) + "example"}
	for _, d := range valid {
		if !validDomain(d) {
			t.Errorf("validDomain(%q) = false, want true", d)
		}
	}
	for _, d := range invalid {
		if validDomain(d) {
			t.Errorf("validDomain(%q) = true, want false", d)
		}
	}
}

// Secrets of the access tests; no answer, log line or metric may hold one.
const (
	testBearer   = "bearer-dGhlIHF1aWNrIGJyb3du"
	testPassword = "pa55:word with spaces"
)

// fakeClock is a clock moved by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// newTestAccess is the access of the keys file text, on clock, with a
// denied counter of its own.
func newTestAccess(t *testing.T, text string, clock *fakeClock) *access {
	t.Helper()
	tunnels, err := auth.ParseTunnels(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	denied := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_access_denied_total"}, []string{"tunnel", "reason"})
	return newAccess(tunnels, clock.now, denied)
}

// deniedCounts is the denied counter by "tunnel/reason", every series it
// has, zeros included.
func deniedCounts(t *testing.T, a *access) map[string]int {
	t.Helper()
	out := map[string]int{}
	ch := make(chan prometheus.Metric, 64)
	go func() {
		a.denied.Collect(ch)
		close(ch)
	}()
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		for _, l := range d.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		out[labels["tunnel"]+"/"+labels["reason"]] = int(d.GetCounter().GetValue())
	}
	return out
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// accessFile is a keys file with a tunnel for each rule, and one with all.
func accessFile(t *testing.T) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`open    key-open-dGhlIHF1aWNrIGJyb3du
walled  key-walled-dGhlIHF1aWNrIGJyb3du allow=10.0.0.0/8 allow=2001:db8::/32
bearer  key-bearer-dGhlIHF1aWNrIGJyb3du bearer=%[1]s
basic   key-basic-dGhlIHF1aWNrIGJyb3du basic=alice:%[2]s
both    key-both-dGhlIHF1aWNrIGJyb3du bearer=%[1]s basic=alice:%[2]s
limited key-limited-dGhlIHF1aWNrIGJyb3du rate=1/s burst=2
slow    key-slow-dGhlIHF1aWNrIGJyb3du rate=6/m
all     key-all-dGhlIHF1aWNrIGJyb3du allow=10.0.0.0/8 bearer=%[1]s rate=1/m burst=1
`, testBearer, h)
}

// TestInternalAccessDecisions proves the decisions of check, step by step
// on one clock: which rule refuses, with what answer, in which order
// (address, credentials, rate), what is counted, and when the credentials
// are to be stripped.
func TestInternalAccessDecisions(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	a := newTestAccess(t, accessFile(t), clock)
	inside, outside := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.1")
	good, wrong := "Bearer "+testBearer, "Bearer "+testBearer+"x"
	bearerOnly := []string{`Bearer realm="bearer"`}
	steps := []struct {
		name       string
		advance    time.Duration
		tunnel     string
		client     netip.Addr
		authz      string
		status     int // 0: admitted
		reason     string
		text       string
		challenge  []string
		retryAfter int
		strip      bool
	}{
		{name: "a tunnel without rules", tunnel: "open", client: outside, authz: good},
		{name: "a name without rules or tunnel", tunnel: "nosuch", client: outside},
		{name: "address inside", tunnel: "walled", client: inside},
		{name: "IPv6 inside", tunnel: "walled", client: netip.MustParseAddr("2001:db8::7")},
		{name: "address outside", tunnel: "walled", client: outside, status: 403, reason: "address", text: `tunnel "walled" is not open to this address`},
		{name: "not on IP", tunnel: "walled", client: netip.Addr{}, status: 403, reason: "address"},
		{name: "no credentials", tunnel: "bearer", client: outside, status: 401, reason: "credentials", text: `tunnel "bearer" needs credentials`, challenge: bearerOnly},
		{name: "good bearer", tunnel: "bearer", client: outside, authz: good, strip: true},
		{name: "bearer scheme in any case, spaces around", tunnel: "bearer", client: outside, authz: "  bEaReR   " + testBearer + " ", strip: true},
		{name: "wrong bearer", tunnel: "bearer", client: outside, authz: wrong, status: 401, reason: "credentials", text: `wrong credentials for tunnel "bearer"`, challenge: bearerOnly},
		{name: "bearer token as basic", tunnel: "bearer", client: outside, authz: basicAuth("alice", testBearer), status: 401, reason: "credentials"},
		{name: "scheme only", tunnel: "bearer", client: outside, authz: "Bearer", status: 401, reason: "credentials"},
		{name: "good basic", tunnel: "basic", client: outside, authz: basicAuth("alice", testPassword), strip: true},
		{name: "good basic again, verified lately", tunnel: "basic", client: outside, authz: basicAuth("alice", testPassword), strip: true},
		{name: "basic, wrong password", tunnel: "basic", client: outside, authz: basicAuth("alice", testPassword+"!"), status: 401, reason: "credentials",
			challenge: []string{`Basic realm="basic"`}},
		{name: "basic, unknown user", tunnel: "basic", client: outside, authz: basicAuth("bob", testPassword), status: 401, reason: "credentials"},
		{name: "basic, not base64", tunnel: "basic", client: outside, authz: "Basic !!!", status: 401, reason: "credentials"},
		{name: "basic, no colon", tunnel: "basic", client: outside, authz: "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), status: 401, reason: "credentials"},
		{name: "bearer to a basic-only tunnel", tunnel: "basic", client: outside, authz: good, status: 401, reason: "credentials"},
		{name: "either scheme: none", tunnel: "both", client: outside, status: 401, reason: "credentials",
			challenge: []string{`Bearer realm="both"`, `Basic realm="both"`}},
		{name: "either scheme: bearer", tunnel: "both", client: outside, authz: good, strip: true},
		{name: "either scheme: basic", tunnel: "both", client: outside, authz: basicAuth("alice", testPassword), strip: true},
		{name: "burst 1 of 2", tunnel: "limited", client: outside},
		{name: "burst 2 of 2", tunnel: "limited", client: outside},
		{name: "over the rate", tunnel: "limited", client: outside, status: 429, reason: "rate", text: `tunnel "limited" is over its request rate; retry later`, retryAfter: 1},
		{name: "still over, a refusal takes no token", advance: 500 * time.Millisecond, tunnel: "limited", client: outside, status: 429, reason: "rate", retryAfter: 1},
		{name: "a token back", advance: 500 * time.Millisecond, tunnel: "limited", client: outside},
		{name: "default burst: 1", tunnel: "slow", client: outside},
		{name: "a token every 10 s", tunnel: "slow", client: outside, status: 429, reason: "rate", retryAfter: 10},
		{name: "rounded up", advance: 8500 * time.Millisecond, tunnel: "slow", client: outside, status: 429, reason: "rate", retryAfter: 2},
		{name: "10 s later", advance: 1600 * time.Millisecond, tunnel: "slow", client: outside},
		{name: "all: the address first", tunnel: "all", client: outside, authz: good, status: 403, reason: "address"},
		{name: "all: then the credentials", tunnel: "all", client: inside, authz: wrong, status: 401, reason: "credentials"},
		{name: "all: admitted", tunnel: "all", client: inside, authz: good, strip: true},
		{name: "all: refused credentials take no token", tunnel: "all", client: inside, status: 401, reason: "credentials"},
		{name: "all: then the rate", tunnel: "all", client: inside, authz: good, status: 429, reason: "rate", retryAfter: 60},
	}
	for _, s := range steps {
		clock.advance(s.advance)
		d, strip, err := a.check(context.Background(), s.tunnel, s.client, s.authz)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.status == 0 {
			if d != nil || strip != s.strip {
				t.Errorf("%s: refused %+v, strip %v; want admitted, strip %v", s.name, d, strip, s.strip)
			}
			continue
		}
		switch {
		case d == nil:
			t.Errorf("%s: admitted, want %d", s.name, s.status)
		case d.status != s.status || d.reason != s.reason || strip:
			t.Errorf("%s: %d %s, strip %v; want %d %s", s.name, d.status, d.reason, strip, s.status, s.reason)
		case s.text != "" && d.text != s.text:
			t.Errorf("%s: text %q, want %q", s.name, d.text, s.text)
		case s.challenge != nil && !slices.Equal(d.challenge, s.challenge):
			t.Errorf("%s: challenge %q, want %q", s.name, d.challenge, s.challenge)
		case d.retryAfter != s.retryAfter:
			t.Errorf("%s: Retry-After %d, want %d", s.name, d.retryAfter, s.retryAfter)
		}
	}
	want := map[string]int{
		"walled/address":     2,
		"bearer/credentials": 4, "basic/credentials": 5, "both/credentials": 1,
		"limited/rate": 2, "slow/rate": 2,
		"all/address": 1, "all/credentials": 2, "all/rate": 1,
	}
	got := deniedCounts(t, a)
	for series, n := range want {
		if got[series] != n {
			t.Errorf("denied %s = %d, want %d", series, got[series], n)
		}
	}
	for series, n := range got {
		if _, expected := want[series]; !expected && n != 0 {
			t.Errorf("denied %s = %d, want 0", series, n)
		}
	}
	// Every rule of every tunnel has its series from the start.
	for _, series := range []string{"walled/address", "basic/credentials", "limited/rate", "all/address", "all/credentials", "all/rate"} {
		if _, ok := got[series]; !ok {
			t.Errorf("no series %s", series)
		}
	}
	if _, ok := got["open/address"]; ok {
		t.Error("a tunnel without rules has series")
	}
}

// TestInternalAccessVerifiedCache proves the cache of verified basic
// credentials: only successes are kept, for verifiedTTL, keyed by user and
// password together, at most verifiedMax per tunnel, the entry closest to
// expiring going first.
func TestInternalAccessVerifiedCache(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	a := newTestAccess(t, accessFile(t), clock)
	ta := a.tunnels["basic"]
	check := func(user, password string) bool {
		d, _, err := a.check(context.Background(), "basic", netip.Addr{}, basicAuth(user, password))
		if err != nil {
			t.Fatal(err)
		}
		return d == nil
	}
	if check("alice", "wrong") || len(ta.verified) != 0 {
		t.Fatalf("a wrong password: cached %d", len(ta.verified))
	}
	if !check("alice", testPassword) || len(ta.verified) != 1 {
		t.Fatalf("the right password: cached %d, want 1", len(ta.verified))
	}
	// A user and password that run together alike are told apart.
	if check("alice"+testPassword[:1], testPassword[1:]) {
		t.Fatal("another split of the same bytes is verified")
	}
	var key [32]byte
	for k := range ta.verified {
		key = k
	}
	clock.advance(verifiedTTL - time.Nanosecond)
	if !ta.isVerified(key, clock.now()) {
		t.Fatal("forgotten before verifiedTTL")
	}
	clock.advance(time.Nanosecond)
	if ta.isVerified(key, clock.now()) || len(ta.verified) != 0 {
		t.Fatal("kept past verifiedTTL")
	}
	if !check("alice", testPassword) {
		t.Fatal("the right password after expiry")
	}
	// Full: the entry closest to expiring goes.
	first := key
	for i := range verifiedMax + 10 {
		clock.advance(time.Millisecond)
		ta.remember([32]byte{byte(i), byte(i >> 8), 1}, clock.now())
	}
	if len(ta.verified) != verifiedMax {
		t.Fatalf("%d cached, want %d", len(ta.verified), verifiedMax)
	}
	if ta.isVerified(first, clock.now()) || ta.isVerified([32]byte{9, 0, 1}, clock.now()) {
		t.Fatal("the oldest entries were kept")
	}
	if newest := verifiedMax + 9; !ta.isVerified([32]byte{byte(newest), byte(newest >> 8), 1}, clock.now()) {
		t.Fatal("the newest entry is gone")
	}
}

// TestInternalAccessBcryptWaitEndsWithTheClient proves that a request
// whose basic credentials wait for bcrypt gives up when its client leaves.
func TestInternalAccessBcryptWaitEndsWithTheClient(t *testing.T) {
	a := newTestAccess(t, accessFile(t), &fakeClock{t: time.Now()})
	for range cap(a.bcrypt) {
		a.bcrypt <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := a.check(ctx, "basic", netip.Addr{}, basicAuth("alice", testPassword)); err != context.Canceled {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	// A bearer token needs no bcrypt.
	if d, _, err := a.check(ctx, "both", netip.Addr{}, "Bearer "+testBearer); d != nil || err != nil {
		t.Fatalf("bearer while bcrypt is busy: %+v %v", d, err)
	}
}

// TestInternalAdmitted proves the answers of admitted, over HTTP: JSON
// bodies, WWW-Authenticate and Retry-After headers, the Authorization
// header stripped from an admitted request only when it carried the
// relay's credentials, the client address through trusted proxies, and a
// request another node handed over let through unchecked. No answer or
// log line shows a secret.
func TestInternalAdmitted(t *testing.T) {
	var logs strings.Builder
	logger := logrus.New()
	logger.SetOutput(&logs)
	logger.SetLevel(logrus.TraceLevel)
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	r := &Relay{
		access:  newTestAccess(t, accessFile(t), clock),
		proxies: proxies{netip.MustParsePrefix("192.0.2.0/24")},
		log:     logrus.NewEntry(logger),
	}
	hop := func(req *http.Request) *http.Request {
		return req.WithContext(context.WithValue(req.Context(), hopKey{}, "http"))
	}
	tests := []struct {
		name       string
		tunnel     string
		remote     string
		header     http.Header
		handedOver bool
		status     int // 0: admitted
		challenge  []string
		retryAfter string
		wantAuthz  string // the Authorization left on an admitted request
	}{
		{name: "open tunnel keeps the client's Authorization", tunnel: "open", remote: "198.51.100.1:1234",
			header: http.Header{"Authorization": {"Bearer the-upstream's-own"}}, wantAuthz: "Bearer the-upstream's-own"},
		{name: "outside address", tunnel: "walled", remote: "198.51.100.1:1234", status: 403},
		{name: "inside address", tunnel: "walled", remote: "10.0.0.1:1234"},
		{name: "inside through a trusted proxy", tunnel: "walled", remote: "192.0.2.10:1234",
			header: http.Header{"X-Forwarded-For": {"10.9.9.9"}}},
		{name: "outside through a trusted proxy", tunnel: "walled", remote: "192.0.2.10:1234",
			header: http.Header{"X-Forwarded-For": {"10.9.9.9, 198.51.100.1"}}, status: 403},
		{name: "a forged X-Forwarded-For from an untrusted peer", tunnel: "walled", remote: "198.51.100.1:1234",
			header: http.Header{"X-Forwarded-For": {"10.9.9.9"}}, status: 403},
		{name: "handed over by another node", tunnel: "walled", remote: "198.51.100.1:1234", handedOver: true},
		{name: "no credentials", tunnel: "both", remote: "198.51.100.1:1234", status: 401,
			challenge: []string{`Bearer realm="both"`, `Basic realm="both"`}},
		{name: "bearer stripped", tunnel: "both", remote: "198.51.100.1:1234",
			header: http.Header{"Authorization": {"Bearer " + testBearer}}},
		{name: "basic stripped", tunnel: "both", remote: "198.51.100.1:1234",
			header: http.Header{"Authorization": {basicAuth("alice", testPassword)}}},
		{name: "handed over without credentials", tunnel: "both", remote: "198.51.100.1:1234", handedOver: true},
		{name: "rate 1 of 2", tunnel: "limited", remote: "198.51.100.1:1234"},
		{name: "rate 2 of 2", tunnel: "limited", remote: "198.51.100.1:1234"},
		{name: "over the rate", tunnel: "limited", remote: "198.51.100.1:1234", status: 429, retryAfter: "1"},
		{name: "over the rate, handed over", tunnel: "limited", remote: "198.51.100.1:1234", handedOver: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader("body"))
			req.RemoteAddr = tt.remote
			for k, v := range tt.header {
				req.Header[k] = v
			}
			if tt.handedOver {
				req = hop(req)
			}
			rec := httptest.NewRecorder()
			p := &proxyCall{r: r, w: rec, req: req, rc: http.NewResponseController(rec), tunnel: tt.tunnel}
			ok := p.admitted()
			if tt.status == 0 {
				if !ok || p.status != 0 || rec.Code != http.StatusOK || rec.Body.Len() != 0 {
					t.Fatalf("refused: %v %d %s", ok, p.status, rec.Body)
				}
				if got := req.Header.Get("Authorization"); got != tt.wantAuthz {
					t.Errorf("Authorization left %q, want %q", got, tt.wantAuthz)
				}
				if body, _ := io.ReadAll(req.Body); string(body) != "body" {
					t.Errorf("body %q", body)
				}
				return
			}
			if ok || p.status != tt.status || rec.Code != tt.status {
				t.Fatalf("admitted %v, status %d, answered %d; want %d", ok, p.status, rec.Code, tt.status)
			}
			var answer map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || answer["error"] == "" || len(answer) != 1 {
				t.Errorf("body %q, want {\"error\":...}", rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := rec.Header().Values("WWW-Authenticate"); !slices.Equal(got, tt.challenge) {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			// Refused before its body is read.
			if body, _ := io.ReadAll(req.Body); string(body) != "body" {
				t.Errorf("the body was read: %q left", body)
			}
		})
	}
	if !strings.Contains(logs.String(), "access rules") {
		t.Fatal("no refusal logged: the check below would prove nothing")
	}
	for _, secret := range []string{testBearer, testPassword, base64.StdEncoding.EncodeToString([]byte("alice:" + testPassword))} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a secret reached the log:\n%s", logs.String())
		}
	}
}

// TestInternalConfigLoadsAccessRules proves the relay's side of the keys
// file: its options reach the tunnels, the other sources of keys bring
// none, a bad option or a bearer token that is a key stops Validate with an
// error that names the line or the tunnels and no secret, and so does a
// Domain that is not a DNS name.
func TestInternalConfigLoadsAccessRules(t *testing.T) {
	const defaultKey, otherKey = "relay-default-key-dGhlIHF1aWNrIGJyb3du", "relay-other-key-Zm94IGp1bXBzIG92ZXI"
	write := func(text string) string {
		path := filepath.Join(t.TempDir(), "keys")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	config := func(file, domain string) Config {
		cfg := DefaultConfig()
		cfg.AuthToken, cfg.KeysFile, cfg.Domain = defaultKey, file, domain
		cfg.Keys = map[string]string{"other": otherKey}
		return cfg
	}
	good := config(write("# tunnels\nweb key-web-dGhlIHF1aWNrIGJyb3du bearer="+testBearer+" rate=600/m\n"), "Relay.Example.")
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	tunnels, err := good.tunnels()
	if err != nil {
		t.Fatal(err)
	}
	if web := tunnels["web"].Access; !web.HasBearer() || web.Rate != 10 || web.Burst != 10 {
		t.Errorf("web: %v", web)
	}
	if tunnels["default"].Access.Restricted() || tunnels["other"].Access.Restricted() || tunnels["other"].Key != otherKey {
		t.Errorf("the other sources: %v", tunnels)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"a bad option", config(write("web key-web-dGhlIHF1aWNrIGJyb3du\napi key-api-dGhlIHF1aWNrIGJyb3du rate=10/s rate=5/s\n"), ""), "keys line 2 (tunnel \"api\"): field 4: rate given twice (in "},
		{"a bearer token that is the default key", config(write("web key-web-dGhlIHF1aWNrIGJyb3du bearer="+defaultKey+"\n"), ""), `a bearer token of tunnel "web" is the key of tunnel "default"`},
		{"a bearer token that is a key of Keys", config(write("web key-web-dGhlIHF1aWNrIGJyb3du bearer="+otherKey+"\n"), ""), `is the key of tunnel "other"`},
		{"a domain with a port", config("", "relay.example:443"), "Domain must be a DNS name"},
		{"a wildcard domain", config("", "*.relay.example"), "Domain must be a DNS name"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.err)
			continue
		}
		for _, secret := range []string{defaultKey, otherKey, "key-web-", "key-api-", testBearer} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: the error quotes a secret: %v", tc.name, err)
			}
		}
	}
}
