package relay_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

func TestAuthentication(t *testing.T) {
	r := startRelay(t, nil)
	for _, tc := range []struct {
		name, key, tunnel string
		ok                bool
	}{
		{"default key, no tunnel named", defaultKey, "", true},
		{"default key, default named", defaultKey, "default", true},
		{"key of its tunnel", keyA, "a", true},
		{"wrong key", "not-a-key", "", false},
		{"key of another tunnel", keyA, "b", false},
		{"key of a tunnel, default asked", keyA, "", false},
		{"empty key", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, err := dial(t, r)
			if err != nil {
				t.Fatal(err)
			}
			s.send(&wire.Frame{Type: wire.TypeAuth, APIKey: tc.key, Tunnel: tc.tunnel})
			if tc.ok {
				s.expect(wire.TypeAuthOK)
				return
			}
			if f := s.expect(wire.TypeAuthError); f.Error != "Invalid API key" {
				t.Fatalf("auth_error %q", f.Error)
			}
			if code := s.expectClosed(); code != wire.ClosePolicy {
				t.Fatalf("close code %d, want 1008", code)
			}
		})
	}
}

func TestConnectionClosedWithCode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*relay.Config)
		auth   bool // authenticate first
		send   func(s *sup)
		code   int
	}{
		{"no auth in time", func(c *relay.Config) { c.AuthTimeout = 200 * time.Millisecond }, false, func(*sup) {}, wire.ClosePolicy},
		{"heartbeat before auth", nil, false, func(s *sup) { s.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "h"}) }, wire.ClosePolicy},
		{"chunk before auth", nil, false, func(s *sup) { s.sendChunk("x", []byte("data")) }, wire.ClosePolicy},
		{"garbage before auth", nil, false, func(s *sup) { _ = s.write(websocket.TextMessage, []byte("not json")) }, wire.CloseProtocolError},
		{"garbage", nil, true, func(s *sup) { _ = s.write(websocket.TextMessage, []byte("{garbage")) }, wire.CloseProtocolError},
		{"frame without type", nil, true, func(s *sup) { _ = s.write(websocket.TextMessage, []byte(`{"message_id":"x"}`)) }, wire.CloseProtocolError},
		{"binary without id", nil, true, func(s *sup) { _ = s.write(websocket.BinaryMessage, []byte{0}) }, wire.CloseProtocolError},
		{"message over the read limit", func(c *relay.Config) { c.ReadLimit, c.InlineLimit = 4096, 1024 }, true,
			func(s *sup) {
				_ = s.write(websocket.TextMessage, []byte(`{"type":"x","pad":"`+strings.Repeat("a", 5000)+`"}`))
			}, wire.CloseTooBig},
		{"silent supervisor", func(c *relay.Config) { c.HeartbeatTimeout = 300 * time.Millisecond; c.PingInterval = time.Hour }, true, func(*sup) {}, websocket.CloseGoingAway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, tc.change)
			var s *sup
			if tc.auth {
				s = connect(t, r, defaultKey, "", nil)
			} else {
				var err error
				if s, _, err = dial(t, r); err != nil {
					t.Fatal(err)
				}
			}
			tc.send(s)
			if code := s.expectClosed(); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
		})
	}
}

func TestHeartbeatAckedAtOnce(t *testing.T) {
	r := startRelay(t, nil)
	s := connect(t, r, defaultKey, "", nil)
	s.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "hb-1", Timestamp: 1712345678901})
	if f := s.expect(wire.TypeHeartbeatAck); f.MessageID != "hb-1" || f.Timestamp != 1712345678901 {
		t.Fatalf("ack %+v", f)
	}
}

func TestFramesTheRelayCannotUseGetAnErrorAndTheSessionStaysUp(t *testing.T) {
	r := startRelay(t, nil)
	for _, tc := range []struct {
		name  string
		frame *wire.Frame // or a chunk for id when nil
		id    string
		error string
		once  bool // a second such frame gets no second error
	}{
		{"unknown type", &wire.Frame{Type: "bogus", MessageID: "u1"}, "u1", `unknown frame type "bogus"`, false},
		{"request from a supervisor", &wire.Frame{Type: wire.TypeRequest, MessageID: "r1", Method: "GET", Path: "/"}, "r1", "no route", false},
		{"response for an unknown id", &wire.Frame{Type: wire.TypeResponse, MessageID: "x1", Status: 200}, "x1", "unknown message_id", true},
		{"chunk for an unknown stream", nil, "c1", "unknown stream", true},
		{"window_update for an unknown stream", &wire.Frame{Type: wire.TypeWindowUpdate, MessageID: "w1", Bytes: 10}, "w1", "unknown stream", true},
		{"stream_end for an unknown stream", &wire.Frame{Type: wire.TypeStreamEnd, MessageID: "e1"}, "e1", "unknown stream", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := connect(t, r, defaultKey, "", nil)
			send := func() {
				if tc.frame == nil {
					s.sendChunk(tc.id, []byte("data"))
				} else {
					s.send(tc.frame)
				}
			}
			for i := range 2 {
				send()
				if i == 1 && tc.once {
					break
				}
				if f := s.expect(wire.TypeError); f.MessageID != tc.id || !strings.Contains(f.Error, tc.error) {
					t.Fatalf("error frame %+v, want id %q and %q", f, tc.id, tc.error)
				}
			}
			s.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "after"})
			if f := s.expect(wire.TypeHeartbeatAck); f.MessageID != "after" {
				t.Fatalf("ack %+v", f)
			}
		})
	}
}

