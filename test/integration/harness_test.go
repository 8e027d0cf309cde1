package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/forward"
)

const (
	// testKey is the key of the tunnel "default"; long and odd enough that
	// finding it in a log cannot be a coincidence.
	testKey = "itest-key-7d3f9a1c5e2b4806f1a9"
	// patience bounds every wait: far beyond what any step needs, so that
	// only a real failure reaches it.
	patience = 20 * time.Second
)

// eventually polls cond every 10 ms until it holds, or fails the test after
// limit, saying what it waited for.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", limit, what)
		}
		<-tick.C
	}
}

// logSink is a log destination shared by the relay and the supervisors of
// one test, read at the end to look for the key.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// newLogger logs everything, at the most verbose level, into sink: a key
// that slips into any log line at all is caught.
func newLogger(sink io.Writer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(sink)
	l.SetLevel(logrus.TraceLevel)
	return l
}

// world is one test's setting: the logs of everything it starts, a public
// HTTP client, and the clean-up that stops it all. Its last clean-up checks
// that no secret reached the logs.
type world struct {
	t       *testing.T
	logs    *logSink
	client  *http.Client
	secrets []string
}

func newWorld(t *testing.T) *world {
	w := &world{
		t:    t,
		logs: &logSink{},
		client: &http.Client{Transport: &http.Transport{
			DisableCompression:  true, // bodies compared byte for byte
			MaxIdleConnsPerHost: 256,
		}},
		secrets: []string{testKey},
	}
	t.Cleanup(func() {
		w.client.CloseIdleConnections()
		logs := w.logs.String()
		if t.Failed() {
			t.Logf("the last lines of the logs:\n%s", lastLines(logs, 100))
		}
		for _, line := range strings.Split(logs, "\n") {
			for _, s := range w.secrets {
				if strings.Contains(line, s) {
					t.Errorf("a key appears in the log line %s", line)
				}
			}
		}
	})
	return w
}

// startRelay runs a relay on listen ("127.0.0.1:0" for a free port) that
// knows testKey for the tunnel "default". Close may be called early; the
// clean-up closes it otherwise.
func (w *world) startRelay(listen string, change func(*relay.Config)) *relay.Relay {
	w.t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen = listen
	cfg.AuthToken = testKey
	cfg.Logger = newLogger(w.logs)
	if change != nil {
		change(&cfg)
	}
	r, err := relay.Start(cfg)
	if err != nil {
		w.t.Fatalf("relay.Start: %v", err)
	}
	w.t.Cleanup(func() { closeRelay(w.t, r) })
	return r
}

func closeRelay(t *testing.T, r *relay.Relay) {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Errorf("relay Close: %v", err)
	}
}

func tunnelURL(r *relay.Relay) string { return "ws://" + r.Addr().String() + "/tunnel" }

func publicURL(r *relay.Relay, path string) string { return "http://" + r.Addr().String() + path }

// startUpstream runs h as the local service the supervisor forwards to.
func (w *world) startUpstream(h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	w.t.Cleanup(srv.Close)
	return srv
}

// stateLog records every state change a tunnel reports, in order.
type stateLog struct {
	mu      sync.Mutex
	changes []messages.StateChanged
}

func (l *stateLog) add(s messages.StateChanged) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changes = append(l.changes, s)
}

func (l *stateLog) all() []messages.StateChanged {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.changes)
}

func (l *stateLog) count(s messages.State) int {
	n := 0
	for _, c := range l.all() {
		if c.State == s {
			n++
		}
	}
	return n
}

// tunnel is a supervisor that forwards to an upstream, as the binary wires it.
type tunnel struct {
	*supervisor.Tunnel
	states *stateLog
}

// startTunnel starts a supervisor for relayURL forwarding to upstream, with
// the test delays below unless change says otherwise.
func (w *world) startTunnel(relayURL, upstream string, change func(*supervisor.Config)) *tunnel {
	w.t.Helper()
	fw, err := forward.New(forward.Config{Upstream: upstream, Logger: newLogger(w.logs)})
	if err != nil {
		w.t.Fatalf("forward.New: %v", err)
	}
	states := &stateLog{}
	cfg := supervisor.DefaultConfig()
	cfg.RelayURL = relayURL
	cfg.APIKey = testKey
	cfg.HeartbeatInterval = 200 * time.Millisecond
	// Generous: a busy machine must not make a healthy link look stale.
	cfg.HeartbeatTimeout = 10 * time.Second
	cfg.ConnectTimeout = 5 * time.Second
	cfg.RetryDelay = 200 * time.Millisecond
	cfg.AuthRetryDelay = 300 * time.Millisecond
	cfg.BreakerRecovery = time.Second
	cfg.CloseTimeout = 2 * time.Second
	cfg.Logger = newLogger(w.logs)
	cfg.OnStateChange = states.add
	cfg.OnMessage = func(ctx context.Context, t *supervisor.Tunnel, msg *messages.TunnelMessage) {
		fw.Handle(ctx, t, msg)
	}
	if change != nil {
		change(&cfg)
	}
	if cfg.APIKey != testKey {
		w.secrets = append(w.secrets, cfg.APIKey)
	}
	t, err := supervisor.Start(nil, cfg)
	if err != nil {
		w.t.Fatalf("supervisor.Start: %v", err)
	}
	w.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		if err := t.Stop(ctx); err != nil {
			w.t.Errorf("tunnel Stop: %v", err)
		}
		fw.Close()
	})
	return &tunnel{Tunnel: t, states: states}
}

// waitState waits until the tunnel's status says s.
func (tn *tunnel) waitState(t *testing.T, s messages.State) {
	t.Helper()
	eventually(t, patience, "state "+s.String(), func() bool { return tn.Status().State == s })
}

// waitConnected waits until the tunnel is authenticated and the relay
// routes the tunnel "default" to a session.
func (w *world) waitConnected(tn *tunnel, r *relay.Relay) {
	w.t.Helper()
	tn.waitState(w.t, messages.Authenticated)
	eventually(w.t, patience, "the relay to list the tunnel", func() bool {
		var h struct{ Tunnels []string }
		code, body := w.get(publicURL(r, "/health"))
		return code == http.StatusOK && json.Unmarshal(body, &h) == nil && slices.Contains(h.Tunnels, "default")
	})
}

// do sends req with the world's client and reads the whole answer.
func (w *world) do(req *http.Request) (*http.Response, []byte, error) {
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// get is a GET whose failure to get any answer fails the test.
func (w *world) get(url string) (int, []byte) {
	w.t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	resp, body, err := w.do(req)
	if err != nil {
		w.t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body
}

// connect starts a relay, the upstream h and a supervisor between them, and
// waits until public requests reach the upstream.
func connect(t *testing.T, h http.Handler, changeRelay func(*relay.Config), changeTunnel func(*supervisor.Config)) (*world, *relay.Relay, *tunnel) {
	t.Helper()
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", changeRelay)
	up := w.startUpstream(h)
	tn := w.startTunnel(tunnelURL(r), up.URL, changeTunnel)
	w.waitConnected(tn, r)
	return w, r, tn
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
