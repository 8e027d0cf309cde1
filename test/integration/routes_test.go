package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/supervisor/agent"
	"github.com/enhanced-tunnel/tunnel/supervisor/forward"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// service is one local service behind the supervisor: it answers with its
// name and the request URI it got, and remembers every URI.
type service struct {
	name string
	mu   sync.Mutex
	seen []string
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.seen = append(s.seen, r.RequestURI)
	s.mu.Unlock()
	fmt.Fprintf(w, "%s %s", s.name, r.RequestURI)
}

func (s *service) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// startUnixService serves s on a Unix socket and returns the socket's path.
func startUnixService(t *testing.T, s http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "routes") // short: socket paths are limited to about 100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "svc.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: patience}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// publicRequest sends method path to the relay's public front with the
// given Host, and returns the answer.
func (w *world) publicRequest(addr, host, path string) (int, string, http.Header) {
	w.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader("body"))
	if err != nil {
		w.t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, body, err := w.do(req)
	if err != nil {
		w.t.Fatalf("POST %s (Host %q): %v", path, host, err)
	}
	return resp.StatusCode, string(body), resp.Header
}

// One supervisor, several local services: each request reaches the service
// of the first rule that matches it, with the path that rule sends.
func TestRoutesSendEachRequestToItsService(t *testing.T) {
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", nil)
	tts, voices, sockSvc, catchAll := &service{name: "tts"}, &service{name: "voices"}, &service{name: "unix"}, &service{name: "catch-all"}
	ttsUp, voicesUp, catchUp := w.startUpstream(tts), w.startUpstream(voices), w.startUpstream(catchAll)
	sock := startUnixService(t, sockSvc)

	rules, err := forward.ParseRules(strings.Join([]string{
		"api.example.com/=" + voicesUp.URL,
		"/v1/tts=" + ttsUp.URL,
		"/voices/=" + voicesUp.URL + ",strip",
		"/sock=unix:" + sock,
	}, " "))
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Tunnel.RelayURL = harness.TunnelURL(r)
	cfg.Tunnel.APIKey = testKey
	cfg.Tunnel.Connections = 1
	cfg.Tunnel.CloseTimeout = 2 * time.Second
	cfg.Forward = catchUp.URL
	cfg.Routes = rules
	cfg.Logger = newLogger(w.logs)
	a, _ := harness.StartAgent(t, cfg)
	harness.Eventually(t, patience, "the tunnel to be connected", func() bool { return a.Tunnel().Status().Connected })
	w.waitConnected(&tunnel{Tunnel: a.Tunnel()}, r)

	for _, tc := range []struct {
		host, path, want string
	}{
		{"", "/v1/tts?voice=a&x=%20y", "tts /v1/tts?voice=a&x=%20y"},
		{"", "/v1/tts/stream", "tts /v1/tts/stream"},
		{"", "/voices/en/list?all=1", "voices /en/list?all=1"},
		{"", "/voices/", "voices /"},
		{"", "/sock/status?q=1", "unix /sock/status?q=1"},
		{"", "/v1/ttsx", "catch-all /v1/ttsx"},
		{"", "/", "catch-all /"},
		// The host rule comes first: it wins over /v1/tts for its host.
		{"API.Example.com:8080", "/v1/tts", "voices /v1/tts"},
		{"www.example.com", "/v1/tts", "tts /v1/tts"},
	} {
		code, body, _ := w.publicRequest(r.Addr().String(), tc.host, tc.path)
		if code != http.StatusOK || body != tc.want {
			t.Errorf("POST %s (Host %q): %d %q, want 200 %q", tc.path, tc.host, code, body, tc.want)
		}
	}
	// The relay's path to a named tunnel is its own: /t/default/ is cut
	// before the rules see the path.
	if code, body, _ := w.publicRequest(r.Addr().String(), "", "/t/default/voices/x"); code != http.StatusOK || body != "voices /x" {
		t.Errorf("through /t/default/: %d %q", code, body)
	}
}

// The binary, with rules from TUNNEL_ROUTE and no -forward: a request no
// rule matches is answered 404 JSON by the supervisor and reaches no
// service; a host rule matches the public Host.
func TestSupervisorBinaryRoutesAndNoRouteIs404(t *testing.T) {
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", nil)
	tts, api := &service{name: "tts"}, &service{name: "api"}
	ttsUp := w.startUpstream(tts)
	sock := startUnixService(t, api)

	sup := startBinary(t, "tunnel-supervisor",
		[]string{"-relay-url", harness.TunnelURL(r), "-listen", "127.0.0.1:0", "-connections", "1",
			"-heartbeat-interval", "200ms", "-retry-delay", "200ms", "-log-format", "json", "-log-level", "debug"},
		[]string{"TUNNEL_API_KEY=" + testKey,
			"TUNNEL_ROUTE=/v1/tts=" + ttsUp.URL + "; *.api.example/=unix:" + sock + ",strip"})
	if got := sup.logField(t, "Supervisor started", "forward"); got != "none" {
		t.Errorf("start line: forward=%q, want none", got)
	}
	if got, want := sup.logField(t, "Supervisor started", "routes"), "/v1/tts="+ttsUp.URL+" *.api.example/=unix:"+sock+",strip"; got != want {
		t.Errorf("start line: routes=%q, want %q", got, want)
	}
	supAddr := sup.logField(t, "Supervisor started", "listen")
	harness.Eventually(t, patience, "the supervisor's /health to say connected", func() bool {
		code, _ := w.get("http://" + supAddr + "/health")
		return code == http.StatusOK
	})

	if code, body, _ := w.publicRequest(r.Addr().String(), "", "/v1/tts?x=1"); code != http.StatusOK || body != "tts /v1/tts?x=1" {
		t.Errorf("/v1/tts: %d %q", code, body)
	}
	if code, body, _ := w.publicRequest(r.Addr().String(), "eu.api.example", "/status?x=1"); code != http.StatusOK || body != "api /status?x=1" {
		t.Errorf("/status for eu.api.example: %d %q, want the unix service", code, body)
	}
	// The first rule that matches wins, whatever the host.
	if code, body, _ := w.publicRequest(r.Addr().String(), "eu.api.example", "/v1/tts"); code != http.StatusOK || body != "tts /v1/tts" {
		t.Errorf("/v1/tts for eu.api.example: %d %q, want the first rule's service", code, body)
	}

	before := tts.count() + api.count()
	code, body, h := w.publicRequest(r.Addr().String(), "www.example.com", "/v2/tts?token=abc")
	var answer struct{ Error string }
	if code != http.StatusNotFound || h.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &answer) != nil ||
		answer.Error != "no route for www.example.com/v2/tts" {
		t.Errorf("a request no rule matches: %d %s %q, want 404 JSON no route", code, h.Get("Content-Type"), body)
	}
	if after := tts.count() + api.count(); after != before {
		t.Errorf("the unrouted request reached a service (%d requests, was %d)", after, before)
	}
	sup.stop(t, syscall.SIGTERM)
}
