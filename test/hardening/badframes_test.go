package hardening_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/hardening"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// wsClient is a supervisor reduced to a WebSocket: it authenticates, then
// writes whatever the test gives it.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialRelay(t *testing.T, url, key string) *wsClient {
	t.Helper()
	conn, _, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	c := &wsClient{t: t, conn: conn}
	c.write(websocket.TextMessage, wire.MustEncode(&wire.Frame{Type: wire.TypeAuth, APIKey: key}))
	if f, _ := c.next(); f == nil || f.Type != wire.TypeAuthOK {
		t.Fatalf("auth answered %+v", f)
	}
	return c
}

func (c *wsClient) write(kind int, data []byte) {
	_ = c.conn.SetWriteDeadline(time.Now().Add(wait))
	_ = c.conn.WriteMessage(kind, data) // a relay that closed says why in the close code
}

// next reads one frame, or returns the close code when the relay closed.
func (c *wsClient) next() (*wire.Frame, int) {
	c.t.Helper()
	_, data, err := c.conn.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return nil, ce.Code
		}
		return nil, websocket.CloseAbnormalClosure
	}
	f, err := wire.Decode(data)
	if err != nil {
		c.t.Fatalf("relay sent %q: %v", data, err)
	}
	return f, 0
}

// Bad frames the relay's own tests do not try: invalid UTF-8, JSON that is
// valid but not a frame, and give-ups about ids nobody knows.
func TestRelayAnswersBadFramesFromASupervisor(t *testing.T) {
	r := startRelay(t, nil)
	for _, tc := range []struct {
		name    string
		payload string
		code    int    // the close code; 0: the session stays up
		errorID string // the id of the error frame it answers with; "" for none
		ackID   string // the id the heartbeat ack carries, when up
	}{
		// encoding/json reads invalid UTF-8 in a string as U+FFFD: the frame
		// is used, with the id it then has.
		{name: "invalid UTF-8 in a string", payload: "{\"type\":\"heartbeat\",\"message_id\":\"a\xffb\"}", ackID: "a\uFFFDb"},
		{name: "invalid UTF-8 outside a string", payload: "{\"type\":\"heartbeat\"}\xff", code: wire.CloseProtocolError},
		{name: "a bare invalid UTF-8 byte", payload: "\xc3", code: wire.CloseProtocolError},
		{name: "JSON array", payload: `[{"type":"heartbeat"}]`, code: wire.CloseProtocolError},
		{name: "JSON null", payload: `null`, code: wire.CloseProtocolError},
		{name: "JSON string", payload: `"heartbeat"`, code: wire.CloseProtocolError},
		{name: "empty text message", payload: ``, code: wire.CloseProtocolError},
		{name: "type is a number", payload: `{"type":7}`, code: wire.CloseProtocolError},
		{name: "status is a string", payload: `{"type":"response","message_id":"x","status":"200"}`, code: wire.CloseProtocolError},
		{name: "body is not base64", payload: `{"type":"response","message_id":"x","body":"***"}`, code: wire.CloseProtocolError},
		{name: "headers are not lists", payload: `{"type":"response","message_id":"x","headers":{"A":"b"}}`, code: wire.CloseProtocolError},
		{name: "stream_error for an unknown stream", payload: `{"type":"stream_error","message_id":"s1","error":"x"}`, errorID: "s1"},
		{name: "error for an unknown id", payload: `{"type":"error","message_id":"e1","error":"x"}`},
		{name: "cancel for an unknown id", payload: `{"type":"cancel","message_id":"c1"}`},
		{name: "type in another case", payload: `{"TYPE":"heartbeat","type":"Heartbeat","message_id":"k"}`, errorID: "k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRelay(t, harness.TunnelURL(r), defaultKey)
			c.write(websocket.TextMessage, []byte(tc.payload))
			c.write(websocket.TextMessage, wire.MustEncode(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "after"}))
			f, code := c.next()
			if tc.code != 0 {
				if code != tc.code {
					t.Fatalf("got %+v (close %d), want close %d", f, code, tc.code)
				}
				return
			}
			if tc.errorID != "" {
				if f == nil || f.Type != wire.TypeError || f.MessageID != tc.errorID {
					t.Fatalf("got %+v (close %d), want an error frame for %q", f, code, tc.errorID)
				}
				f, code = c.next()
			}
			if tc.ackID != "" {
				if f == nil || f.Type != wire.TypeHeartbeatAck || f.MessageID != tc.ackID {
					t.Fatalf("got %+v (close %d), want the ack of %q", f, code, tc.ackID)
				}
				f, code = c.next()
			}
			if f == nil || f.Type != wire.TypeHeartbeatAck || f.MessageID != "after" {
				t.Fatalf("got %+v (close %d), want the session up and the heartbeat acked", f, code)
			}
		})
	}
}