func TestSecondSessionTakesTheTunnelOver(t *testing.T) {
	r := startRelay(t, nil)
	old := connect(t, r, keyA, "a", nil)
	connect(t, r, keyA, "a", func(context.Context, *wire.Frame, io.Reader) reply {
		return reply{Status: http.StatusAccepted}
	})
	if code := old.expectClosed(); code != wire.CloseNormal {
		t.Fatalf("old session closed with %d, want 1000", code)
	}
	resp, err := httpClient(t).Get(baseURL(r) + "/t/a/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: not served by the new session", resp.StatusCode)
	}
}

// The session limit counts authenticated sessions: a supervisor over it
// gets through the upgrade and its key is checked, then it is closed with
// 1013 instead of auth_ok.
func TestSessionLimitClosesWith1013(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.MaxSessions = 1 })
	connect(t, r, defaultKey, "", nil)
	s, _, err := dial(t, r)
	if err != nil {
		t.Fatal(err)
	}
	s.send(&wire.Frame{Type: wire.TypeAuth, APIKey: keyB, Tunnel: "b"})
	if code := s.expectClosed(); code != wire.CloseTryAgainLater {
		t.Fatalf("close code %d, want 1013", code)
	}
}

// clock is a hand-moved clock for the per-address limits.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Past its burst, an address's upgrades get 429 with a Retry-After, whatever
// X-Forwarded-For says (the peer is no trusted proxy); another address is
// not held back, and the bucket refills.
func TestUpgradesPastTheBurstGet429(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	r := startRelay(t, func(c *relay.Config) { c.Now, c.UpgradeBurst, c.UpgradeRate = clk.Now, 3, 0.5 })
	for i := range 3 {
		s, _, err := dial(t, r)
		if err != nil {
			t.Fatalf("upgrade %d: %v", i+1, err)
		}
		s.close()
	}
	spoofed := http.Header{"X-Forwarded-For": {"10.9.8.7"}, "X-Real-Ip": {"10.9.8.7"}}
	_, resp, err := dialFrom(t, r, nil, spoofed)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th upgrade: err %v, response %v; want 429", err, resp)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After %q, want 2", ra)
	}
	if text := errorText(t, resp); !strings.Contains(text, "too many") {
		t.Errorf("429 body %q", text)
	}

	other, _, err := dialFrom(t, r, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, nil)
	if err != nil {
		t.Fatalf("dial from 127.0.0.2: %v", err)
	}
	other.send(&wire.Frame{Type: wire.TypeAuth, APIKey: defaultKey})
	other.expect(wire.TypeAuthOK)

	clk.add(2 * time.Second)
	s, _, err := dial(t, r)
	if err != nil {
		t.Fatalf("once a token is back: %v", err)
	}
	s.send(&wire.Frame{Type: wire.TypeAuth, APIKey: keyA, Tunnel: "a"})
	s.expect(wire.TypeAuthOK)
}

// Past 20 failures, an address's wrong keys wait their turn, even on
// connections opened before; its right key is answered at once.
func TestWrongKeysPastTheLimitWaitButRightKeysDoNot(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	r := startRelay(t, func(c *relay.Config) { c.Now = clk.Now })
	conns := make([]*sup, 22)
	for i := range conns {
		s, _, err := dial(t, r)
		if err != nil {
			t.Fatalf("upgrade %d: %v", i+1, err)
		}
		conns[i] = s
	}
	for _, s := range conns[:20] {
		s.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "wrong"})
		s.expect(wire.TypeAuthError)
		s.expectClosed()
	}
	held := conns[20]
	held.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "wrong"})
	good := conns[21]
	good.send(&wire.Frame{Type: wire.TypeAuth, APIKey: keyA, Tunnel: "a"})
	good.expect(wire.TypeAuthOK)
	// The wrong key sent first is still unanswered once the right one is in.
	select {
	case f := <-held.frames:
		t.Fatalf("the 21st wrong key was answered at once: %+v", f)
	case <-held.closed:
		t.Fatal("the 21st wrong key's connection closed at once")
	default:
	}
}
