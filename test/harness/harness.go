package harness

import (
	"bytes"
	"context"
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
)

// StopTimeout bounds the close of a relay and the stop of a tunnel at the
// end of a test: far beyond what either needs, so that only a real hang
// reaches it.
const StopTimeout = 20 * time.Second

// StartRelay runs a relay on a free port of 127.0.0.1, its admin endpoints
// on another, that knows key for the tunnel "default" and logs to log (nil
// discards). change, if not nil, adjusts the config last. The relay is
// closed when the test ends; closing it earlier is fine.
func StartRelay(t testing.TB, key string, log *logrus.Logger, change func(*relay.Config)) *relay.Relay {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.AuthToken = key
	cfg.Logger = log
	if change != nil {
		change(&cfg)
	}
	r, err := relay.Start(cfg)
	if err != nil {
		t.Fatalf("relay.Start: %v", err)
	}
	t.Cleanup(func() { CloseRelay(t, r) })
	return r
}

// CloseRelay closes r within StopTimeout, failing the test otherwise.
func CloseRelay(t testing.TB, r *relay.Relay) {
	ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Errorf("relay Close: %v", err)
	}
}

// TunnelURL is the WebSocket address supervisors dial on r.
func TunnelURL(r *relay.Relay) string { return "ws://" + r.Addr().String() + "/tunnel" }

// AdminURL is the base of r's admin endpoints: /health, /metrics.
func AdminURL(r *relay.Relay) string { return "http://" + r.AdminAddr().String() }

// Forward returns a supervisor OnMessage that forwards requests to the
// HTTP service at upstream, logging to log (nil discards). The forwarder
// is closed when the test ends, after any tunnel started later has
// stopped.
func Forward(t testing.TB, upstream string, log *logrus.Logger) func(context.Context, *supervisor.Tunnel, *messages.TunnelMessage) {
	t.Helper()
	fw, err := forward.New(forward.Config{Upstream: upstream, Logger: log})
	if err != nil {
		t.Fatalf("forward.New: %v", err)
	}
	t.Cleanup(fw.Close)
	return func(ctx context.Context, tun *supervisor.Tunnel, msg *messages.TunnelMessage) {
		fw.Handle(ctx, tun, msg)
	}
}

// StartTunnel starts a supervisor with cfg, recording every state change it
// reports (cfg.OnStateChange is replaced), and stops it when the test ends.
func StartTunnel(t testing.TB, cfg supervisor.Config) (*supervisor.Tunnel, *States) {
	t.Helper()
	states := &States{}
	cfg.OnStateChange = states.Record
	tn, err := supervisor.Start(nil, cfg)
	if err != nil {
		t.Fatalf("supervisor.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
		defer cancel()
		if err := tn.Stop(ctx); err != nil {
			t.Errorf("tunnel Stop: %v", err)
		}
	})
	return tn, states
}

// StartAgent starts the standalone agent (supervisor/agent: tunnel,
// forwarder, HTTP endpoints) with cfg, recording every state change its
// tunnel reports (cfg.Tunnel.OnStateChange is replaced), and shuts it down
// when the test ends, draining for at most StopTimeout. Shutdown is
// idempotent: the test may shut the agent down earlier.
func StartAgent(t testing.TB, cfg agent.Config) (*agent.Agent, *States) {
	t.Helper()
	states := &States{}
	cfg.Tunnel.OnStateChange = states.Record
	a, err := agent.Start(cfg)
	if err != nil {
		t.Fatalf("agent.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("agent Shutdown: %v", err)
		}
	})
	return a, states
}

// States records the state changes a tunnel reports, in order; safe for
// concurrent use.
type States struct {
	mu      sync.Mutex
	changes []messages.StateChanged
}

// Record is a supervisor OnStateChange.
func (s *States) Record(c messages.StateChanged) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes = append(s.changes, c)
}

// All returns the changes so far.
func (s *States) All() []messages.StateChanged {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.changes)
}

// Count is how many changes so far were to state.
func (s *States) Count(state messages.State) int {
	n := 0
	for _, c := range s.All() {
		if c.State == state {
			n++
		}
	}
	return n
}

// Eventually polls cond every 10 ms until it holds, or fails the test after
// timeout, saying what it waited for.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		<-tick.C
	}
}

// LogBuffer collects a logger's formatted output, to be read while the
// logger still writes; safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Count is how many lines hold s.
func (b *LogBuffer) Count(s string) int {
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}
