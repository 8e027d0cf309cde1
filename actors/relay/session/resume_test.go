package session_test

import (
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

// authenticateWithResume runs the handshake of a supervisor that asks for
// resume, and returns the router's SessionUp and the auth_ok.
func (h *harness) authenticateWithResume() (*relaymsg.SessionUp, *wire.Frame) {
	h.t.Helper()
	h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a", Instance: "i", Index: 1, Resume: true})
	_, env := probe.Expect[*relaymsg.Authenticate](h.p)
	h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: "a"})
	up, env := probe.Expect[*relaymsg.SessionUp](h.p)
	h.system.Root.Send(env.Sender, &relaymsg.Registered{})
	return up, h.expect(wire.TypeAuthOK)
}

// streamed dispatches id, answers it with a streamed response and sends
// chunk: it returns the body's reader, as the router got it.
func (h *harness) streamed(id, chunk string) *wire.StreamReader {
	h.t.Helper()
	h.dispatch(id, false)
	h.expect(wire.TypeRequest)
	h.send(&wire.Frame{Type: wire.TypeResponse, MessageID: id, Status: 200, Stream: true})
	resp, _ := probe.Expect[*relaymsg.Response](h.p)
	h.chunk(id, chunk)
	// The session handles frames in order: once the heartbeat is acked,
	// the chunk is in the body, before anything the test sends next.
	h.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "sync-" + id})
	h.expect(wire.TypeHeartbeatAck)
	return resp.Body
}

func (h *harness) chunk(id, data string) {
	h.t.Helper()
	b, _ := wire.EncodeChunk(id, []byte(data))
	if err := h.client.WriteMessage(websocket.BinaryMessage, b); err != nil {
		h.t.Fatal(err)
	}
}

// readN reads n bytes of body.
func readN(t *testing.T, body io.Reader, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(body, buf); err != nil {
		t.Fatalf("body: %q, %v", buf, err)
	}
	return string(buf)
}

// TestAuthNegotiatesResume proves that auth_ok says resume when, and only
// when, the supervisor asked for it and the relay keeps streams, and that
// the router hears the same.
func TestAuthNegotiatesResume(t *testing.T) {
	for _, tc := range []struct {
		name        string
		asked, kept bool
	}{
		{"asked and kept", true, true},
		{"not asked", false, true},
		{"relay keeps none", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				cfg := session.DefaultConfig()
				cfg.Resume = tc.kept
				h := newHarness(t, system, cfg, true)
				h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a", Instance: "i", Resume: tc.asked})
				_, env := probe.Expect[*relaymsg.Authenticate](h.p)
				h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: "a"})
				up, env := probe.Expect[*relaymsg.SessionUp](h.p)
				h.system.Root.Send(env.Sender, &relaymsg.Registered{})
				ok := h.expect(wire.TypeAuthOK)
				want := tc.asked && tc.kept
				if up.Resume != want || ok.Resume != want {
					t.Fatalf("session up resume %v, auth_ok resume %v; want %v", up.Resume, ok.Resume, want)
				}
			})
		})
	}
}

// TestStreamResumeAsksTheRouter proves that stream_resume goes to the
// router from a session with resume, and is refused at once without.
func TestStreamResumeAsksTheRouter(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.authenticateWithResume()
		h.send(&wire.Frame{Type: wire.TypeStreamResume, MessageID: "m1"})
		if r, _ := probe.Expect[*relaymsg.Resume](h.p); r.MessageID != "m1" || !r.Session.Equal(h.session) {
			t.Fatalf("resume %+v", r)
		}
		h.system.Root.Send(h.session, &relaymsg.ResumeRefused{MessageID: "m1"})
		if e := h.expect(wire.TypeError); e.MessageID != "m1" || e.Error != "stream cannot be resumed" {
			t.Fatalf("refusal %+v", e)
		}
	})
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.authenticate()
		h.send(&wire.Frame{Type: wire.TypeStreamResume, MessageID: "m1"})
		if e := h.expect(wire.TypeError); e.MessageID != "m1" || e.Error != "stream cannot be resumed" {
			t.Fatalf("refusal %+v", e)
		}
		h.p.ExpectNoMsg(time.Second)
	})
}

