package integration

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// connectProxy is a corporate proxy in miniature: an HTTP server that
// answers CONNECT only, with Basic Proxy-Authorization when it has a user,
// and pipes each tunnel it opens to its target.
type connectProxy struct {
	*httptest.Server
	user, pass string            // "": no authentication asked
	resolve    map[string]string // host the proxy resolves itself, e.g. relay.test → 127.0.0.1

	tunnels atomic.Int32 // CONNECTs accepted and piped
	refused atomic.Int32 // CONNECTs answered 407
	mu      sync.Mutex
	targets []string // the target of every CONNECT, accepted or not
	conns   []net.Conn
	pipes   sync.WaitGroup
}

func startConnectProxy(t *testing.T, user, pass string) *connectProxy {
	t.Helper()
	p := &connectProxy{user: user, pass: pass, resolve: map[string]string{}}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		p.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.pipes.Wait()
	})
	return p
}

// URLWith is the proxy's URL with user and pass.
func (p *connectProxy) URLWith(user, pass string) string {
	return "http://" + user + ":" + pass + "@" + p.Listener.Addr().String()
}

func (p *connectProxy) Targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.targets)
}

// onlyTo reports whether the proxy opened tunnels, and every CONNECT it
// saw was to addr. (One connection normally; a reconnection would add one.)
func (p *connectProxy) onlyTo(addr string) bool {
	targets := p.Targets()
	return p.tunnels.Load() >= 1 && len(targets) >= 1 && !slices.ContainsFunc(targets, func(s string) bool { return s != addr })
}

func (p *connectProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, r.Host)
	p.mu.Unlock()
	if p.user != "" {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(p.user+":"+p.pass))
		if r.Header.Get("Proxy-Authorization") != want {
			p.refused.Add(1)
			w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
	}
	target := r.Host
	if host, port, err := net.SplitHostPort(target); err == nil && p.resolve[host] != "" {
		target = net.JoinHostPort(p.resolve[host], port)
	}
	upstream, err := net.Dial("tcp", target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		upstream.Close()
		return
	}
	p.tunnels.Add(1)
	p.mu.Lock()
	p.conns = append(p.conns, client, upstream)
	p.mu.Unlock()
	p.pipes.Add(2)
	go func() {
		defer p.pipes.Done()
		io.Copy(upstream, rw.Reader) // what the client sent, buffered or not
		upstream.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		defer p.pipes.Done()
		io.Copy(client, upstream)
		client.Close()
	}()
}

func proxyFunc(t *testing.T, raw string) func(*http.Request) (*url.URL, error) {
	t.Helper()
	f, err := supervisor.ParseProxy(raw)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// The supervisor reaches the relay through an authenticating CONNECT proxy:
// the proxy sees the CONNECT to the relay's address, requests go through
// the tunnel, and the password shows nowhere.
func TestSupervisorReachesTheRelayThroughAProxy(t *testing.T) {
	const pass = "proxy-pass-8e2b6d0f4a"
	w := newWorld(t)
	w.secrets = append(w.secrets, pass)
	r := w.startRelay("127.0.0.1:0", nil)
	up := w.startUpstream(echoUpstream())
	p := startConnectProxy(t, "tunnel", pass)
	tn := w.startTunnel(harness.TunnelURL(r), up.URL, func(c *supervisor.Config) {
		c.Proxy = proxyFunc(t, p.URLWith("tunnel", pass))
	})
	w.waitConnected(tn, r)

	req, _ := http.NewRequest(http.MethodPost, publicURL(r, "/echo?x=1"), strings.NewReader("through the proxy"))
	if resp, body, err := w.do(req); err != nil || resp.StatusCode != http.StatusOK || string(body) != "through the proxy" {
		t.Fatalf("round trip: %v %q %v", resp, body, err)
	}
	if !p.onlyTo(r.Addr().String()) {
		t.Errorf("the proxy opened %d tunnels to %q, want them all to the relay %s", p.tunnels.Load(), p.Targets(), r.Addr())
	}
	status, err := json.Marshal(tn.Status())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(status), pass) {
		t.Errorf("the proxy password appears in the status: %s", status)
	}
}

