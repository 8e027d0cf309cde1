package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/agent"
	"github.com/enhanced-tunnel/tunnel/supervisor/forward"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// testKey is long and odd enough that finding it in a log cannot be a
// coincidence.
const testKey = "agent-test-key-4c1e9b7a2d5f8036"

// setup is one test's relay, upstream and agent logs.
type setup struct {
	relay *relay.Relay
	logs  *harness.LogBuffer
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	s := &setup{logs: &harness.LogBuffer{}}
	s.relay = harness.StartRelay(t, testKey, nil, nil)
	t.Cleanup(func() {
		if strings.Contains(s.logs.String(), testKey) {
			t.Error("the API key appears in the agent's logs")
		}
	})
	return s
}

// config is an agent forwarding to upstream through s's relay, serving its
// endpoints on a free loopback port, logging into s.logs.
func (s *setup) config(t *testing.T, upstream string) agent.Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(s.logs)
	cfg := agent.DefaultConfig()
	cfg.Tunnel.RelayURL = harness.TunnelURL(s.relay)
	cfg.Tunnel.APIKey = testKey
	cfg.Tunnel.CloseTimeout = 2 * time.Second
	cfg.Forward = upstream
	cfg.Listener = ln
	cfg.Logger = log
	return cfg
}

// waitRouted waits until the tunnel is up and the relay routes the tunnel
// "default" to it.
func (s *setup) waitRouted(t *testing.T, a *agent.Agent) {
	t.Helper()
	harness.Eventually(t, harness.StopTimeout, "the tunnel to be connected", func() bool { return a.Tunnel().Status().Connected })
	harness.Eventually(t, harness.StopTimeout, "the relay to route the tunnel", func() bool {
		var h struct{ Tunnels []string }
		code, body := get(t, harness.AdminURL(s.relay)+"/health")
		return code == http.StatusOK && json.Unmarshal([]byte(body), &h) == nil && slices.Contains(h.Tunnels, "default")
	})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// answer is a public request's outcome.
type answer struct {
	code int
	body string
	err  error
}

// publicGet sends a request through the relay's public front in the
// background.
func (s *setup) publicGet(path string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		resp, err := http.Get("http://" + s.relay.Addr().String() + path)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		ch <- answer{code: resp.StatusCode, body: string(body), err: err}
	}()
	return ch
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(harness.StopTimeout):
		t.Fatalf("waited %v for %s", harness.StopTimeout, what)
	}
	panic("unreachable")
}

// gatedUpstream holds every request to /slow until released (or the
// request is cancelled), and answers anything else at once.
type gatedUpstream struct {
	*httptest.Server
	started   chan struct{} // one value per /slow request held
	release   chan struct{}
	cancelled chan struct{} // one value per /slow request cancelled
	once      sync.Once
}

func newGatedUpstream(t *testing.T) *gatedUpstream {
	u := &gatedUpstream{started: make(chan struct{}, 8), release: make(chan struct{}), cancelled: make(chan struct{}, 8)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			io.WriteString(w, "quick")
			return
		}
		u.started <- struct{}{}
		select {
		case <-u.release:
			io.WriteString(w, "slow done")
		case <-r.Context().Done():
			u.cancelled <- struct{}{}
		}
	}))
	// Clean-ups run last first: a failed test's held handlers are let go
	// before Close waits for them.
	t.Cleanup(u.Close)
	t.Cleanup(u.open)
	return u
}

func (u *gatedUpstream) open() { u.once.Do(func() { close(u.release) }) }

