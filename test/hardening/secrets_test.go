package hardening_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/forward"
	"github.com/enhanced-tunnel/tunnel/supervisor/httpapi"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// evidence gathers every text an operator or a client can see, to search
// them all for keys.
type evidence struct {
	t     *testing.T
	texts map[string]string
}

func (e *evidence) add(name, text string) {
	e.texts[fmt.Sprintf("%02d %s", len(e.texts), name)] = text
}

func (e *evidence) addJSON(name string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	e.add(name, string(b))
}

func (e *evidence) addError(name string, err error) {
	if err == nil {
		e.t.Fatalf("%s: no error", name)
	}
	e.add(name, err.Error())
}

// serve returns what h answers to GET path.
func serve(h http.Handler, path string) string {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Body.String()
}

// A whole session with both sides logging at debug level: wrong keys, a
// key for another tunnel, a good key, requests inline and streamed, a
// failing upstream, a reconnect and a stop. No key may appear in either
// log, in the status, in the metrics of either side, in any error text or
// in any answer to a public client.
func TestKeysNeverReachLogsStatusMetricsOrErrors(t *testing.T) {
	relayLogger, relayLogs := debugLogger()
	supLogger, supLogs := debugLogger()
	ev := &evidence{t: t, texts: map[string]string{}}
	r := startRelay(t, func(c *relay.Config) { c.Logger = relayLogger })
	c := httpClient(t)

	for _, bad := range []struct {
		name, key, tunnel string
	}{
		{"wrong key", wrongKey, ""},
		{"key of another tunnel", keyB, "default"},
		{"key for a tunnel that does not exist", defaultKey, "nonexistent"},
	} {
		tu := startTunnel(t, harness.TunnelURL(r), bad.key, "", func(c *supervisor.Config) {
			fastRetry(c)
			c.Tunnel, c.Logger = bad.tunnel, supLogger
			if c.Tunnel == "" {
				c.Tunnel = "default"
			}
		})
		st := tu.failure()
		if st.Health.LastFailureType != messages.AuthFailure.String() {
			t.Fatalf("%s: failure %s", bad.name, st.Health.LastFailureType)
		}
		ev.addJSON(bad.name+": status", st)
		if err := tu.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		ev.addError(bad.name+": Send after Stop", tu.Send(context.Background(), &messages.TunnelMessage{Type: messages.TypeRequest}))
	}

	metrics := httpapi.NewForwardMetrics()
	up := upstream(t, func(w http.ResponseWriter, req *http.Request) {
		switch {
		case req.URL.Path == "/fail":
			http.Error(w, "upstream failed", http.StatusInternalServerError)
		case req.Method == http.MethodPost:
			_, _ = io.Copy(w, req.Body) // no length: streamed back
		default:
			hello(w, req)
		}
	})
	fwd, err := forward.New(forward.Config{Upstream: up, Observer: metrics, Logger: supLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)
	tu := startTunnel(t, harness.TunnelURL(r), defaultKey, "", func(c *supervisor.Config) {
		c.Logger = supLogger
		c.OnMessage = func(ctx context.Context, tun *supervisor.Tunnel, msg *messages.TunnelMessage) {
			fwd.Handle(ctx, tun, msg)
		}
	})
	tu.await(messages.Authenticated)
	api := httpapi.NewHandler(httpapi.Config{Status: tu, Forward: metrics, InFlight: fwd.InFlight})

	public := func(method, path string, body []byte) {
		req, _ := http.NewRequest(method, publicURL(r)+path, bytes.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		_, _ = out.ReadFrom(resp.Body)
		resp.Body.Close()
		ev.add(fmt.Sprintf("public %s %s: %d", method, path, resp.StatusCode), fmt.Sprint(resp.Header)+out.String())
	}
	public(http.MethodGet, "/tts?voice=1", nil)
	public(http.MethodPost, "/tts", bytes.Repeat([]byte("audio"), 40000)) // streamed both ways
	public(http.MethodGet, "/fail", nil)
	public(http.MethodGet, "/t/b/no-such-tunnel-connected", nil)

	tu.Reconnect()
	tu.await(messages.Disconnected)
	tu.await(messages.Authenticated)
	public(http.MethodGet, "/after-reconnect", nil)

	ev.addJSON("status", tu.Status())
	for _, path := range []string{"/status", "/metrics", "/health"} {
		ev.add("supervisor "+path, serve(api, path))
	}
	for _, path := range []string{"/metrics", "/health"} {
		_, body := get(t, c, harness.AdminURL(r)+path)
		ev.add("relay "+path, body)
	}
	cfg := supervisor.DefaultConfig()
	cfg.Connections = 1 // the one-connection behaviour under test
	cfg.RelayURL, cfg.APIKey = "http://not-a-websocket", defaultKey
	_, err = supervisor.Start(nil, cfg)
	ev.addError("invalid supervisor config", err)
	rc := relay.DefaultConfig()
	rc.Listen, rc.AdminListen, rc.AuthToken, rc.Keys = "127.0.0.1:0", "", defaultKey, map[string]string{"x": defaultKey}
	_, err = relay.Start(rc)
	ev.addError("invalid relay config", err)
	_, err = tu.Request(context.Background(), &messages.TunnelMessage{Type: messages.TypeError})
	ev.addError("invalid Request", err)
	if !errors.Is(err, supervisor.ErrInvalidMessage) {
		t.Fatalf("invalid Request: %v", err)
	}

	if err := tu.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev.addJSON("status after Stop", tu.Status())
	ev.add("supervisor log", supLogs.String())
	ev.add("relay log", relayLogs.String())

	// The logs must show the session happened, or the search proves nothing.
	for _, want := range []string{"Authentication failed: Invalid API key", "Tunnel authenticated", "Request forwarded", "Reconnect requested"} {
		if supLogs.Count(want) == 0 {
			t.Errorf("the supervisor log has no %q", want)
		}
	}
	for _, want := range []string{"Authentication failed: Invalid API key", "Supervisor authenticated"} {
		if relayLogs.Count(want) == 0 {
			t.Errorf("the relay log has no %q", want)
		}
	}
	for name, text := range ev.texts {
		for _, key := range []string{defaultKey, keyB, wrongKey} {
			if i := strings.Index(text, key); i >= 0 {
				t.Errorf("%s holds a key: ...%s...", name, text[max(0, i-200):min(len(text), i+len(key)+50)])
			}
		}
	}
}