// To a wss:// relay, TLS runs inside the proxy's tunnel, end to end: the
// relay's certificate is checked as without a proxy.
func TestWSSRelayThroughAProxy(t *testing.T) {
	const pass = "proxy-pass-5d1a8c3f7e"
	w := newWorld(t)
	w.secrets = append(w.secrets, pass)
	certFile, keyFile, roots := harness.SelfSigned(t)
	r := w.startRelay("127.0.0.1:0", func(c *relay.Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	up := w.startUpstream(echoUpstream())
	p := startConnectProxy(t, "tunnel", pass)
	tn := w.startTunnel("wss://"+r.Addr().String()+"/tunnel", up.URL, func(c *supervisor.Config) {
		c.TLSConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		c.Proxy = proxyFunc(t, p.URLWith("tunnel", pass))
	})
	tn.waitState(t, messages.Authenticated)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	harness.Eventually(t, patience, "a request through the wss:// tunnel", func() bool {
		resp, err := client.Get("https://" + r.Addr().String() + "/echo")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !p.onlyTo(r.Addr().String()) {
		t.Errorf("the proxy opened %d tunnels to %q, want them all to the relay %s", p.tunnels.Load(), p.Targets(), r.Addr())
	}
}

// A wrong proxy password: the proxy's 407 is the connection's error, in the
// status and the log, naming the proxy and never a password.
func TestWrongProxyPasswordIsAClearError(t *testing.T) {
	const pass, wrong = "proxy-pass-3c9a71e5d0", "wrong-pass-b4f0a2c86e"
	w := newWorld(t)
	w.secrets = append(w.secrets, pass, wrong)
	r := w.startRelay("127.0.0.1:0", nil)
	p := startConnectProxy(t, "tunnel", pass)
	tn := w.startTunnel(harness.TunnelURL(r), "http://127.0.0.1:1", func(c *supervisor.Config) {
		c.Proxy = proxyFunc(t, p.URLWith("tunnel", wrong))
	})
	want := "connection: proxy " + p.Listener.Addr().String() + ": Proxy Authentication Required"
	harness.Eventually(t, patience, "the proxy's refusal in the status", func() bool {
		return tn.Status().Health.LastError == want
	})
	if p.refused.Load() == 0 || p.tunnels.Load() != 0 {
		t.Errorf("the proxy refused %d and opened %d tunnels, want refusals only", p.refused.Load(), p.tunnels.Load())
	}
	if tn.Status().Connected {
		t.Error("connected through a proxy that refused")
	}
	if w.logs.Count(want) == 0 {
		t.Errorf("no log line says %q", want)
	}
	status, err := json.Marshal(tn.Status())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{pass, wrong} {
		if strings.Contains(string(status), secret) {
			t.Errorf("a password appears in the status: %s", status)
		}
	}
}

// The proxy of the environment (HTTP_PROXY for a ws:// relay) is used, but
// not for a relay NO_PROXY lists, nor with DirectProxy. The relay is
// relay.test, a name only the proxy and the test's dialer know.
func TestNoProxyAndDirectBypassTheProxy(t *testing.T) {
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", nil)
	up := w.startUpstream(echoUpstream())
	_, port, _ := net.SplitHostPort(r.Addr().String())
	relayURL := "ws://relay.test:" + port + "/tunnel"
	dialRelayTest := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && host == "relay.test" {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}

	for _, tc := range []struct {
		name         string
		proxy        func(p *connectProxy) func(*http.Request) (*url.URL, error)
		throughProxy bool
	}{
		{"HTTP_PROXY", func(p *connectProxy) func(*http.Request) (*url.URL, error) {
			return supervisor.ProxyFromEnv(envOf(map[string]string{"HTTP_PROXY": p.URL, "HTTPS_PROXY": "http://127.0.0.1:1"}))
		}, true},
		{"NO_PROXY", func(p *connectProxy) func(*http.Request) (*url.URL, error) {
			return supervisor.ProxyFromEnv(envOf(map[string]string{"HTTP_PROXY": p.URL, "NO_PROXY": "example.com,relay.test"}))
		}, false},
		{"no_proxy with a domain", func(p *connectProxy) func(*http.Request) (*url.URL, error) {
			return supervisor.ProxyFromEnv(envOf(map[string]string{"http_proxy": p.URL, "no_proxy": ".test"}))
		}, false},
		{"direct", func(*connectProxy) func(*http.Request) (*url.URL, error) { return proxyFunc(t, "direct") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startConnectProxy(t, "", "")
			p.resolve["relay.test"] = "127.0.0.1"
			tn := w.startTunnel(relayURL, up.URL, func(c *supervisor.Config) {
				c.Proxy = tc.proxy(p)
				c.NetDialContext = dialRelayTest
			})
			tn.waitState(t, messages.Authenticated)
			code, body := w.get(publicURL(r, "/echo?via="+url.QueryEscape(tc.name)))
			if code != http.StatusOK {
				t.Fatalf("round trip: %d %q", code, body)
			}
			switch {
			case tc.throughProxy && !p.onlyTo("relay.test:"+port):
				t.Errorf("the proxy opened %d tunnels to %q, want them all to relay.test:%s", p.tunnels.Load(), p.Targets(), port)
			case !tc.throughProxy && len(p.Targets()) > 0:
				t.Errorf("the proxy saw CONNECTs to %q, want none", p.Targets())
			}
			stopCtx, cancel := context.WithTimeout(context.Background(), harness.StopTimeout)
			defer cancel()
			if err := tn.Stop(stopCtx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The binary's -proxy: the password given in the URL works, and appears in
// none of its output.
func TestSupervisorBinaryThroughAProxy(t *testing.T) {
	const pass = "proxy-pass-1f7c3e9b52"
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", nil)
	up := w.startUpstream(echoUpstream())
	p := startConnectProxy(t, "tunnel", pass)
	sup := startBinary(t, "tunnel-supervisor",
		[]string{"-relay-url", harness.TunnelURL(r), "-forward", up.URL, "-listen", "127.0.0.1:0", "-connections", "1",
			"-heartbeat-interval", "200ms", "-retry-delay", "200ms", "-log-format", "json", "-log-level", "trace"},
		[]string{"TUNNEL_API_KEY=" + testKey, "TUNNEL_PROXY=" + p.URLWith("tunnel", pass)})
	if got, want := sup.logField(t, "Supervisor started", "proxy"), "http://tunnel:xxxxx@"+p.Listener.Addr().String(); got != want {
		t.Errorf("start line: proxy=%q, want %q", got, want)
	}
	supAddr := sup.logField(t, "Supervisor started", "listen")
	harness.Eventually(t, patience, "the supervisor's /health to say connected", func() bool {
		code, _ := w.get("http://" + supAddr + "/health")
		return code == http.StatusOK
	})
	if code, body := w.get(publicURL(r, "/echo")); code != http.StatusOK {
		t.Fatalf("round trip: %d %q", code, body)
	}
	if !p.onlyTo(r.Addr().String()) {
		t.Errorf("the proxy opened %d tunnels to %q, want them all to the relay %s", p.tunnels.Load(), p.Targets(), r.Addr())
	}
	_, status := w.get("http://" + supAddr + "/status")
	sup.stop(t, syscall.SIGTERM)
	for where, text := range map[string]string{"output": sup.logs.String(), "status": string(status)} {
		if strings.Contains(text, pass) {
			t.Errorf("the proxy password appears in the supervisor's %s", where)
		}
	}
}
