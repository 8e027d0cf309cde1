package session_test

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay/session"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

// sized returns the encoding of build(pad), with pad (a run of 'x') as long
// as it takes for the encoding to be exactly n bytes.
func sized(t *testing.T, n int, build func(pad string) *wire.Frame) []byte {
	t.Helper()
	base := len(wire.MustEncode(build("x"))) - 1
	if n <= base {
		t.Fatalf("sized: %d bytes is too short for the frame (%d without padding)", n, base)
	}
	b := wire.MustEncode(build(strings.Repeat("x", n-base)))
	if len(b) != n {
		t.Fatalf("sized: encoded %d bytes, want %d", len(b), n)
	}
	return b
}

// TestReadLimitBeforeAndAfterAuthOK proves that the first message is read
// within Config.AuthReadLimit (a message one byte over it, even a valid auth
// frame, closes the connection with 1009 before anyone is asked about it),
// and that once auth_ok is sent the limit is Config.ReadLimit: a 64 KiB
// heartbeat, sixteen times the auth read limit, is acked.
func TestReadLimitBeforeAndAfterAuthOK(t *testing.T) {
	auth := func(pad string) *wire.Frame {
		return &wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a", Client: pad}
	}
	heartbeat := func(pad string) *wire.Frame {
		return &wire.Frame{Type: wire.TypeHeartbeat, MessageID: pad, Timestamp: 7}
	}
	for _, tc := range []struct {
		name          string
		authReadLimit int64 // 0: the default
		readLimit     int64 // 0: the default
		authFirst     bool  // authenticate, then send the message
		size          int
		build         func(pad string) *wire.Frame
		tooBig        bool // closed with 1009; else read
	}{
		{name: "auth frame of exactly the default auth read limit", size: session.DefaultAuthReadLimit, build: auth},
		{name: "auth frame one byte over the default auth read limit", size: session.DefaultAuthReadLimit + 1, build: auth, tooBig: true},
		{name: "auth frame over a lower auth read limit", authReadLimit: 1024, size: 1025, build: auth, tooBig: true},
		{name: "64 KiB heartbeat after auth_ok, default read limit", authFirst: true, size: 64 << 10, build: heartbeat},
		{name: "heartbeat of exactly the read limit after auth_ok", readLimit: 64 << 10, authFirst: true, size: 64 << 10, build: heartbeat},
		{name: "heartbeat one byte over the read limit after auth_ok", readLimit: 64 << 10, authFirst: true, size: 64<<10 + 1, build: heartbeat, tooBig: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				cfg := session.DefaultConfig()
				if tc.authReadLimit != 0 {
					cfg.AuthReadLimit = tc.authReadLimit
				}
				if tc.readLimit != 0 {
					cfg.ReadLimit = tc.readLimit
				}
				if err := cfg.Validate(); err != nil {
					t.Fatal(err)
				}
				h := newHarness(t, system, cfg, true)
				if tc.authFirst {
					h.authenticate()
				}
				msg := sized(t, tc.size, tc.build)
				sent := time.Now()
				err := h.client.WriteMessage(websocket.TextMessage, msg)
				if tc.tooBig {
					// The write may fail: the session closes the socket
					// without reading the rest of the message.
					if code, at := h.expectClosed(); code != wire.CloseTooBig || at != sent {
						t.Fatalf("closed with %d after %v, want 1009 at once", code, at.Sub(sent))
					}
					if tc.authFirst {
						if down, _ := probe.Expect[*relaymsg.SessionDown](h.p); down.Reason != session.TooBig.String() {
							t.Fatalf("session down %+v", down)
						}
					}
					// No Authenticate, and nothing else (no AuthTimedOut).
					h.p.ExpectNoMsg(time.Minute)
					return
				}
				if err != nil {
					t.Fatalf("client write: %v", err)
				}
				if !tc.authFirst {
					if a, _ := probe.Expect[*relaymsg.Authenticate](h.p); a.Tunnel != "a" || a.APIKey != "k" {
						t.Fatalf("authenticate %v", a)
					}
					return
				}
				want, _ := wire.Decode(msg)
				if ack := h.expect(wire.TypeHeartbeatAck); ack.MessageID != want.MessageID || ack.Timestamp != 7 {
					t.Fatalf("ack of a %d-byte message_id (timestamp %d), want the %d-byte id echoed", len(ack.MessageID), ack.Timestamp, len(want.MessageID))
				}
			})
		})
	}
}