// A request in flight when Shutdown begins finishes, through the tunnel,
// before the tunnel stops; requests that come meanwhile get 503 draining,
// and the endpoints stay up until the end.
func TestShutdownDrainsBeforeTheTunnelStops(t *testing.T) {
	s := newSetup(t)
	up := newGatedUpstream(t)
	a, _ := harness.StartAgent(t, s.config(t, up.URL))
	s.waitRouted(t, a)
	api := "http://" + a.Addr().String()

	inFlight := s.publicGet("/slow")
	recv(t, up.started, "the request to reach the upstream")
	shut := make(chan error, 1)
	go func() { shut <- a.Shutdown(context.Background()) }()
	harness.Eventually(t, harness.StopTimeout, "the drain to start", func() bool {
		return s.logs.Count("Draining: refusing new requests") > 0
	})

	late := recv(t, s.publicGet("/quick"), "the answer to a request while draining")
	if late.err != nil || late.code != http.StatusServiceUnavailable || !strings.Contains(late.body, `"draining"`) {
		t.Errorf("a request while draining: %d %q %v, want 503 draining", late.code, late.body, late.err)
	}
	if code, body := get(t, api+"/status"); code != http.StatusOK || !strings.Contains(body, `"state": "AUTHENTICATED"`) {
		t.Errorf("GET /status while draining: %d %s, want the tunnel still up", code, body)
	}
	if _, body := get(t, api+"/metrics"); !strings.Contains(body, "\ntunnel_forward_in_flight 1\n") {
		t.Errorf("GET /metrics while draining lacks tunnel_forward_in_flight 1:\n%s", body)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}

	up.open()
	if got := recv(t, inFlight, "the request in flight"); got.err != nil || got.code != http.StatusOK || got.body != "slow done" {
		t.Errorf("the request in flight: %d %q %v, want 200 %q", got.code, got.body, got.err, "slow done")
	}
	if err := recv(t, shut, "Shutdown to return"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if st := a.Tunnel().Status(); st.State != messages.Disconnected || st.Connected {
		t.Errorf("after Shutdown the tunnel is %s, connected %v", st.State, st.Connected)
	}
	if _, err := http.Get(api + "/health"); err == nil {
		t.Error("the endpoints still answer after Shutdown")
	}
	if s.logs.Count("Supervisor stopped") != 1 {
		t.Errorf("want one %q line:\n%s", "Supervisor stopped", s.logs)
	}
}

// Cancelling Shutdown's context ends the drain at once; stopping the
// tunnel then cancels the request still being forwarded.
func TestShutdownContextCutsTheDrainShort(t *testing.T) {
	s := newSetup(t)
	up := newGatedUpstream(t)
	cfg := s.config(t, up.URL)
	cfg.DrainTimeout = time.Hour
	a, _ := harness.StartAgent(t, cfg)
	s.waitRouted(t, a)

	inFlight := s.publicGet("/slow")
	recv(t, up.started, "the request to reach the upstream")
	ctx, cancel := context.WithCancel(context.Background())
	shut := make(chan error, 1)
	go func() { shut <- a.Shutdown(ctx) }()
	harness.Eventually(t, harness.StopTimeout, "the drain to start", func() bool {
		return s.logs.Count("Draining: refusing new requests") > 0
	})
	cancel()
	recv(t, up.cancelled, "the upstream request to be cancelled")
	if err := recv(t, shut, "Shutdown to return"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if s.logs.Count("Stopped waiting for the requests in flight") != 1 {
		t.Errorf("want the cut drain logged:\n%s", s.logs)
	}
	// How the relay answers a request whose tunnel went is the relay's
	// business (it may hold it for a while); closing it ends the request.
	harness.CloseRelay(t, s.relay)
	if got := recv(t, inFlight, "the public request to end"); got.err == nil && got.code == http.StatusOK {
		t.Errorf("the request cut off answered 200 %q", got.body)
	}
}

// Shutdown may be called any number of times, at once or later: each call
// returns once the agent has stopped, with the first call's result.
func TestShutdownIsIdempotent(t *testing.T) {
	s := newSetup(t)
	up := newGatedUpstream(t)
	a, _ := harness.StartAgent(t, s.config(t, up.URL))
	s.waitRouted(t, a)

	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- a.Shutdown(context.Background()) }()
	}
	for range 3 {
		if err := recv(t, errs, "a Shutdown call"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after Shutdown: %v", err)
	}
	if n := s.logs.Count("Supervisor stopped"); n != 1 {
		t.Errorf("%d %q lines, want 1", n, "Supervisor stopped")
	}
}

// The endpoints serve the tunnel's health, status and metrics, the
// forwarding included.
func TestEndpointsServed(t *testing.T) {
	s := newSetup(t)
	up := newGatedUpstream(t)
	a, states := harness.StartAgent(t, s.config(t, up.URL))
	s.waitRouted(t, a)
	api := "http://" + a.Addr().String()

	if got := recv(t, s.publicGet("/quick"), "a request through the tunnel"); got.err != nil || got.code != http.StatusOK || got.body != "quick" {
		t.Fatalf("through the tunnel: %d %q %v", got.code, got.body, got.err)
	}
	if code, body := get(t, api+"/health"); code != http.StatusOK || !strings.Contains(body, `"status":"healthy"`) {
		t.Errorf("GET /health = %d %s", code, body)
	}
	var st messages.Status
	code, body := get(t, api+"/status")
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil || st.State != messages.Authenticated || st.Tunnel != "default" {
		t.Errorf("GET /status = %d %s (%v)", code, body, err)
	}
	if _, body := get(t, api+"/metrics"); !strings.Contains(body, "\ntunnel_connected 1\n") ||
		!strings.Contains(body, "\ntunnel_forward_requests_total{code=\"200\"} 1\n") {
		t.Errorf("GET /metrics lacks the tunnel or the forwarding:\n%s", body)
	}
	if states.Count(messages.Authenticated) == 0 {
		t.Error("no AUTHENTICATED state change recorded")
	}
	if started := startLines(s.logs); len(started) != 1 || !strings.Contains(started[0], a.Addr().String()) {
		t.Errorf("want one start line with the endpoints' address: %q", started)
	}
}

// The start is logged with every relay, the connections and the upstream,
// passwords redacted. (A WebSocket URL cannot carry a password, so this
// tunnel never connects; the log must not show it all the same.)
func TestStartLogRedactsPasswords(t *testing.T) {
	logs := &harness.LogBuffer{}
	log := logrus.New()
	log.SetOutput(logs)
	cfg := agent.DefaultConfig()
	cfg.Tunnel.RelayURLs = []string{"ws://127.0.0.1:1/tunnel", "ws://user:relay-password@127.0.0.1:2/tunnel"}
	cfg.Tunnel.Connections = 3
	cfg.Tunnel.APIKey = testKey
	cfg.Forward = "http://user:upstream-password@127.0.0.1:3"
	cfg.Logger = log
	a, err := agent.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	started := startLines(logs)
	if len(started) != 1 {
		t.Fatalf("want one start line:\n%s", logs)
	}
	for _, want := range []string{`relays="ws://127.0.0.1:1/tunnel,ws://user:xxxxx@127.0.0.1:2/tunnel"`, "connections=3",
		`forward="http://user:xxxxx@127.0.0.1:3"`} {
		if !strings.Contains(started[0], want) {
			t.Errorf("the start line lacks %s: %s", want, started[0])
		}
	}
	for _, secret := range []string{"relay-password", "upstream-password", testKey} {
		if logs.Count(secret) > 0 {
			t.Errorf("%q appears in the logs:\n%s", secret, logs)
		}
	}
}

func startLines(logs *harness.LogBuffer) []string {
	var lines []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "Supervisor started") {
			lines = append(lines, line)
		}
	}
	return lines
}

