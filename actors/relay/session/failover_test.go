package session_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/enhanced-tunnel/tunnel/actors/relay/session"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

// TestSessionUpCarriesInstanceAndIndex proves that the router hears the
// instance and index of the auth frame, and nothing for a supervisor that
// sends none.
func TestSessionUpCarriesInstanceAndIndex(t *testing.T) {
	for _, tc := range []struct {
		name     string
		instance string
		index    int
	}{
		{"named", "3f0c9a51-instance", 2},
		{"legacy", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				h := newHarness(t, system, session.DefaultConfig(), true)
				h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a", Instance: tc.instance, Index: tc.index})
				_, env := probe.Expect[*relaymsg.Authenticate](h.p)
				h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: "a"})
				up, env := probe.Expect[*relaymsg.SessionUp](h.p)
				if up.Instance != tc.instance || up.Index != tc.index || up.Tunnel != "a" {
					t.Fatalf("session up %+v", up)
				}
				h.system.Root.Send(env.Sender, &relaymsg.Registered{})
				h.expect(wire.TypeAuthOK)
			})
		})
	}
}

// dispatch sends the session a request; streamed ones get an upload window.
func (h *harness) dispatch(id string, streamed bool) *relaymsg.Exchange {
	frame := &wire.Frame{Type: wire.TypeRequest, MessageID: id, Method: "PUT", Path: "/"}
	var upload *wire.SendWindow
	if streamed {
		frame.Stream, upload = true, wire.NewSendWindow(wire.DefaultWindow)
	}
	ex := relaymsg.NewExchange("a", frame, upload)
	h.system.Root.Send(h.session, &relaymsg.Dispatch{Exchange: ex})
	return ex
}

// TestSessionDownTellsWhichRequestsWereWritten proves the account of the
// request frames when a session ends: the frame being written counts as
// written (it may reach the supervisor), those still queued are dropped
// (not written before the close frame) and left out, and a streamed one
// among them never got the front its write, nor had its upload window
// closed: another session can take the exchange whole.
func TestSessionDownTellsWhichRequestsWereWritten(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true, deafAfterAuthOK)
		h.authenticate()
		// The client reads nothing: the writer takes m1 and blocks on it.
		h.dispatch("m1", false)
		ex2 := h.dispatch("m2", true)
		h.dispatch("m3", false)
		h.p.ExpectNoMsg(time.Second)
		h.system.Root.Send(h.session, &relaymsg.CloseSession{Code: wire.CloseNormal, Reason: "replaced by a newer session"})
		down, _ := probe.Expect[*relaymsg.SessionDown](h.p)
		if !slices.Equal(down.Written, []string{"m1"}) {
			t.Fatalf("written %v, want [m1]: the frame being written only", down.Written)
		}
		select {
		case <-ex2.Accepted:
			t.Fatal("the front got a write for a request frame that was never written")
		default:
		}
		if n, err := ex2.Upload.Acquire(context.Background(), 1); n != 1 || err != nil {
			t.Fatalf("upload window of the unwritten request: %d, %v; want it still open", n, err)
		}
		h.resumeReading()
		if req := h.expect(wire.TypeRequest); req.MessageID != "m1" {
			t.Fatalf("the client read %+v, want m1 only", req)
		}
		if code, _ := h.expectClosed(); code != wire.CloseNormal {
			t.Fatalf("close %d", code)
		}
	})
}

// TestFailedWriteCountsAsUnwritten proves that a request frame whose write
// failed (the supervisor read nothing for the write timeout) is left out of
// SessionDown.Written, with those queued behind it.
func TestFailedWriteCountsAsUnwritten(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true, deafAfterAuthOK)
		h.authenticate()
		start := time.Now()
		h.dispatch("m1", false)
		h.dispatch("m2", false)
		down, env := probe.Expect[*relaymsg.SessionDown](h.p)
		if len(down.Written) != 0 || down.Reason != session.WriteFailed.String() || env.At.Sub(start) != session.DefaultWriteTimeout {
			t.Fatalf("session down %+v after %v, want WRITE_FAILED with nothing written after the write timeout", down, env.At.Sub(start))
		}
	})
}

// TestStreamedBodyWaitsForItsRequestFrame proves that the front gets the
// write for a streamed body only once the request frame is written.
func TestStreamedBodyWaitsForItsRequestFrame(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true, deafAfterAuthOK)
		h.authenticate()
		ex := h.dispatch("m1", true)
		select {
		case <-ex.Accepted:
			t.Fatal("write handed over before the request frame was written")
		case <-time.After(time.Second):
		}
		h.resumeReading()
		h.expect(wire.TypeRequest)
		select {
		case <-ex.Accepted:
		case <-time.After(time.Hour):
			t.Fatal("no write for the upload once the request frame was written")
		}
	})
}

// TestTunnelLimitRefusalCloses1013 proves that a refusal of the router
// (the tunnel's limit) closes as one of the relay's does, and that the
// session, never registered, reports no SessionDown.
func TestTunnelLimitRefusalCloses1013(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a", Instance: "i", Index: 1})
		_, env := probe.Expect[*relaymsg.Authenticate](h.p)
		h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: "a"})
		_, env = probe.Expect[*relaymsg.SessionUp](h.p)
		h.system.Root.Send(env.Sender, &relaymsg.Registered{Refused: true, Reason: "tunnel at its session limit"})
		if code, _ := h.expectClosed(); code != wire.CloseTryAgainLater {
			t.Fatalf("closed with %d, want 1013", code)
		}
		h.p.ExpectNoMsg(time.Minute)
	})
}