// TestFramesAfterAuthWaitUntilTheSessionIsRegistered proves that before
// auth_ok the session reads one message and no more: a heartbeat the client
// sends right behind its auth frame is not read (its write, over the
// synchronous pipe, does not complete) while the key is checked and the
// tunnel registered, and once the session is registered the client gets
// auth_ok, then the heartbeat's ack.
func TestFramesAfterAuthWaitUntilTheSessionIsRegistered(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a"})
		written := make(chan error, 1)
		go func() {
			written <- h.client.WriteMessage(websocket.TextMessage, wire.MustEncode(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "early", Timestamp: 9}))
		}()
		notRead := func(when string) {
			t.Helper()
			synctest.Wait()
			select {
			case err := <-written:
				t.Fatalf("heartbeat read %s (write returned %v)", when, err)
			case f := <-h.frames:
				t.Fatalf("client got %+v %s", f, when)
			default:
			}
		}
		_, env := probe.Expect[*relaymsg.Authenticate](h.p)
		notRead("while the key was checked")
		h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: "a"})
		_, env = probe.Expect[*relaymsg.SessionUp](h.p)
		// The router takes its time: still nothing read.
		h.p.ExpectNoMsg(5 * time.Second)
		notRead("before the session was registered")
		h.system.Root.Send(env.Sender, &relaymsg.Registered{})
		h.expect(wire.TypeAuthOK)
		if ack := h.expect(wire.TypeHeartbeatAck); ack.MessageID != "early" || ack.Timestamp != 9 {
			t.Fatalf("ack %+v", ack)
		}
		if err := <-written; err != nil {
			t.Fatalf("client write: %v", err)
		}
		h.p.ExpectNoMsg(session.DefaultHeartbeatTimeout - time.Second) // quiet until the supervisor would have to heartbeat
	})
}

// TestEvictClosesAnUnauthenticatedSession proves that relaymsg.Evict closes
// a session that has no auth_ok yet with 1013, at once, whatever it waits
// for, and without SessionDown (nor AuthTimedOut) unless SessionUp already
// went to the router, which must then hear SessionDown.
func TestEvictClosesAnUnauthenticatedSession(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(h *harness)
		wantDown bool
	}{
		{name: "before any frame", setup: func(*harness) {}},
		{name: "while the key is checked", setup: func(h *harness) {
			h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a"})
			probe.Expect[*relaymsg.Authenticate](h.p)
		}},
		{name: "while a refusal is held", setup: func(h *harness) {
			h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "wrong", Tunnel: "a"})
			_, env := probe.Expect[*relaymsg.Authenticate](h.p)
			h.system.Root.Send(env.Sender, &relaymsg.AuthResult{Tunnel: "a", Delay: 5 * time.Second})
			// Evict comes a second into the five the refusal is held.
			h.p.ExpectNoMsg(time.Second)
		}},
		{name: "while the router registers it", wantDown: true, setup: func(h *harness) {
			h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a"})
			_, env := probe.Expect[*relaymsg.Authenticate](h.p)
			h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: "a"})
			probe.Expect[*relaymsg.SessionUp](h.p)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				h := newHarness(t, system, session.DefaultConfig(), true)
				tc.setup(h)
				evicted := time.Now()
				h.system.Root.Send(h.session, &relaymsg.Evict{})
				if code, at := h.expectClosed(); code != wire.CloseTryAgainLater || at != evicted {
					t.Fatalf("closed with %d after %v, want 1013 at once", code, at.Sub(evicted))
				}
				if tc.wantDown {
					if down, _ := probe.Expect[*relaymsg.SessionDown](h.p); down.Tunnel != "a" || down.Reason != session.Evicted.String() {
						t.Fatalf("session down %+v", down)
					}
				}
				h.p.ExpectNoMsg(time.Minute)
			})
		})
	}
}

// TestEvictIgnoredOnceOpen proves that an authenticated session ignores
// relaymsg.Evict: it stays up and acks the next heartbeat.
func TestEvictIgnoredOnceOpen(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.authenticate()
		h.system.Root.Send(h.session, &relaymsg.Evict{})
		h.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "after-evict"})
		if ack := h.expect(wire.TypeHeartbeatAck); ack.MessageID != "after-evict" {
			t.Fatalf("ack %+v", ack)
		}
		h.p.ExpectNoMsg(session.DefaultHeartbeatTimeout - time.Second) // quiet until the supervisor would have to heartbeat
	})
}

