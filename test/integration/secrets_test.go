package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/httpapi"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// Every test checks its logs for the key when it ends (see newWorld); this
// one goes through every path that handles a key, at the most verbose log
// level, and looks at every other place a key could show too.
func TestKeyNeverAppearsInLogsStatusOrEndpoints(t *testing.T) {
	w, r, tn := connect(t, echoUpstream(), nil, nil)
	const wrongKey = "itest-wrong-key-5b7e1d3f9a2c"
	wrong := w.startTunnel(harness.TunnelURL(r), "http://127.0.0.1:1", func(c *supervisor.Config) { c.APIKey = wrongKey })

	req, _ := http.NewRequest(http.MethodPost, publicURL(r, "/echo?x=1"), strings.NewReader("hello"))
	if resp, body, err := w.do(req); err != nil || resp.StatusCode != http.StatusOK || string(body) != "hello" {
		t.Fatalf("round trip: %v %q %v", resp, body, err)
	}
	tn.Reconnect()
	harness.Eventually(t, patience, "the reconnection", func() bool { return tn.Status().Health.Successes == 2 && tn.Status().Connected })
	harness.Eventually(t, patience, "the wrong key to be refused", func() bool {
		return wrong.Status().Health.FailureTypes[messages.AuthFailure.String()] >= 1
	})

	api := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Status: tn}))
	defer api.Close()
	seen := map[string]string{}
	for _, u := range []string{api.URL + "/status", api.URL + "/metrics", harness.AdminURL(r) + "/health", harness.AdminURL(r) + "/metrics"} {
		code, body := w.get(u)
		if code != http.StatusOK {
			t.Errorf("GET %s: %d", u, code)
		}
		seen[u] = string(body)
	}
	for name, tn := range map[string]*tunnel{"Status()": tn, "Status() with the wrong key": wrong} {
		b, err := json.Marshal(tn.Status())
		if err != nil {
			t.Fatal(err)
		}
		seen[name] = string(b)
	}
	logs := w.logs.String()
	if !strings.Contains(logs, "Tunnel authenticated") || !strings.Contains(logs, "level=debug") {
		t.Fatal("the logs were not captured at debug level: this test would prove nothing")
	}
	seen["the logs"] = logs
	for where, text := range seen {
		for _, key := range []string{testKey, wrongKey} {
			if strings.Contains(text, key) {
				t.Errorf("a key appears in %s", where)
			}
		}
	}
}
