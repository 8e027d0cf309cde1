package session_test

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay/session"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

// The encoding is the first of the supervisor's offer the relay accepts:
// auth_ok names it, and from then on the session answers in it, while JSON
// text stays readable.
func TestEncodingNegotiatedInAuth(t *testing.T) {
	for _, tc := range []struct {
		name     string
		offer    []string
		accepts  []string
		want     string // auth_ok's encoding
		wantBin1 bool
	}{
		{"bin1 offered and accepted", []string{wire.EncodingBin1, wire.EncodingJSON}, []string{wire.EncodingBin1}, wire.EncodingBin1, true},
		{"nothing offered", nil, []string{wire.EncodingBin1}, "", false},
		{"json only offered", []string{wire.EncodingJSON}, []string{wire.EncodingBin1}, "", false},
		{"relay keeps json", []string{wire.EncodingBin1, wire.EncodingJSON}, nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				cfg := session.DefaultConfig()
				cfg.Encodings = tc.accepts
				h := newHarness(t, system, cfg, true)
				h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a", Encodings: tc.offer})
				_, env := probe.Expect[*relaymsg.Authenticate](h.p)
				h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: "a"})
				_, env = probe.Expect[*relaymsg.SessionUp](h.p)
				h.system.Root.Send(env.Sender, &relaymsg.Registered{})
				if ok := h.expect(wire.TypeAuthOK); ok.Encoding != tc.want {
					t.Fatalf("auth_ok encoding %q, want %q", ok.Encoding, tc.want)
				}

				// A JSON heartbeat is always understood.
				h.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "1", Timestamp: 7})
				ack := h.expectAck(tc.wantBin1)
				if ack.MessageID != "1" || ack.Timestamp != 7 {
					t.Fatalf("ack %+v", ack)
				}
				if !tc.wantBin1 {
					return
				}
				hb, err := wire.AppendBin1(nil, &wire.Frame{Type: wire.TypeHeartbeat, MessageID: "2", Timestamp: 8})
				if err != nil {
					t.Fatal(err)
				}
				if err := h.client.WriteMessage(websocket.BinaryMessage, hb); err != nil {
					t.Fatal(err)
				}
				if ack := h.expectAck(true); ack.MessageID != "2" || ack.Timestamp != 8 {
					t.Fatalf("ack %+v", ack)
				}
			})
		})
	}
}

// expectAck takes a heartbeat_ack: a bin1 binary message when bin1 is
// set, else JSON text.
func (h *harness) expectAck(bin1 bool) *wire.Frame {
	h.t.Helper()
	if !bin1 {
		return h.expect(wire.TypeHeartbeatAck)
	}
	data := <-h.chunks
	f, err := wire.DecodeBin1(data)
	if err != nil || f.Type != wire.TypeHeartbeatAck {
		h.t.Fatalf("got %q (%v), want a bin1 heartbeat_ack", data, err)
	}
	return f
}