// TestSessionLimitRefusalCloses1013 proves that Registered{Refused: true},
// the router's answer when the relay holds as many sessions as it may,
// closes the connection with 1013 at once, with no auth_ok before it, and
// that the parent hears neither SessionDown nor AuthTimedOut.
func TestSessionLimitRefusalCloses1013(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a"})
		_, env := probe.Expect[*relaymsg.Authenticate](h.p)
		h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: "a"})
		_, env = probe.Expect[*relaymsg.SessionUp](h.p)
		refused := time.Now()
		h.system.Root.Send(env.Sender, &relaymsg.Registered{Refused: true})
		// expectClosed fails on any frame first, auth_ok included.
		if code, at := h.expectClosed(); code != wire.CloseTryAgainLater || at != refused {
			t.Fatalf("closed with %d after %v, want 1013 at once", code, at.Sub(refused))
		}
		h.p.ExpectNoMsg(time.Minute)
	})
}

// TestHeldRefusalAnswersAtItsDelayOrAtTheAuthTimeout proves that a refusal
// with a Delay is answered (auth_error "Invalid API key", then close 1008)
// exactly that long after the auth manager's answer, or at the auth timeout
// (10 s after the connection came) if that comes first, and that a refusal
// never makes the session report AuthTimedOut: the auth manager counted the
// wrong key already.
func TestHeldRefusalAnswersAtItsDelayOrAtTheAuthTimeout(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		// when the answer comes, from the start of the connection and from
		// the auth manager's answer (the auth frame is sent at connect)
		fromResult bool
		want       time.Duration
	}{
		{name: "no delay", delay: 0, fromResult: true, want: 0},
		{name: "3s delay", delay: 3 * time.Second, fromResult: true, want: 3 * time.Second},
		{name: "delay past the auth timeout", delay: time.Minute, want: session.DefaultAuthTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				connected := time.Now()
				h := newHarness(t, system, session.DefaultConfig(), true)
				h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "wrong", Tunnel: "a"})
				_, env := probe.Expect[*relaymsg.Authenticate](h.p)
				// The auth manager takes a second to answer, so that times
				// from the connection and from the answer differ.
				h.p.ExpectNoMsg(time.Second)
				answered := time.Now()
				h.system.Root.Send(env.Sender, &relaymsg.AuthResult{Tunnel: "a", Delay: tc.delay})
				from := connected
				if tc.fromResult {
					from = answered
				}
				f := h.expect(wire.TypeAuthError)
				if f.Error != "Invalid API key" || time.Since(from) != tc.want {
					t.Fatalf("auth_error %q after %v, want \"Invalid API key\" after exactly %v", f.Error, time.Since(from), tc.want)
				}
				if code, at := h.expectClosed(); code != wire.ClosePolicy || at.Sub(from) != tc.want {
					t.Fatalf("closed with %d after %v, want 1008 after exactly %v", code, at.Sub(from), tc.want)
				}
				// No AuthTimedOut, no SessionDown.
				h.p.ExpectNoMsg(time.Minute)
			})
		})
	}
}

// TestAuthTimeoutReportsTheAddress proves that a connection with no valid
// auth at the auth timeout, whether it sent nothing or the auth manager has
// not answered, is closed with 1008 exactly then, and that the parent (for
// the auth manager) hears AuthTimedOut with the connection's address, and
// nothing else.
func TestAuthTimeoutReportsTheAddress(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(h *harness)
	}{
		{name: "no auth frame", setup: func(*harness) {}},
		{name: "auth frame never answered", setup: func(h *harness) {
			h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a"})
			probe.Expect[*relaymsg.Authenticate](h.p)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				start := time.Now()
				h := newHarness(t, system, session.DefaultConfig(), true)
				tc.setup(h)
				if code, at := h.expectClosed(); code != wire.ClosePolicy || at.Sub(start) != session.DefaultAuthTimeout {
					t.Fatalf("closed with %d after %v, want 1008 after exactly %v", code, at.Sub(start), session.DefaultAuthTimeout)
				}
				timedOut, env := probe.Expect[*relaymsg.AuthTimedOut](h.p)
				if timedOut.Addr != "192.0.2.1" || env.At.Sub(start) != session.DefaultAuthTimeout {
					t.Fatalf("auth timed out %+v after %v, want address 192.0.2.1 after exactly %v", timedOut, env.At.Sub(start), session.DefaultAuthTimeout)
				}
				h.p.ExpectNoMsg(time.Minute)
			})
		})
	}
}
