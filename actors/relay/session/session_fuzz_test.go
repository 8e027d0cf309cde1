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

// Limits of the fuzzed session: small, so that the fuzzer reaches them.
const (
	fuzzReadLimit = 4096
	fuzzWindow    = 64
)

// The exchanges in flight when the fuzzed messages arrive, one per way a
// frame can find its id known: an upload waiting for window, a response
// body being streamed, a request not answered yet.
const (
	idUpload   = "m-upload"
	idStreamed = "m-streamed"
	idWaiting  = "m-waiting"
)

// FuzzSessionFrames feeds an authenticated session two arbitrary messages
// from its supervisor, text or binary. The session must never panic, and
// must either stay up (a heartbeat sent after them is acked) or close the
// connection with a protocol close code: 1002 for a malformed frame, 1009
// for one over the read limit.
func FuzzSessionFrames(f *testing.F) {
	text := func(s string) []byte { return []byte(s) }
	chunk := func(id, data string) []byte {
		b, err := wire.EncodeChunk(id, []byte(data))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	seeds := []struct {
		first, second []byte
		binFirst      bool
		binSecond     bool
	}{
		{first: text(`{"type":"heartbeat","message_id":"h1","timestamp":1}`)},
		{first: text(`{"type":"response","message_id":"` + idWaiting + `","status":200,"body":"aGk="}`)},
		{first: text(`{"type":"response","message_id":"` + idWaiting + `","status":200,"stream":true}`),
			second: chunk(idWaiting, "abc"), binSecond: true},
		{first: text(`{"type":"response","message_id":"` + idStreamed + `","status":500}`)},
		{first: chunk(idStreamed, "audio"), binFirst: true, second: text(`{"type":"stream_end","message_id":"` + idStreamed + `"}`)},
		{first: chunk(idStreamed, strings.Repeat("x", 2*fuzzWindow)), binFirst: true},
		{first: text(`{"type":"stream_error","message_id":"` + idStreamed + `","error":"upstream died"}`)},
		{first: text(`{"type":"window_update","message_id":"` + idUpload + `","bytes":1024}`)},
		{first: text(`{"type":"window_update","message_id":"` + idUpload + `","bytes":-5}`)},
		{first: text(`{"type":"window_update","message_id":"` + idUpload + `","bytes":9223372036854775807}`),
			second: text(`{"type":"window_update","message_id":"` + idUpload + `","bytes":9223372036854775807}`)},
		{first: text(`{"type":"window_update","message_id":"nobody","bytes":10}`)},
		{first: text(`{"type":"error","message_id":"` + idWaiting + `","error":"no"}`)},
		{first: text(`{"type":"cancel","message_id":"` + idUpload + `"}`), second: chunk(idUpload, "late"), binSecond: true},
		{first: text(`{"type":"cancel","message_id":"` + idStreamed + `"}`)},
		{first: text(`{"type":"request","message_id":"r1","method":"GET","path":"/"}`), second: chunk("r1", "body"), binSecond: true},
		{first: text(`{"type":"auth","api_key":"again"}`)},
		{first: text(`{"type":"auth_ok","session_id":"s"}`)},
		{first: text(`{"type":"bogus","message_id":"u1"}`), second: text(`{"type":"bogus","message_id":"u1"}`)},
		{first: text(`{"type":"","message_id":"u1"}`)},
		{first: text(`{"type":5}`)},
		{first: text(`{"type":"response","message_id":"` + idWaiting + `","status":"200"}`)},
		{first: text(`{"type":"response","message_id":"` + idWaiting + `","body":"not base64!"}`)},
		{first: text(`{"type":"response","message_id":"` + idWaiting + `","headers":{"A":"b"}}`)},
		{first: text(`[1,2,3]`)},
		{first: text(`null`)},
		{first: text(`{garbage`)},
		{first: text("{\"type\":\"heartbeat\",\"message_id\":\"\xff\xfe\"}")},
		{first: text("\xff{\"type\":\"heartbeat\"}")},
		{first: text(`{"type":"heartbeat","type":"bogus"}`)},
		{first: text(`{"type":"heartbeat","pad":"` + strings.Repeat("a", fuzzReadLimit) + `"}`)},
		{first: []byte{}, binFirst: true},
		{first: []byte{0}, binFirst: true},
		{first: []byte{200, 'a'}, binFirst: true},
		{first: []byte{}},
	}
	for _, s := range seeds {
		f.Add(s.first, s.binFirst, s.second, s.binSecond)
	}
	f.Fuzz(func(t *testing.T, first []byte, binFirst bool, second []byte, binSecond bool) {
		probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
			cfg := session.DefaultConfig()
			cfg.ReadLimit = fuzzReadLimit
			cfg.Window = fuzzWindow
			h := newHarness(t, system, cfg, true)
			h.authenticate()
			h.inFlight()

			kind := func(binary bool) int {
				if binary {
					return websocket.BinaryMessage
				}
				return websocket.TextMessage
			}
			// A write may fail once the session has closed on the first
			// message: the close code says whether that was right. A nil
			// second message (a seed of one) is not sent at all.
			if err := h.client.WriteMessage(kind(binFirst), first); err == nil && second != nil {
				_ = h.client.WriteMessage(kind(binSecond), second)
			}
			_ = h.client.WriteMessage(websocket.TextMessage, wire.MustEncode(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "after-fuzz"}))

			if code, up := h.upOrClosed("after-fuzz"); !up && code != wire.CloseProtocolError && code != wire.CloseTooBig {
				t.Fatalf("session closed with %d, want it up, or closed with 1002 or 1009", code)
			}
			synctest.Wait()
			h.p.Wait = time.Millisecond
			for {
				e, ok := h.p.Receive()
				if !ok {
					break
				}
				if failure, isFailure := e.Msg.(*probe.Failure); isFailure {
					t.Fatalf("session panicked: %v", failure.Reason)
				}
			}
		})
	})
}

