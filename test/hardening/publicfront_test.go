package hardening_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// 200 requests with 0.99 MiB of headers took the relay from 26 to 424 MiB:
// headers were allowed 1 MiB. Now they are allowed 32 KiB, and the same
// burst is answered 431 for a few MiB of allocation in all.
func TestHugeHeadersAreRefusedCheaply(t *testing.T) {
	r := startRelay(t, nil)
	tu := startTunnel(t, harness.TunnelURL(r), defaultKey, upstream(t, hello), nil)
	tu.await(messages.Authenticated)
	c := freshClient(t)

	req, _ := http.NewRequest(http.MethodGet, publicURL(r)+"/x", nil)
	req.Header.Set("X-Pad", strings.Repeat("h", 64<<10))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: %d, want 431", resp.StatusCode)
	}

	// One head of 0.99 MiB, written raw by 200 clients at once, so that the
	// test's own side allocates it once.
	head := []byte("GET /x HTTP/1.1\r\nHost: relay\r\nX-Pad: " + strings.Repeat("h", 1015<<10) + "\r\n\r\n")
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	statuses := make(chan int, 200)
	for range 200 {
		wg.Go(func() {
			conn, err := net.Dial("tcp", r.Addr().String())
			if err != nil {
				statuses <- -1
				return
			}
			defer conn.Close()
			_, _ = conn.Write(head) // the relay may refuse and close before the end
			statuses <- readStatus(conn)
		})
	}
	wg.Wait()
	close(statuses)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	for status := range statuses {
		// The relay may answer 431 and close before the client has written
		// all of its head: then the client sees the connection reset.
		if status != http.StatusRequestHeaderFieldsTooLarge && status != 0 {
			t.Fatalf("0.99 MiB of headers: %d, want 431", status)
		}
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("200 requests with 0.99 MiB of headers: %s allocated", mib(allocated))
	if allocated > 64<<20 {
		t.Errorf("%s allocated for 200 refused heads, want under 64 MiB", mib(allocated))
	}
	if status, body := get(t, c, publicURL(r)+"/after"); status != http.StatusOK || body != "hello" {
		t.Fatalf("after: %d %q", status, body)
	}
}

// /health and /metrics were served on the public listener: tunnel names,
// auth failure counts and host figures for anyone, and the paths shadowed
// the default tunnel's. Now they are on the admin listener, and on the
// public one those paths are the default tunnel's like any other; a name
// no key opens is answered as a known tunnel that is down.
func TestAdminEndpointsAreNotPublic(t *testing.T) {
	r := startRelay(t, nil)
	c := freshClient(t)
	for _, path := range []string{"/health", "/metrics"} {
		status, body := get(t, c, publicURL(r)+path)
		if status != http.StatusServiceUnavailable || errorText(t, body) != `no tunnel "default" connected` {
			t.Errorf("public %s with no tunnel: %d %q, want the tunnel's 503", path, status, body)
		}
	}
	// A name with a key but no session is 503; a name no key opens is 404
	// at once (the high-availability issue's contract: a known tunnel is
	// worth holding for, an unknown one never comes).
	if status, _ := get(t, c, publicURL(r)+"/t/b/x"); status != http.StatusServiceUnavailable {
		t.Errorf("a known tunnel with no session: %d, want 503", status)
	}
	if status, _ := get(t, c, publicURL(r)+"/t/nobody/x"); status != http.StatusNotFound {
		t.Errorf("an unknown tunnel: %d, want 404", status)
	}

	tu := startTunnel(t, harness.TunnelURL(r), defaultKey, upstream(t, hello), nil)
	tu.await(messages.Authenticated)
	for _, path := range []string{"/health", "/metrics"} {
		if status, body := get(t, c, publicURL(r)+path); status != http.StatusOK || body != "hello" {
			t.Errorf("public %s: %d %q, want the upstream's answer", path, status, body)
		}
	}
	status, body := get(t, c, harness.AdminURL(r)+"/health")
	if status != http.StatusOK || !strings.Contains(body, `"tunnels":["default"]`) {
		t.Errorf("admin /health: %d %q", status, body)
	}
	if status, body := get(t, c, harness.AdminURL(r)+"/metrics"); status != http.StatusOK || !strings.Contains(body, "tunnel_relay_sessions 1") {
		t.Errorf("admin /metrics: %d", status)
	}
}

