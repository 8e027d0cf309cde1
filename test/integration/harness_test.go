package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

const (
	// testKey is the key of the tunnel "default"; long and odd enough that
	// finding it in a log cannot be a coincidence.
	testKey = "itest-key-7d3f9a1c5e2b4806f1a9"
	// patience bounds every wait: far beyond what any step needs, so that
	// only a real failure reaches it.
	patience = 20 * time.Second
)

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
	logs    *harness.LogBuffer
	client  *http.Client
	secrets []string
}

func newWorld(t *testing.T) *world {
	w := &world{
		t:    t,
		logs: &harness.LogBuffer{},
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
	return harness.StartRelay(w.t, testKey, newLogger(w.logs), func(c *relay.Config) {
		c.Listen = listen
		if change != nil {
			change(c)
		}
	})
}

func publicURL(r *relay.Relay, path string) string { return "http://" + r.Addr().String() + path }

// startUpstream runs h as the local service the supervisor forwards to.
func (w *world) startUpstream(h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	w.t.Cleanup(srv.Close)
	return srv
}

// tunnel is a supervisor that forwards to an upstream, as the binary wires it.
type tunnel struct {
	*supervisor.Tunnel
	states *harness.States
}

// startTunnel starts a supervisor for relayURL forwarding to upstream, with
// the test delays below unless change says otherwise.
func (w *world) startTunnel(relayURL, upstream string, change func(*supervisor.Config)) *tunnel {
	w.t.Helper()
	cfg := supervisor.DefaultConfig()
	cfg.Connections = 1 // the one-connection behaviour under test
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
	cfg.OnMessage = harness.Forward(w.t, upstream, newLogger(w.logs))
	if change != nil {
		change(&cfg)
	}
	if cfg.APIKey != testKey {
		w.secrets = append(w.secrets, cfg.APIKey)
	}
	t, states := harness.StartTunnel(w.t, cfg)
	return &tunnel{Tunnel: t, states: states}
}

// waitState waits until the tunnel's status says s.
func (tn *tunnel) waitState(t *testing.T, s messages.State) {
	t.Helper()
	harness.Eventually(t, patience, "state "+s.String(), func() bool { return tn.Status().State == s })
}

// waitConnected waits until the tunnel is authenticated and the relay
// routes the tunnel "default" to a session.
func (w *world) waitConnected(tn *tunnel, r *relay.Relay) {
	w.t.Helper()
	tn.waitState(w.t, messages.Authenticated)
	harness.Eventually(w.t, patience, "the relay to list the tunnel", func() bool {
		var h struct{ Tunnels []string }
		code, body := w.get(harness.AdminURL(r) + "/health")
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
	tn := w.startTunnel(harness.TunnelURL(r), up.URL, changeTunnel)
	w.waitConnected(tn, r)
	return w, r, tn
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