// Each bad frame a relay can send to a supervisor after auth_ok, through
// the whole supervisor: either the tunnel stays up (and says so, when the
// protocol asks for an answer), or it fails with PROTOCOL_ERROR, tells the
// relay with a protocol close code, and reconnects.
func TestSupervisorAnswersBadFramesFromARelay(t *testing.T) {
	chunk := func(id string) string {
		b, _ := wire.EncodeChunk(id, []byte("data"))
		return string(b)
	}
	for _, tc := range []struct {
		name     string
		payload  string
		binary   bool
		pending  bool   // a Request of the supervisor waits for id "q1"
		answerID string // the error frame the supervisor answers with; "" for none
		answer   string // ...containing this
		handled  string // the message type the host's handler is given
		code     int    // the supervisor's close code, for PROTOCOL_ERROR; 0: stays up
	}{
		{name: "not JSON", payload: `{garbage`, code: wire.CloseProtocolError},
		{name: "invalid UTF-8 outside a string", payload: "\xff", code: wire.CloseProtocolError},
		{name: "JSON array", payload: `[]`, code: wire.CloseProtocolError},
		{name: "no type", payload: `{"message_id":"x"}`, code: wire.CloseProtocolError},
		{name: "field of the wrong type", payload: `{"type":"request","message_id":"x","bytes":"many"}`, code: wire.CloseProtocolError},
		{name: "binary message without an id", payload: "\x00", binary: true, code: wire.CloseProtocolError},
		{name: "binary message cut short", payload: "\x09abc", binary: true, code: wire.CloseProtocolError},
		{name: "auth_ok again", payload: `{"type":"auth_ok","session_id":"s"}`, code: wire.CloseProtocolError},
		{name: "over the read limit", payload: `{"type":"error","error":"` + strings.Repeat("x", 2048) + `"}`, code: wire.CloseTooBig},
		{name: "unknown type", payload: `{"type":"bogus","message_id":"u1"}`, answerID: "u1", answer: `unknown message type "bogus"`},
		{name: "invalid UTF-8 in a string", payload: "{\"type\":\"request\",\"message_id\":\"r\xff\",\"path\":\"/\"}", handled: messages.TypeRequest},
		{name: "response for an unknown id", payload: `{"type":"response","message_id":"nobody","status":200}`, handled: messages.TypeResponse},
		{name: "duplicate response", pending: true, payload: `{"type":"response","message_id":"q1","status":500}`, handled: messages.TypeResponse},
		{name: "window_update for an unknown stream", payload: `{"type":"window_update","message_id":"w1","bytes":100}`},
		{name: "cancel for an unknown id", payload: `{"type":"cancel","message_id":"c1"}`},
		{name: "chunk for an unknown stream", payload: chunk("k1"), binary: true, answerID: "k1", answer: "unknown stream"},
		{name: "stream_end for an unknown stream", payload: `{"type":"stream_end","message_id":"k2"}`, answerID: "k2", answer: "unknown stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := listen()
			if err != nil {
				t.Fatal(err)
			}
			raw := hardening.NewRawRelay(ln)
			t.Cleanup(func() { _ = raw.Close() })
			handled := make(chan string, 4)
			tu := startTunnel(t, raw.URL(), defaultKey, "", func(c *supervisor.Config) {
				fastRetry(c)
				c.ReadLimit, c.InlineLimit, c.ChunkSize, c.Window = 1024, 512, 512, 512
				c.OnMessage = func(_ context.Context, _ *supervisor.Tunnel, msg *messages.TunnelMessage) { handled <- msg.Type }
			})
			s := <-raw.Sessions()
			tu.await(messages.Authenticated)

			if tc.pending {
				answered := make(chan error, 1)
				go func() {
					_, err := tu.Request(context.Background(), &messages.TunnelMessage{MessageID: "q1", Path: "/"})
					answered <- err
				}()
				waitFrame(t, s, wire.TypeRequest)
				_ = s.Send(&wire.Frame{Type: wire.TypeResponse, MessageID: "q1", Status: 200})
				if err := <-answered; err != nil {
					t.Fatalf("Request: %v", err)
				}
			}
			if err := s.Write(tc.binary, []byte(tc.payload)); err != nil {
				t.Fatal(err)
			}
			_ = s.Send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "after"})

			if tc.code != 0 {
				for range s.Messages() {
				}
				if code := s.CloseCode(); code != tc.code {
					t.Fatalf("supervisor closed with %d, want %d", code, tc.code)
				}
				st := tu.failure()
				if st.Health.LastFailureType != messages.ProtocolError.String() || len(st.Health.FailureTypes) != 1 {
					t.Fatalf("failure %s (%s), want PROTOCOL_ERROR", st.Health.LastFailureType, st.Health.LastError)
				}
				<-raw.Sessions() // and it reconnected
				return
			}
			// The connection acks heartbeats itself, so the ack may overtake
			// an answer the tunnel sends.
			var answer *wire.Frame
			for acked := false; !acked || (tc.answerID != "" && answer == nil); {
				switch f := waitFrame(t, s, ""); f.Type {
				case wire.TypeHeartbeatAck:
					acked = acked || f.MessageID == "after"
				case wire.TypeError:
					answer = f
				}
			}
			if tc.answerID != "" && (answer.MessageID != tc.answerID || !strings.Contains(answer.Error, tc.answer)) {
				t.Fatalf("error frame %+v, want one for %q saying %q", answer, tc.answerID, tc.answer)
			}
			if tc.handled != "" {
				select {
				case typ := <-handled:
					if typ != tc.handled {
						t.Fatalf("handler given a %s, want a %s", typ, tc.handled)
					}
				case <-time.After(wait):
					t.Fatalf("handler not given the %s", tc.handled)
				}
			}
			if st := tu.Status(); st.State != messages.Authenticated || len(st.Health.FailureTypes) != 0 {
				t.Fatalf("status %s, failures %v; want the tunnel up", st.State, st.Health.FailureTypes)
			}
		})
	}
}

// waitFrame returns the next frame of type typ the supervisor sent, or of
// any type when typ is empty.
func waitFrame(t *testing.T, s *hardening.RawSession, typ string) *wire.Frame {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case m, ok := <-s.Messages():
			if !ok {
				t.Fatalf("connection closed (%d) before a %s frame", s.CloseCode(), typ)
			}
			if m.Frame != nil && (typ == "" || m.Frame.Type == typ) {
				return m.Frame
			}
		case <-timeout:
			t.Fatalf("no %s frame", typ)
		}
	}
}
