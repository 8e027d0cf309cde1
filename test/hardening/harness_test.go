package hardening_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
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
	return harness.StartRelay(t, defaultKey, nil, func(c *relay.Config) {
		c.Keys = map[string]string{"b": keyB}
		c.HoldTimeout = 0 // these tests look at a tunnel's absence, not at its return
		if change != nil {
			change(c)
		}
	})
}

func publicURL(r *relay.Relay) string { return "http://" + r.Addr().String() }

// tunnel is a supervisor library instance and the state changes it reported.
type tunnel struct {
	*supervisor.Tunnel
	t      *testing.T
	states *harness.States
	// seen is how many of the state changes await has gone past.
	seen int
}

// startTunnel runs a tunnel for the relay at url with key, forwarding
// requests to upstream (none when empty).
func startTunnel(t *testing.T, url, key, upstream string, change func(*supervisor.Config)) *tunnel {
	t.Helper()
	cfg := supervisor.DefaultConfig()
	cfg.Connections = 1 // the one-connection behaviour under test
	cfg.RelayURL, cfg.APIKey = url, key
	if upstream != "" {
		cfg.OnMessage = harness.Forward(t, upstream, nil)
	}
	if change != nil {
		change(&cfg)
	}
	st, states := harness.StartTunnel(t, cfg)
	return &tunnel{Tunnel: st, t: t, states: states}
}

// await returns the next state change to want, skipping others.
func (tu *tunnel) await(want messages.State) messages.StateChanged {
	tu.t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for {
		changes := tu.states.All()
		for tu.seen < len(changes) {
			s := changes[tu.seen]
			tu.seen++
			if s.State == want {
				return s
			}
		}
		select {
		case <-tick.C:
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

// debugLogger logs everything, as JSON, into a buffer.
func debugLogger() (*logrus.Logger, *harness.LogBuffer) {
	buf := &harness.LogBuffer{}
	l := logrus.New()
	l.SetOutput(buf)
	l.SetLevel(logrus.DebugLevel)
	l.SetFormatter(&logrus.JSONFormatter{})
	return l, buf
}
