package supervisor_test

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

const cleartextWarning = "Relay URL is ws:// to a host that is not loopback: the API key travels in clear; use wss://"

// TestStartWarnsOnceWhenTheKeyTravelsInClear starts tunnels whose relay
// cannot be reached, since the dialer refuses at once without touching the
// network, lets each fail twice, and stops it. Exactly one warning, naming
// the relay host, is logged for a ws:// relay that is not loopback: at
// Start, not on every attempt. None is logged for loopback or wss://, and
// the API key appears nowhere in the log. The synctest bubble makes the
// retry delay fake time and fails the test if any goroutine outlives Stop.
func TestStartWarnsOnceWhenTheKeyTravelsInClear(t *testing.T) {
	const key = "s3cret-api-key-never-logged"
	for _, tc := range []struct {
		name     string
		url      string
		dialed   string // the address the dialer is asked for
		warnings int
	}{
		{"ws to a TEST-NET host", "ws://192.0.2.1:8080/tunnel", "192.0.2.1:8080", 1},
		{"ws to loopback", "ws://127.0.0.1:8080/tunnel", "127.0.0.1:8080", 0},
		{"ws to localhost", "ws://localhost:8080/tunnel", "localhost:8080", 0},
		{"ws to ::1", "ws://[::1]:8080/tunnel", "[::1]:8080", 0},
		{"wss to a TEST-NET host", "wss://192.0.2.1:8443/tunnel", "192.0.2.1:8443", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				logs := &harness.LogBuffer{}
				logger := logrus.New()
				logger.SetOutput(logs)
				logger.SetFormatter(&logrus.JSONFormatter{})

				var mu sync.Mutex
				var dialed []string
				states := make(chan messages.StateChanged, 64)
				cfg := supervisor.DefaultConfig()
				cfg.RelayURL = tc.url
				cfg.APIKey = key
				cfg.Logger = logger
				cfg.OnStateChange = func(s messages.StateChanged) { states <- s }
				cfg.NetDialContext = func(_ context.Context, network, addr string) (net.Conn, error) {
					mu.Lock()
					dialed = append(dialed, addr)
					mu.Unlock()
					return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
				}
				tun, err := supervisor.Start(nil, cfg)
				if err != nil {
					t.Fatal(err)
				}
				// Stops the tunnel if the test fails before it does; Stop
				// is idempotent, so this is a no-op otherwise.
				t.Cleanup(func() { _ = tun.Stop(context.Background()) })

				// Two failed attempts, ten seconds of fake time apart: a
				// warning logged per attempt would show up twice.
				for failures := 0; failures < 2; {
					select {
					case s := <-states:
						if s.State == messages.Disconnected {
							failures++
						}
					case <-time.After(time.Hour):
						t.Fatal("no two failed attempts within an hour")
					}
				}
				if err := tun.Stop(t.Context()); err != nil {
					t.Fatalf("Stop: %v", err)
				}
				synctest.Wait()
				time.Sleep(time.Second) // fake time: lets protoactor's dead-letter throttle run out

				mu.Lock()
				for _, addr := range dialed {
					if addr != tc.dialed {
						t.Errorf("dialed %q, want %q", addr, tc.dialed)
					}
				}
				if len(dialed) < 2 {
					t.Errorf("dialed %d times, want at least 2", len(dialed))
				}
				mu.Unlock()

				text := logs.String()
				if strings.Contains(text, key) {
					t.Errorf("the API key is in the log:\n%s", text)
				}
				warnings := 0
				for line := range strings.Lines(text) {
					var entry map[string]any
					if err := json.Unmarshal([]byte(line), &entry); err != nil {
						t.Fatalf("log line %q: %v", line, err)
					}
					if entry["msg"] != cleartextWarning {
						continue
					}
					warnings++
					if entry["level"] != "warning" {
						t.Errorf("cleartext warning logged at level %v, want warning", entry["level"])
					}
					// The host, so that an operator sees which relay it is.
					if host, _ := entry["relay_host"].(string); !strings.HasPrefix(host, "192.0.2.1") {
						t.Errorf("relay_host = %v, want the relay's host 192.0.2.1", entry["relay_host"])
					}
				}
				if warnings != tc.warnings {
					t.Errorf("cleartext warning logged %d times, want %d; log:\n%s", warnings, tc.warnings, text)
				}
			})
		})
	}
}