// TestAdoptAnswersOffsetAndCreditThenRoutesTheStream proves that an
// adopted stream is answered with the bytes the reader has and the credit
// its sender has left, and that its chunks, window_updates and end then
// go through the adopting session.
func TestAdoptAnswersOffsetAndCreditThenRoutesTheStream(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.authenticateWithResume()
		// Fed by a session that is gone: 3 of a window of 8 bytes came.
		body := wire.NewStreamReader(8, func(int64) { t.Error("grant through the old session") })
		if err := body.Push([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		h.system.Root.Send(h.session, &relaymsg.Adopt{MessageID: "m1", Body: body})
		if r := h.expect(wire.TypeStreamResume); r.MessageID != "m1" || r.Offset != 3 || r.Bytes != 5 {
			t.Fatalf("stream_resume %+v, want offset 3 and 5 bytes of credit", r)
		}
		h.chunk("m1", "defgh")
		if got := readN(t, body, 8); got != "abcdefgh" {
			t.Fatalf("body %q", got)
		}
		if wu := h.expect(wire.TypeWindowUpdate); wu.MessageID != "m1" || wu.Bytes != 8 {
			t.Fatalf("window_update %+v", wu)
		}
		h.send(&wire.Frame{Type: wire.TypeStreamEnd, MessageID: "m1"})
		if n, err := body.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("after stream_end: %d, %v", n, err)
		}
	})
}

// TestSessionWithResumeOrphansItsStreams proves that a session with
// resume that ends hands its streaming bodies to the router unfailed.
func TestSessionWithResumeOrphansItsStreams(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.authenticateWithResume()
		body := h.streamed("m1", "abc")
		if got := readN(t, body, 3); got != "abc" {
			t.Fatalf("body %q", got)
		}
		h.system.Root.Send(h.session, &relaymsg.CloseSession{Code: wire.CloseNormal, Reason: "replaced"})
		down, _ := probe.Expect[*relaymsg.SessionDown](h.p)
		if len(down.Orphans) != 1 || down.Orphans[0].MessageID != "m1" || down.Orphans[0].Body != body {
			t.Fatalf("orphans %+v", down.Orphans)
		}
		// Still open: what another session pushes is read.
		if offset, _ := body.Rebind(func(int64) {}); offset != 3 {
			t.Fatalf("offset %d", offset)
		}
		if err := body.Push([]byte("de")); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, body, 2); got != "de" {
			t.Fatalf("body %q", got)
		}
	})
}

// TestHandoverGivesTheStreamUp proves that a session told to hand a
// stream over gives the router its reader, and drops the stream's late
// frames without a word.
func TestHandoverGivesTheStreamUp(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		h := newHarness(t, system, session.DefaultConfig(), true)
		h.authenticateWithResume()
		body := h.streamed("m1", "abc")
		to := &actor.PID{Address: "nonhost", Id: "other"}
		h.system.Root.Send(h.session, &relaymsg.Handover{MessageID: "m1", To: to})
		if ho, _ := probe.Expect[*relaymsg.HandedOver](h.p); ho.MessageID != "m1" || ho.Body != body || !ho.To.Equal(to) {
			t.Fatalf("handed over %+v", ho)
		}
		h.chunk("m1", "late")
		h.send(&wire.Frame{Type: wire.TypeStreamEnd, MessageID: "m1"})
		h.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "hb"})
		h.expect(wire.TypeHeartbeatAck)
		if got := readN(t, body, 3); got != "abc" {
			t.Fatalf("body %q", got)
		}
		// A stream it no longer feeds is handed over as nothing.
		h.system.Root.Send(h.session, &relaymsg.Handover{MessageID: "m1", To: to})
		if ho, _ := probe.Expect[*relaymsg.HandedOver](h.p); ho.Body != nil {
			t.Fatalf("handed over %+v, want no body", ho)
		}
	})
}
