package hardening_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// With JSON logs (tunnel-relay -log-format json), the line that says why a
// session ended names the cause, as the text format does, rather than
// giving its number.
func TestRelayJSONLogNamesWhySessionsEnd(t *testing.T) {
	logger, logs := debugLogger()
	r := startRelay(t, func(c *relay.Config) { c.Logger = logger })
	garbage := dialRelay(t, harness.TunnelURL(r), defaultKey)
	garbage.write(websocket.TextMessage, []byte("{garbage"))
	garbage.next()
	gone := dialRelay(t, harness.TunnelURL(r), defaultKey)
	_ = gone.conn.Close()

	causes := map[string]bool{}
	harness.Eventually(t, wait, "two sessions logged as closed", func() bool {
		clear(causes)
		for _, line := range strings.Split(logs.String(), "\n") {
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) != nil || entry["msg"] != "Session closed" {
				continue
			}
			name, ok := entry["failure_type"].(string)
			if !ok {
				t.Fatalf("failure_type %v (%T) in %s; want its name", entry["failure_type"], entry["failure_type"], line)
			}
			causes[name] = true
		}
		return len(causes) == 2
	})
	if !causes["MALFORMED_FRAME"] || !causes["PEER_GONE"] {
		t.Fatalf("causes logged: %v", causes)
	}
}
