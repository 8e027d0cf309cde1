package fault

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/internal/faultproxy"
	"github.com/enhanced-tunnel/tunnel/internal/ttsdemo"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

const (
	key = "fault-key-3b8e61d07a9c"
	// patience bounds every wait: far beyond what any step needs.
	patience = 20 * time.Second

	heartbeatInterval = 200 * time.Millisecond
	// heartbeatTimeout is short enough for a blackhole to be caught in about
	// a second, and long enough that a loaded machine running the race
	// detector does not make a healthy connection look stale.
	heartbeatTimeout = time.Second
	retryDelay       = 300 * time.Millisecond
)

// staleLog keeps the times of the stale connections the tunnel's heartbeat
// caught (from the seed's log line).
type staleLog struct {
	mu     sync.Mutex
	stales []time.Time
}

func (l *staleLog) Levels() []logrus.Level { return logrus.AllLevels }

func (l *staleLog) Fire(e *logrus.Entry) error {
	if strings.HasPrefix(e.Message, "Stale connection detected") {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.stales = append(l.stales, e.Time)
	}
	return nil
}

func (l *staleLog) times() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.stales...)
}

// rig is one test's setting: the demo upstream, a relay, the fault proxy in
// front of the relay, and a supervisor that reaches the relay through the
// proxy and forwards to the upstream.
type rig struct {
	t        *testing.T
	upstream *httptest.Server
	relayCfg relay.Config
	relay    *relay.Relay
	proxy    *faultproxy.Proxy
	tunnel   *supervisor.Tunnel
	states   *harness.States
	stale    *staleLog
	client   *http.Client
	// held hears of each /hold request reaching the upstream, which then
	// answers only when its request is cancelled.
	held chan struct{}
}

// newRig starts the rig; each option adjusts the supervisor's config.
func newRig(t *testing.T, options ...func(*supervisor.Config)) *rig {
	t.Helper()
	r := &rig{
		t:      t,
		stale:  &staleLog{},
		client: &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}},
		held:   make(chan struct{}, 16),
	}
	t.Cleanup(r.client.CloseIdleConnections)

	mux := http.NewServeMux()
	mux.Handle("/", ttsdemo.NewHandler(nil))
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, req *http.Request) {
		n, _ := strconv.Atoi(req.URL.Query().Get("n"))
		_, _ = w.Write(bytes.Repeat([]byte{0x5a}, n))
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, req *http.Request) {
		r.held <- struct{}{}
		<-req.Context().Done()
	})
	r.upstream = httptest.NewServer(mux)
	t.Cleanup(r.upstream.Close)

	r.relayCfg = relay.DefaultConfig()
	r.relayCfg.Listen, r.relayCfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	r.relayCfg.AuthToken = key
	// Without holding, a request while the tunnel is down is answered at
	// once: the faults below are about the answers, not about the wait.
	r.relayCfg.HoldTimeout = 0
	r.startRelay()
	t.Cleanup(r.closeRelay)

	proxy, err := faultproxy.Start(r.relay.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r.proxy = proxy
	t.Cleanup(func() {
		if err := proxy.Close(); err != nil {
			t.Errorf("proxy Close: %v", err)
		}
	})

	log := logrus.New()
	log.SetOutput(io.Discard)
	log.AddHook(r.stale)
	cfg := supervisor.DefaultConfig()
	cfg.Connections = 1 // the one-connection behaviour under test
	cfg.RelayURL = "ws://" + proxy.Addr().String() + "/tunnel"
	cfg.APIKey = key
	cfg.HeartbeatInterval = heartbeatInterval
	cfg.HeartbeatTimeout = heartbeatTimeout
	cfg.RetryDelay = retryDelay
	cfg.AuthRetryDelay = retryDelay
	// An attempt into a blackhole gives up after a second, not ten.
	cfg.ConnectTimeout = time.Second
	cfg.BreakerRecovery = time.Second
	cfg.CloseTimeout = time.Second
	cfg.Logger = log
	cfg.OnMessage = harness.Forward(t, r.upstream.URL, nil)
	for _, option := range options {
		option(&cfg)
	}
	r.tunnel, r.states = harness.StartTunnel(t, cfg)
	return r
}

// startRelay starts the relay on relayCfg.Listen: a free port the first
// time, the same port again after closeRelay.
func (r *rig) startRelay() {
	r.t.Helper()
	rl, err := relay.Start(r.relayCfg)
	if err != nil {
		r.t.Fatalf("relay.Start: %v", err)
	}
	r.relay = rl
	r.relayCfg.Listen = rl.Addr().String()
}

func (r *rig) closeRelay() { harness.CloseRelay(r.t, r.relay) }

func (r *rig) status() messages.Status { return r.tunnel.Status() }

func (r *rig) failures(typ messages.FailureType) int {
	return r.status().Health.FailureTypes[typ.String()]
}

// waitAuthenticated waits for the n-th AUTHENTICATED since the start, and
// for the relay to route public requests to it.
func (r *rig) waitAuthenticated(n int) {
	r.t.Helper()
	harness.Eventually(r.t, patience, fmt.Sprintf("AUTHENTICATED number %d", n), func() bool {
		return r.states.Count(messages.Authenticated) >= n && r.status().State == messages.Authenticated
	})
	harness.Eventually(r.t, patience, "the relay to list the tunnel", func() bool { return len(r.relayTunnels()) == 1 })
}

// relayTunnels lists the tunnels the relay routes to, from its admin
// /health; nil when it does not answer.
func (r *rig) relayTunnels() []string {
	resp, err := r.client.Get(harness.AdminURL(r.relay) + "/health")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var h struct{ Tunnels []string }
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return nil
	}
	return h.Tunnels
}

// publicURL is the relay's public address for path, for the tunnel "default".
func (r *rig) publicURL(path string) string { return "http://" + r.relay.Addr().String() + path }

// expectSpeech sends a TTS request through the relay and checks that a
// whole WAV comes back.
func (r *rig) expectSpeech(text string) {
	r.t.Helper()
	body, _ := json.Marshal(map[string]string{"text": text})
	resp, err := r.client.Post(r.publicURL("/v1/tts"), "application/json", bytes.NewReader(body))
	if err != nil {
		r.t.Fatalf("POST /v1/tts: %v", err)
	}
	defer resp.Body.Close()
	wav, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("reading the WAV: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("POST /v1/tts: %d %s", resp.StatusCode, wav)
	}
	if len(wav) < 44 || int(binary.LittleEndian.Uint32(wav[40:44]))+44 != len(wav) {
		r.t.Fatalf("WAV of %d bytes does not match its header", len(wav))
	}
}
