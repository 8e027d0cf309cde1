package session_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay/session"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

func TestNoAuthClosesAfterExactlyTheAuthTimeout(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		start := time.Now()
		h := newHarness(t, system, session.DefaultConfig(), true)
		code, at := h.expectClosed()
		if code != wire.ClosePolicy || at.Sub(start) != 10*time.Second {
			t.Fatalf("closed with %d after %v, want 1008 after exactly 10s", code, at.Sub(start))
		}
	})
}

func TestAuthHandshake(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "the-key", Client: "c/1"})
		a, env := probe.Expect[*relaymsg.Authenticate](h.p)
		if a.APIKey != "the-key" || a.Tunnel != wire.DefaultTunnel || a.Addr != "192.0.2.1" {
			t.Fatalf("authenticate %v", a)
		}
		h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: wire.DefaultTunnel})
		up, env := probe.Expect[*relaymsg.SessionUp](h.p)
		if up.Tunnel != wire.DefaultTunnel || !up.Session.Equal(h.session) {
			t.Fatalf("session up %+v", up)
		}
		// No auth_ok until the router has the session.
		select {
		case f := <-h.frames:
			t.Fatalf("client got %+v before the session was registered", f)
		default:
		}
		h.system.Root.Send(env.Sender, &relaymsg.Registered{})
		if ok := h.expect(wire.TypeAuthOK); ok.SessionID != up.SessionID {
			t.Fatalf("auth_ok session %q, want %q", ok.SessionID, up.SessionID)
		}
		// The auth timeout no longer applies.
		h.p.ExpectNoMsg(20 * time.Second)
	})
}

func TestRefusedKeyGetsAuthErrorThen1008(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "wrong"})
		_, env := probe.Expect[*relaymsg.Authenticate](h.p)
		start := time.Now()
		h.system.Root.Send(env.Sender, &relaymsg.AuthResult{Tunnel: wire.DefaultTunnel})
		if f := h.expect(wire.TypeAuthError); f.Error != "Invalid API key" {
			t.Fatalf("auth_error %+v", f)
		}
		if code, at := h.expectClosed(); code != wire.ClosePolicy || at != start {
			t.Fatalf("closed with %d after %v, want 1008 at once", code, at.Sub(start))
		}
		// Never registered, so nothing to unregister.
		h.p.ExpectNoMsg(time.Minute)
	})
}

func TestSilentSupervisorDroppedAfterExactlyTheHeartbeatTimeout(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), false)
		h.authenticate()
		last := time.Now()
		code, at := h.expectClosed()
		if code != websocket.CloseGoingAway || at.Sub(last) != 30*time.Second {
			t.Fatalf("closed with %d after %v, want 1001 after exactly 30s", code, at.Sub(last))
		}
		if down, _ := probe.Expect[*relaymsg.SessionDown](h.p); down.Tunnel != "a" || down.Reason != session.Silent.String() {
			t.Fatalf("session down %+v", down)
		}
	})
}

func TestPingsEveryIntervalAndPongsKeepTheSessionAlive(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		start := time.Now()
		cfg := session.DefaultConfig()
		cfg.PingInterval = 15 * time.Second
		h := newHarness(t, system, cfg, true)
		h.authenticate()
		for i := 1; i <= 6; i++ {
			select {
			case at := <-h.pings:
				if at.Sub(start) != time.Duration(i)*15*time.Second {
					t.Fatalf("ping %d after %v, want %v", i, at.Sub(start), time.Duration(i)*15*time.Second)
				}
			case code := <-h.closed:
				t.Fatalf("closed with %d after %v though pongs came", code, time.Since(start))
			}
		}
		h.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "hb", Timestamp: 42})
		if ack := h.expect(wire.TypeHeartbeatAck); ack.MessageID != "hb" || ack.Timestamp != 42 {
			t.Fatalf("ack %+v", ack)
		}
	})
}

func TestDispatchedRequestAndItsStreamedResponse(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		cfg := session.DefaultConfig()
		cfg.Window = 8
		h := newHarness(t, system, cfg, true)
		h.authenticate()
		ex := relaymsg.NewExchange("a", &wire.Frame{Type: wire.TypeRequest, MessageID: "m1", Method: "GET", Path: "/x"}, nil)
		h.system.Root.Send(h.session, &relaymsg.Dispatch{Exchange: ex})
		if req := h.expect(wire.TypeRequest); req.MessageID != "m1" || req.Path != "/x" {
			t.Fatalf("request %+v", req)
		}
		h.send(&wire.Frame{Type: wire.TypeResponse, MessageID: "m1", Status: 200, Stream: true})
		resp, _ := probe.Expect[*relaymsg.Response](h.p)
		if resp.MessageID != "m1" || resp.Body == nil {
			t.Fatalf("response %+v", resp)
		}
		chunk, _ := wire.EncodeChunk("m1", []byte("12345678"))
		if err := h.client.WriteMessage(websocket.BinaryMessage, chunk); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "12345678" {
			t.Fatalf("body %q, %v", buf, err)
		}
		// Reading the window's worth gives it back.
		if wu := h.expect(wire.TypeWindowUpdate); wu.MessageID != "m1" || wu.Bytes != 8 {
			t.Fatalf("window_update %+v", wu)
		}
		h.send(&wire.Frame{Type: wire.TypeStreamEnd, MessageID: "m1"})
		if n, err := resp.Body.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("after stream_end: %d, %v", n, err)
		}
	})
}

func TestCancelledRequestGetsACancelAndLateFramesAreDropped(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.authenticate()
		upload := wire.NewSendWindow(wire.DefaultWindow)
		ex := relaymsg.NewExchange("a", &wire.Frame{Type: wire.TypeRequest, MessageID: "m1", Stream: true}, upload)
		h.system.Root.Send(h.session, &relaymsg.Dispatch{Exchange: ex})
		h.expect(wire.TypeRequest)
		select {
		case <-ex.Accepted:
		case <-time.After(time.Hour):
			t.Fatal("no writer for the upload")
		}
		h.system.Root.Send(h.session, &relaymsg.Cancel{MessageID: "m1"})
		if c := h.expect(wire.TypeCancel); c.MessageID != "m1" {
			t.Fatalf("cancel %+v", c)
		}
		if _, err := upload.Acquire(context.Background(), 1); err == nil {
			t.Fatal("upload window still open after the cancel")
		}
		// A response already in flight is dropped without an error frame.
		h.send(&wire.Frame{Type: wire.TypeResponse, MessageID: "m1", Status: 200})
		h.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "hb"})
		h.expect(wire.TypeHeartbeatAck)
		h.p.ExpectNoMsg(time.Second)
	})
}

func TestTakenOverSessionClosesAndSaysSo(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.authenticate()
		h.system.Root.Send(h.session, &relaymsg.CloseSession{Code: wire.CloseNormal, Reason: "replaced"})
		if code, _ := h.expectClosed(); code != wire.CloseNormal {
			t.Fatalf("close code %d", code)
		}
		if down, _ := probe.Expect[*relaymsg.SessionDown](h.p); !down.Session.Equal(h.session) || down.Reason != session.TakenOver.String() {
			t.Fatalf("session down %+v", down)
		}
	})
}
