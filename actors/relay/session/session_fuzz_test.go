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
	"github.com/enhanced-tunnel/tunnel/test/fuzzframes"
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
	text := fuzzframes.Text
	chunk := func(id, data string) []byte { return fuzzframes.Chunk(f, id, data) }
	seeds := []fuzzframes.Pair{
		{First: text(`{"type":"heartbeat","message_id":"h1","timestamp":1}`)},
		{First: text(`{"type":"response","message_id":"` + idWaiting + `","status":200,"body":"aGk="}`)},
		{First: text(`{"type":"response","message_id":"` + idWaiting + `","status":200,"stream":true}`),
			Second: chunk(idWaiting, "abc"), BinSecond: true},
		{First: text(`{"type":"response","message_id":"` + idStreamed + `","status":500}`)},
		{First: chunk(idStreamed, "audio"), BinFirst: true, Second: text(`{"type":"stream_end","message_id":"` + idStreamed + `"}`)},
		{First: chunk(idStreamed, strings.Repeat("x", 2*fuzzWindow)), BinFirst: true},
		{First: text(`{"type":"stream_error","message_id":"` + idStreamed + `","error":"upstream died"}`)},
		{First: text(`{"type":"window_update","message_id":"` + idUpload + `","bytes":1024}`)},
		{First: text(`{"type":"window_update","message_id":"` + idUpload + `","bytes":-5}`)},
		{First: text(`{"type":"window_update","message_id":"` + idUpload + `","bytes":9223372036854775807}`),
			Second: text(`{"type":"window_update","message_id":"` + idUpload + `","bytes":9223372036854775807}`)},
		{First: text(`{"type":"window_update","message_id":"nobody","bytes":10}`)},
		{First: text(`{"type":"error","message_id":"` + idWaiting + `","error":"no"}`)},
		{First: text(`{"type":"cancel","message_id":"` + idUpload + `"}`), Second: chunk(idUpload, "late"), BinSecond: true},
		{First: text(`{"type":"cancel","message_id":"` + idStreamed + `"}`)},
		{First: text(`{"type":"request","message_id":"r1","method":"GET","path":"/"}`), Second: chunk("r1", "body"), BinSecond: true},
		{First: text(`{"type":"auth","api_key":"again"}`)},
		{First: text(`{"type":"auth_ok","session_id":"s"}`)},
		{First: text(`{"type":"bogus","message_id":"u1"}`), Second: text(`{"type":"bogus","message_id":"u1"}`)},
		{First: text(`{"type":"","message_id":"u1"}`)},
		{First: text(`{"type":5}`)},
		{First: text(`{"type":"response","message_id":"` + idWaiting + `","status":"200"}`)},
		{First: text(`{"type":"response","message_id":"` + idWaiting + `","body":"not base64!"}`)},
		{First: text(`{"type":"response","message_id":"` + idWaiting + `","headers":{"A":"b"}}`)},
		{First: text(`[1,2,3]`)},
		{First: text(`null`)},
		{First: text(`{garbage`)},
		{First: text("{\"type\":\"heartbeat\",\"message_id\":\"\xff\xfe\"}")},
		{First: text("\xff{\"type\":\"heartbeat\"}")},
		{First: text(`{"type":"heartbeat","type":"bogus"}`)},
		{First: text(`{"type":"heartbeat","pad":"` + strings.Repeat("a", fuzzReadLimit) + `"}`)},
		{First: []byte{}, BinFirst: true},
		{First: []byte{0}, BinFirst: true},
		{First: []byte{200, 'a'}, BinFirst: true},
		{First: []byte{}},
	}
	fuzzframes.AddSeeds(f, seeds)
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