// seen is what an upstream saw of one request.
type seen struct {
	Path    string
	Headers http.Header
}

// recorder is an upstream that answers each request with what it saw, as
// JSON.
func recorder(t *testing.T) string {
	return upstream(t, func(w http.ResponseWriter, req *http.Request) {
		_ = json.NewEncoder(w).Encode(seen{Path: req.URL.EscapedPath(), Headers: req.Header})
	})
}

// seenBy sends the raw request head to r and decodes what the upstream saw;
// status is the relay's answer.
func seenBy(t *testing.T, r *relay.Relay, conn net.Conn) (int, seen) {
	t.Helper()
	resp, err := http.ReadResponse(newReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s seen
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("upstream answer %q: %v", body, err)
		}
	}
	return resp.StatusCode, s
}

// Dot segments reached the upstream as sent (/t/b/../../admin), and the
// forwarding headers a client wrote passed as its own. Now paths are
// normalised before routing, and X-Forwarded-*, Forwarded and X-Real-IP are
// the relay's, from what it saw.
func TestPathsAreNormalisedAndForwardingHeadersAreTheRelays(t *testing.T) {
	r := startRelay(t, nil)
	def := startTunnel(t, harness.TunnelURL(r), defaultKey, recorder(t), nil)
	def.await(messages.Authenticated)
	b := startTunnel(t, harness.TunnelURL(r), keyB, recorder(t), func(c *supervisor.Config) { c.Tunnel = "b" })
	b.await(messages.Authenticated)
	addr := r.Addr().String()

	for _, tc := range []struct {
		target, path string
	}{
		{"/t/b/../../admin", "/admin"},             // out of tunnel b, into the default one
		{"/t/b/x/%2e%2E/y", "/y"},                  // encoded dots are dots
		{"/t/b/x/%2e%2e%2fadmin", "/x/..%2fadmin"}, // an encoded slash is no separator
		{"/a/./b/../c", "/a/c"},
	} {
		conn := rawRequest(t, addr, "GET "+tc.target+" HTTP/1.1\r\nHost: relay.example", "")
		status, s := seenBy(t, r, conn)
		if status != http.StatusOK || s.Path != tc.path {
			t.Errorf("%s: %d, upstream saw %q; want %q", tc.target, status, s.Path, tc.path)
		}
	}
	if status := readStatus(rawRequest(t, addr, "GET /a/%zz HTTP/1.1\r\nHost: relay.example", "")); status != http.StatusBadRequest {
		t.Errorf("a stray %%: %d, want 400", status)
	}

	spoofed := strings.Join([]string{
		"GET /x HTTP/1.1", "Host: relay.example",
		"X-Forwarded-For: 6.6.6.6", "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https",
		"X-Forwarded-Prefix: /admin", "Forwarded: for=6.6.6.6;proto=https", "X-Real-IP: 6.6.6.6",
	}, "\r\n")
	status, s := seenBy(t, r, rawRequest(t, addr, spoofed, ""))
	want := map[string]string{
		"X-Forwarded-For":    "127.0.0.1",
		"X-Forwarded-Host":   "relay.example",
		"X-Forwarded-Proto":  "http",
		"X-Forwarded-Prefix": "",
		"Forwarded":          `for=127.0.0.1;host="relay.example";proto=http`,
		"X-Real-Ip":          "127.0.0.1",
	}
	for name, value := range want {
		if got := strings.Join(s.Headers.Values(name), ","); status != http.StatusOK || got != value {
			t.Errorf("%s: %q, want %q", name, got, value)
		}
	}
}

