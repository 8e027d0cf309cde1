package hardening_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// A WebSocket message over the receiver's read limit, in either direction,
// closes the connection with 1009; the supervisor counts it as a
// PROTOCOL_ERROR, the public request caught in it gets 502, and the tunnel
// comes back for the next one.
func TestOversizedFramesEndTheConnectionAsAProtocolError(t *testing.T) {
	for _, tc := range []struct {
		name    string
		relay   func(*relay.Config)
		tunnel  func(*supervisor.Config)
		request func(url string) (*http.Request, error)
		lastErr string // in the supervisor's last_error
	}{
		{
			name:  "response frame over the relay's limit",
			relay: func(c *relay.Config) { c.ReadLimit, c.InlineLimit = 4096, 1024 },
			request: func(url string) (*http.Request, error) {
				return http.NewRequest(http.MethodGet, url+"/big-headers", nil)
			},
			lastErr: "close 1009",
		},
		{
			name: "request frame over the supervisor's limit",
			tunnel: func(c *supervisor.Config) {
				c.ReadLimit, c.InlineLimit, c.ChunkSize, c.Window = 1024, 512, 512, 512
			},
			request: func(url string) (*http.Request, error) {
				return http.NewRequest(http.MethodPost, url+"/upload", strings.NewReader(strings.Repeat("x", 4096)))
			},
			lastErr: "read limit exceeded",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, tc.relay)
			tu := startTunnel(t, harness.TunnelURL(r), defaultKey, "", func(c *supervisor.Config) {
				fastRetry(c)
				if tc.tunnel != nil {
					tc.tunnel(c)
				}
				c.OnMessage = func(ctx context.Context, tun *supervisor.Tunnel, msg *messages.TunnelMessage) {
					resp := &messages.TunnelMessage{Type: messages.TypeResponse, MessageID: msg.MessageID, Status: http.StatusOK, Body: []byte("small")}
					if msg.Path == "/big-headers" {
						resp.Headers = map[string][]string{"X-Pad": {strings.Repeat("p", 8192)}}
					}
					_ = tun.Send(ctx, resp)
				}
			})
			tu.await(messages.Authenticated)
			c := httpClient(t)

			req, err := tc.request(publicURL(r))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("public status %d, want 502", resp.StatusCode)
			}
			st := tu.failure()
			if st.Health.LastFailureType != messages.ProtocolError.String() || !strings.Contains(st.Health.LastError, tc.lastErr) {
				t.Fatalf("failure %s: %q; want PROTOCOL_ERROR with %q", st.Health.LastFailureType, st.Health.LastError, tc.lastErr)
			}

			tu.await(messages.Authenticated)
			if status, body := get(t, c, publicURL(r)+"/small"); status != http.StatusOK || body != "small" {
				t.Fatalf("after reconnecting: %d %q", status, body)
			}
		})
	}
}
