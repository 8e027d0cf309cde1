package session_test

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay/session"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	testharness "github.com/enhanced-tunnel/tunnel/test/harness"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

// TestSupervisorThatDoesNotReadItsAcksIsDropped proves that the answers
// waiting for the socket are bounded by Config.MaxReplyQueue: a supervisor
// that stops reading after auth_ok and keeps sending heartbeats (1 KiB
// message_ids, so four acks fill a 4 KiB queue) is dropped at once, long
// before the 10 s write timeout, with SessionDown SLOW_READER, and its
// socket is closed with no close frame (which would only wait behind what
// it does not read).
func TestSupervisorThatDoesNotReadItsAcksIsDropped(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		cfg := session.DefaultConfig()
		cfg.MaxReplyQueue = 4096
		h := newHarness(t, system, cfg, true, deafAfterAuthOK)
		h.authenticate()
		start := time.Now()
		id := strings.Repeat("h", 1024)
		// The session's reader reads on, so these writes go through until
		// the session closes the socket; how many do depends on how far
		// the actor got, so the loop ends at the first failure. 64 acks
		// are 16 times the bound.
		for i := 0; i < 64; i++ {
			hb := &wire.Frame{Type: wire.TypeHeartbeat, MessageID: fmt.Sprintf("%02d%s", i, id)}
			if err := h.client.WriteMessage(websocket.TextMessage, wire.MustEncode(hb)); err != nil {
				break
			}
		}
		down, env := probe.Expect[*relaymsg.SessionDown](h.p)
		if down.Tunnel != "a" || down.Reason != session.SlowReader.String() || env.At != start {
			t.Fatalf("session down %+v after %v, want SLOW_READER at once", down, env.At.Sub(start))
		}
		h.resumeReading()
		if code, at := h.expectClosed(); code != websocket.CloseAbnormalClosure || at != start {
			t.Fatalf("client saw close %d after %v, want the socket closed (1006) at once", code, at.Sub(start))
		}
		h.p.ExpectNoMsg(time.Minute)
	})
}

// TestLogQuotesFrameFieldsCutShort proves that the fields of a supervisor's
// frames the session logs (tunnel and client of the auth frame, the type of
// a frame before auth, message_id and error of a frame about an unknown
// message) are logged as wire.Excerpt cuts them: with 3000-byte fields, no
// log line is over 1 KiB, no field appears whole, and each is there cut
// short ("…(3000 bytes)"). The auth frame, with two such fields, is over
// the default 4 KiB auth read limit, which is raised to 8 KiB here.
func TestLogQuotesFrameFieldsCutShort(t *testing.T) {
	const n = 3000
	long := func(c string) string { return strings.Repeat(c, n) }
	tunnel, client, typ, id, text := long("t"), long("c"), long("y"), long("m"), long("e")
	authLong := func(h *harness) {
		h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: tunnel, Client: client})
	}
	for _, tc := range []struct {
		name   string
		fields []string // each must be logged, cut short
		run    func(h *harness)
	}{
		{name: "auth frame of a session authenticated, then taken over", fields: []string{tunnel, client}, run: func(h *harness) {
			authLong(h)
			_, env := probe.Expect[*relaymsg.Authenticate](h.p)
			h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: tunnel})
			_, env = probe.Expect[*relaymsg.SessionUp](h.p)
			h.system.Root.Send(env.Sender, &relaymsg.Registered{})
			h.expect(wire.TypeAuthOK)
			h.system.Root.Send(h.session, &relaymsg.CloseSession{Code: wire.CloseNormal, Reason: "replaced"})
			h.expectClosed()
			probe.Expect[*relaymsg.SessionDown](h.p)
		}},
		{name: "auth frame of a key refused", fields: []string{tunnel, client}, run: func(h *harness) {
			authLong(h)
			_, env := probe.Expect[*relaymsg.Authenticate](h.p)
			h.system.Root.Send(env.Sender, &relaymsg.AuthResult{Tunnel: tunnel})
			h.expect(wire.TypeAuthError)
			h.expectClosed()
		}},
		{name: "type of a frame before auth", fields: []string{typ}, run: func(h *harness) {
			h.send(&wire.Frame{Type: typ})
			if code, _ := h.expectClosed(); code != wire.ClosePolicy {
				t.Fatalf("closed with %d, want 1008", code)
			}
		}},
		{name: "error frame about an unknown message", fields: []string{id, text}, run: func(h *harness) {
			h.authenticate()
			h.send(&wire.Frame{Type: wire.TypeError, MessageID: id, Error: text})
			h.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "hb"})
			h.expect(wire.TypeHeartbeatAck)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				var out testharness.LogBuffer
				logger := logrus.New()
				logger.SetOutput(&out)
				logger.SetLevel(logrus.DebugLevel)
				logger.SetFormatter(&logrus.TextFormatter{DisableColors: true})
				cfg := session.DefaultConfig()
				cfg.AuthReadLimit = 8 << 10
				cfg.Logger = logger
				h := newHarness(t, system, cfg, true)
				tc.run(h)
				synctest.Wait() // the session has logged all it will
				log := out.String()
				if log == "" {
					t.Fatal("nothing logged")
				}
				for _, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
					if len(line) > 1024 {
						t.Errorf("log line of %d bytes: %.200s…", len(line), line)
					}
				}
				for _, f := range tc.fields {
					if strings.Contains(log, f) {
						t.Errorf("a %d-byte field (%.8s…) appears whole in the log", len(f), f)
					}
					if !strings.Contains(log, wire.Excerpt(f)) {
						t.Errorf("the log has no excerpt of the field %.8s…:\n%s", f, log)
					}
				}
			})
		})
	}
}
