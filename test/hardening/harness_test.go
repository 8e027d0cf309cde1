package hardening_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
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

// wait bounds every wait of these tests; over real sockets they assert
// outcomes, never timings.
const wait = 10 * time.Second

// Keys of the tunnels every test relay knows. Long and distinct, so that a
// search for one in a log cannot match anything else.
const (
	defaultKey = "hardening-default-key-5b0e7c1d9a"
	keyB       = "hardening-key-of-b-c4f2a86e13"
	wrongKey   = "hardening-wrong-key-2d7f90b5e4"
)

// fastRetry makes a tunnel retry at once after any failure and never open
// its breaker, so that a test sees many attempts in little time.
func fastRetry(c *supervisor.Config) {
	c.RetryDelay, c.AuthRetryDelay = 10*time.Millisecond, 10*time.Millisecond
	c.BreakerThreshold = 1 << 20
}

func startRelay(t *testing.T, change func(*relay.Config)) *relay.Relay {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.AuthToken = defaultKey
	cfg.Keys = map[string]string{"b": keyB}
	if change != nil {
		change(&cfg)
	}
	r, err := relay.Start(cfg)
	if err != nil {
		t.Fatalf("relay.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("relay Close: %v", err)
		}
	})
	return r
}

func tunnelURL(r *relay.Relay) string { return "ws://" + r.Addr().String() + "/tunnel" }
func publicURL(r *relay.Relay) string { return "http://" + r.Addr().String() }

// tunnel is a supervisor library instance and the state changes it reported.
type tunnel struct {
	*supervisor.Tunnel
	t      *testing.T
	states chan messages.StateChanged
}

// startTunnel runs a tunnel for the relay at url with key, forwarding
// requests to upstream (none when empty).
func startTunnel(t *testing.T, url, key, upstream string, change func(*supervisor.Config)) *tunnel {
	t.Helper()
	tu := &tunnel{t: t, states: make(chan messages.StateChanged, 4096)}
	cfg := supervisor.DefaultConfig()
	cfg.RelayURL, cfg.APIKey = url, key
	cfg.OnStateChange = func(s messages.StateChanged) {
		select {
		case tu.states <- s:
		default: // a test that stopped listening must not stall the tunnel
		}
	}
	if upstream != "" {
		fwd, err := forward.New(forward.Config{Upstream: upstream})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fwd.Close)
		cfg.OnMessage = func(ctx context.Context, tun *supervisor.Tunnel, msg *messages.TunnelMessage) {
			fwd.Handle(ctx, tun, msg)
		}
	}
	if change != nil {
		change(&cfg)
	}
	st, err := supervisor.Start(nil, cfg)
	if err != nil {
		t.Fatalf("supervisor.Start: %v", err)
	}
	tu.Tunnel = st
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := st.Stop(ctx); err != nil {
			t.Errorf("tunnel Stop: %v", err)
		}
	})
	return tu
}

// await returns the next state change to want, skipping others.
func (tu *tunnel) await(want messages.State) messages.StateChanged {
	tu.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case s := <-tu.states:
			if s.State == want {
				return s
			}
		case <-deadline:
			st := tu.Status()
			tu.t.Fatalf("tunnel never reached %s; it is %s, last failure %s: %s", want, st.State, st.Health.LastFailureType, st.Health.LastError)
		}
	}
}

// failure waits for the tunnel's next failure and returns the status once
// the ledger has it: a failure reaches the ledger before the state change
// of the attempt that follows it.
func (tu *tunnel) failure() messages.Status {
	tu.t.Helper()
	tu.await(messages.Disconnected)
	tu.await(messages.Connecting)
	return tu.Status()
}

// eventually polls cond until it holds, failing the test after wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true, Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

// get fetches url and returns its status and body.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// errorText is the text of a JSON error body, {"error":"..."}.
func errorText(t *testing.T, body string) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// upstream serves h on 127.0.0.1 for the test.
func upstream(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		_ = srv.Serve(ln)
		close(done)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// hello is an upstream that answers every request with 200 "hello".
func hello(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") }

// logBuffer collects a logger's formatted output; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count is how many lines hold s.
func (b *logBuffer) count(s string) int {
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// debugLogger logs everything, as JSON, into a buffer.
func debugLogger() (*logrus.Logger, *logBuffer) {
	buf := &logBuffer{}
	l := logrus.New()
	l.SetOutput(buf)
	l.SetLevel(logrus.DebugLevel)
	l.SetFormatter(&logrus.JSONFormatter{})
	return l, buf
}