// inFlight dispatches the three exchanges of the fuzz target and has the
// supervisor start the streamed response.
func (h *harness) inFlight() {
	h.t.Helper()
	upload := wire.NewSendWindow(fuzzWindow)
	for _, ex := range []*relaymsg.Exchange{
		relaymsg.NewExchange("a", &wire.Frame{Type: wire.TypeRequest, MessageID: idUpload, Method: "POST", Path: "/up", Stream: true}, upload),
		relaymsg.NewExchange("a", &wire.Frame{Type: wire.TypeRequest, MessageID: idStreamed, Method: "GET", Path: "/audio"}, nil),
		relaymsg.NewExchange("a", &wire.Frame{Type: wire.TypeRequest, MessageID: idWaiting, Method: "GET", Path: "/slow"}, nil),
	} {
		h.system.Root.Send(h.session, &relaymsg.Dispatch{Exchange: ex})
		h.expect(wire.TypeRequest)
	}
	h.send(&wire.Frame{Type: wire.TypeResponse, MessageID: idStreamed, Status: 200, Stream: true})
	if resp, _ := probe.Expect[*relaymsg.Response](h.p); resp.MessageID != idStreamed || resp.Body == nil {
		h.t.Fatalf("response %+v", resp)
	}
}

// upOrClosed reads what the session sends until the ack of heartbeat id
// (up) or the end of the connection (its close code).
func (h *harness) upOrClosed(id string) (code int, up bool) {
	h.t.Helper()
	for {
		select {
		case f := <-h.frames:
			if f.Type == wire.TypeHeartbeatAck && f.MessageID == id {
				return 0, true
			}
		case code := <-h.closed:
			// Frames read before the close are still queued.
			for {
				select {
				case f := <-h.frames:
					if f.Type == wire.TypeHeartbeatAck && f.MessageID == id {
						return 0, true
					}
					continue
				default:
				}
				return code, false
			}
		case <-h.chunks:
		case <-time.After(time.Hour):
			h.t.Fatal("the session neither acked the heartbeat nor closed")
		}
	}
}