// Behind a trusted proxy the client is the address the proxy vouches for:
// the upstream hears of it, and the per-address limits count it, not the
// proxy, whose other clients go on.
func TestTrustedProxiesNameTheClient(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.UpgradeBurst, c.UpgradeRate = 2, 0.01
	})
	tu := startTunnel(t, harness.TunnelURL(r), defaultKey, recorder(t), nil)
	tu.await(messages.Authenticated)
	addr := r.Addr().String()

	head := "GET /x HTTP/1.1\r\nHost: relay.example\r\nX-Forwarded-For: 203.0.113.7, 10.1.1.1\r\nX-Forwarded-Proto: https"
	status, s := seenBy(t, r, rawRequest(t, addr, head, ""))
	for name, value := range map[string]string{
		"X-Real-Ip":         "10.1.1.1",
		"X-Forwarded-For":   "203.0.113.7, 10.1.1.1, 127.0.0.1",
		"X-Forwarded-Proto": "https",
	} {
		if got := strings.Join(s.Headers.Values(name), ","); status != http.StatusOK || got != value {
			t.Errorf("%s: %q, want %q", name, got, value)
		}
	}

	upgradeAs := func(client string) int {
		h := http.Header{"X-Forwarded-For": {client}}
		conn, resp, err := dialerFrom(net.IPv4(127, 0, 0, 1)).Dial(harness.TunnelURL(r), h)
		if err != nil {
			if resp == nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		conn.Close()
		return http.StatusSwitchingProtocols
	}
	for i, want := range []int{101, 101, 429} {
		if got := upgradeAs("198.51.100.1"); got != want {
			t.Fatalf("upgrade %d of one client behind the proxy: %d, want %d", i+1, got, want)
		}
	}
	if got := upgradeAs("198.51.100.2"); got != http.StatusSwitchingProtocols {
		t.Fatalf("another client behind the same proxy: %d, want 101", got)
	}
}

// With -proxy-protocol, a trusted proxy's connections start with a PROXY
// header naming the client, which the relay takes for the peer; a PROXY
// header from anyone else is refused, and their plain requests are served.
func TestProxyProtocolFromTrustedProxiesOnly(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.ProxyProtocol = true
	})
	tu := startTunnel(t, harness.TunnelURL(r), defaultKey, recorder(t), func(c *supervisor.Config) {
		// Supervisors reach the relay through the same listener: this one
		// comes from an address that is no proxy.
		c.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}).DialContext
	})
	tu.await(messages.Authenticated)
	addr := r.Addr().String()
	request := "GET /x HTTP/1.1\r\nHost: relay.example\r\n\r\n"

	proxied := dialFrom(t, net.IPv4(127, 0, 0, 1), addr)
	fmt.Fprintf(proxied, "PROXY TCP4 198.51.100.9 127.0.0.1 5555 80\r\n%s", request)
	status, s := seenBy(t, r, proxied)
	if got := s.Headers.Get("X-Real-Ip"); status != http.StatusOK || got != "198.51.100.9" {
		t.Fatalf("through the proxy: %d, client %q; want 198.51.100.9", status, got)
	}

	spoof := dialFrom(t, net.IPv4(127, 0, 0, 2), addr)
	fmt.Fprintf(spoof, "PROXY TCP4 198.51.100.9 127.0.0.1 5555 80\r\n%s", request)
	if status := readStatus(spoof); status != 0 {
		t.Fatalf("a PROXY header from no proxy answered %d, want the connection closed", status)
	}
	plain := dialFrom(t, net.IPv4(127, 0, 0, 2), addr)
	fmt.Fprint(plain, request)
	if status, s := seenBy(t, r, plain); status != http.StatusOK || s.Headers.Get("X-Real-Ip") != "127.0.0.2" {
		t.Fatalf("a plain request from no proxy: %d, client %q", status, s.Headers.Get("X-Real-Ip"))
	}
}