// WrapHandler sees every request on its way to the forwarder.
func TestWrapHandler(t *testing.T) {
	s := newSetup(t)
	up := newGatedUpstream(t)
	cfg := s.config(t, up.URL)
	var mu sync.Mutex
	var paths []string
	cfg.WrapHandler = func(next supervisor.Handler) supervisor.Handler {
		return func(ctx context.Context, tn *supervisor.Tunnel, msg *messages.TunnelMessage) {
			mu.Lock()
			paths = append(paths, msg.Path)
			mu.Unlock()
			next(ctx, tn, msg)
		}
	}
	a, _ := harness.StartAgent(t, cfg)
	s.waitRouted(t, a)
	if got := recv(t, s.publicGet("/quick?x=1"), "a request"); got.code != http.StatusOK || got.body != "quick" {
		t.Fatalf("through the tunnel: %d %q %v", got.code, got.body, got.err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(paths, []string{"/quick?x=1"}) {
		t.Errorf("the wrapper saw %q", paths)
	}
}

// Without a Listener there are no endpoints, and the rest works the same.
func TestWithoutListener(t *testing.T) {
	s := newSetup(t)
	up := newGatedUpstream(t)
	cfg := s.config(t, up.URL)
	cfg.Listener.Close()
	cfg.Listener = nil
	a, _ := harness.StartAgent(t, cfg)
	if a.Addr() != nil {
		t.Errorf("Addr() = %v, want nil", a.Addr())
	}
	s.waitRouted(t, a)
	if got := recv(t, s.publicGet("/quick"), "a request"); got.code != http.StatusOK {
		t.Fatalf("through the tunnel: %d %q %v", got.code, got.body, got.err)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A listener that fails reaches Err; the agent runs on until shut down.
func TestErrReportsAFailedListener(t *testing.T) {
	s := newSetup(t)
	up := newGatedUpstream(t)
	cfg := s.config(t, up.URL)
	ln := &failingListener{Listener: cfg.Listener, failed: make(chan struct{})}
	cfg.Listener = ln
	a, _ := harness.StartAgent(t, cfg)
	close(ln.failed)
	if err := recv(t, a.Err(), "the serving error"); !errors.Is(err, errListenerBroken) {
		t.Fatalf("Err() gave %v, want one wrapping %v", err, errListenerBroken)
	}
	s.waitRouted(t, a)
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

var errListenerBroken = errors.New("listener broken")

// failingListener's Accept fails for good once failed is closed.
type failingListener struct {
	net.Listener
	failed chan struct{}
}

func (l *failingListener) Accept() (net.Conn, error) {
	<-l.failed
	return nil, errListenerBroken
}

func TestValidate(t *testing.T) {
	valid := func() agent.Config {
		cfg := agent.DefaultConfig()
		cfg.Tunnel.RelayURL = "ws://127.0.0.1:1/tunnel"
		cfg.Tunnel.APIKey = testKey
		return cfg
	}
	for _, tc := range []struct {
		name   string
		change func(*agent.Config)
		want   error
		text   string
	}{
		{"valid", func(*agent.Config) {}, nil, ""},
		{"zero drain timeout", func(c *agent.Config) { c.DrainTimeout = 0 }, nil, ""},
		{"tunnel without key", func(c *agent.Config) { c.Tunnel.APIKey = "" }, supervisor.ErrInvalidConfig, "APIKey is empty"},
		{"OnMessage set", func(c *agent.Config) {
			c.Tunnel.OnMessage = func(context.Context, *supervisor.Tunnel, *messages.TunnelMessage) {}
		}, agent.ErrInvalidConfig, "Tunnel.OnMessage must be nil"},
		{"tunnel logger set", func(c *agent.Config) { c.Tunnel.Logger = logrus.New() }, agent.ErrInvalidConfig, "Tunnel.Logger must be nil"},
		{"negative drain timeout", func(c *agent.Config) { c.DrainTimeout = -time.Second }, agent.ErrInvalidConfig, "DrainTimeout"},
		{"forward not http", func(c *agent.Config) { c.Forward = "ftp://127.0.0.1/" }, agent.ErrInvalidConfig, "http:// or https://"},
		{"forward empty", func(c *agent.Config) { c.Forward = "" }, agent.ErrInvalidConfig, "upstream URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.change(&cfg)
			err := cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Validate = %v, want %v saying %q", err, tc.want, tc.text)
			}
		})
	}
}

// A Start that fails closes the listener it was given, which nobody else
// would.
func TestFailedStartClosesTheListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Listener = ln
	if _, err := agent.Start(cfg); !errors.Is(err, supervisor.ErrInvalidConfig) {
		t.Fatalf("Start without a relay URL: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after a failed Start: %v, want net.ErrClosed", err)
	}
}

// Routes pass through to the forwarder: each request goes to its rule's
// upstream; with no Forward, one that matches no rule gets a 404.
func TestRoutes(t *testing.T) {
	s := newSetup(t)
	named := func(name string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name+" "+r.URL.Path)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := named("a"), named("b")
	cfg := s.config(t, "")
	cfg.Routes = []forward.Rule{
		{Prefix: "/a", Upstream: a.URL},
		{Prefix: "/b", Upstream: b.URL, Strip: true},
	}
	ag, _ := harness.StartAgent(t, cfg)
	s.waitRouted(t, ag)
	for path, want := range map[string]string{"/a/x": "a /a/x", "/b/y": "b /y"} {
		if got := recv(t, s.publicGet(path), path); got.code != http.StatusOK || got.body != want {
			t.Errorf("%s: %d %q %v, want %q", path, got.code, got.body, got.err, want)
		}
	}
	got := recv(t, s.publicGet("/c"), "/c")
	if got.code != http.StatusNotFound || !strings.Contains(got.body, `"error":"no route for 127.0.0.1/c"`) {
		t.Errorf("/c: %d %q %v, want 404 no route", got.code, got.body, got.err)
	}
	if started := startLines(s.logs); len(started) != 1 || !strings.Contains(started[0], "forward=none") ||
		!strings.Contains(started[0], `routes="/a=`+a.URL+" /b="+b.URL+`,strip"`) || !strings.Contains(started[0], "proxy=direct") {
		t.Errorf("start line %q: want forward=none, the routes and proxy=direct", started)
	}
}

// The start line names the proxy without its password.
func TestStartLogRedactsTheProxyPassword(t *testing.T) {
	logs := &harness.LogBuffer{}
	log := logrus.New()
	log.SetOutput(logs)
	cfg := agent.DefaultConfig()
	cfg.Tunnel.RelayURL = "ws://127.0.0.1:1/tunnel"
	cfg.Tunnel.APIKey = testKey
	proxy, err := supervisor.ParseProxy("http://user:proxy-password@127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tunnel.Proxy = proxy
	cfg.Routes = []forward.Rule{{Prefix: "/v1", Upstream: "http://user:route-password@127.0.0.1:3"}}
	cfg.Logger = log
	a, err := agent.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	started := startLines(logs)
	if len(started) != 1 || !strings.Contains(started[0], "proxy=\"http://user:xxxxx@127.0.0.1:2\"") ||
		!strings.Contains(started[0], "routes=\"/v1=http://user:xxxxx@127.0.0.1:3\"") {
		t.Errorf("start line %q: want the proxy and the route, passwords redacted", started)
	}
	for _, secret := range []string{"proxy-password", "route-password"} {
		if logs.Count(secret) > 0 {
			t.Errorf("%q appears in the logs:\n%s", secret, logs)
		}
	}
}

func TestValidateRoutesAndProxy(t *testing.T) {
	valid := func() agent.Config {
		cfg := agent.DefaultConfig()
		cfg.Tunnel.RelayURL = "wss://relay.example/tunnel"
		cfg.Tunnel.APIKey = testKey
		return cfg
	}
	proxyOf := func(raw string) func(*http.Request) (*url.URL, error) {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return http.ProxyURL(u)
	}
	for _, tc := range []struct {
		name   string
		change func(*agent.Config)
		text   string // "" for valid
	}{
		{"routes and no forward", func(c *agent.Config) {
			c.Forward, c.Routes = "", []forward.Rule{{Prefix: "/", Upstream: "unix:/run/x.sock"}}
		}, ""},
		{"routes and forward", func(c *agent.Config) { c.Routes = []forward.Rule{{Prefix: "/v1", Upstream: "ws://127.0.0.1:1"}} }, ""},
		{"bad route", func(c *agent.Config) {
			c.Routes = []forward.Rule{{Prefix: "/v1", Upstream: "http://127.0.0.1:1", Insecure: true}}
		}, `route "/v1=http://127.0.0.1:1,insecure": option insecure applies to https://`},
		{"http proxy", func(c *agent.Config) { c.Tunnel.Proxy = proxyOf("http://u:p@proxy:3128") }, ""},
		{"socks5 proxy", func(c *agent.Config) { c.Tunnel.Proxy = proxyOf("socks5://proxy:1080") }, ""},
		{"direct", func(c *agent.Config) { c.Tunnel.Proxy = supervisor.DirectProxy }, ""},
		{"https proxy", func(c *agent.Config) { c.Tunnel.Proxy = proxyOf("https://u:secret-pw@proxy:3128") },
			"proxy https://u:xxxxx@proxy:3128: only http:// and socks5:// proxies are supported"},
		{"proxy without host", func(c *agent.Config) { c.Tunnel.Proxy = proxyOf("http://") }, "has no host"},
		{"failing proxy setting", func(c *agent.Config) {
			c.Tunnel.Proxy = func(*http.Request) (*url.URL, error) {
				return nil, errors.New("invalid proxy address http://u:secret-pw@x y")
			}
		}, "the proxy for relay URL 0 is not a valid URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.change(&cfg)
			err := cfg.Validate()
			if tc.text == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, agent.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.text) || strings.Contains(err.Error(), "secret-pw") {
				t.Fatalf("Validate = %v, want ErrInvalidConfig saying %q, without the password", err, tc.text)
			}
		})
	}
}
