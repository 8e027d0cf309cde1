package connection_test

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/enhanced-tunnel/tunnel/actors/connection"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/fuzzframes"
	"github.com/enhanced-tunnel/tunnel/test/hardening"
	"github.com/enhanced-tunnel/tunnel/test/pipenet"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

// FuzzConnectionFrames feeds an authenticated connection two arbitrary
// messages from the relay, text or binary. The connection must never
// panic, and must either stay up (it acks a heartbeat the relay sends after
// them) or fail with PROTOCOL_ERROR, having closed the connection with 1002
// (malformed) or 1009 (over the read limit).
func FuzzConnectionFrames(f *testing.F) {
	text := fuzzframes.Text
	chunk := func(id, data string) []byte { return fuzzframes.Chunk(f, id, data) }
	seeds := []fuzzframes.Pair{
		{First: text(`{"type":"request","message_id":"r1","method":"POST","path":"/v1/tts","body":"aGk="}`)},
		{First: text(`{"type":"request","message_id":"r1","stream":true}`), Second: chunk("r1", "audio"), BinSecond: true},
		{First: text(`{"type":"response","message_id":"nobody","status":200}`)},
		{First: text(`{"type":"error","message_id":"nobody","error":"x"}`)},
		{First: text(`{"type":"cancel","message_id":"r1"}`)},
		{First: text(`{"type":"stream_end","message_id":"r1"}`)},
		{First: text(`{"type":"stream_error","message_id":"r1","error":"x"}`)},
		{First: text(`{"type":"window_update","message_id":"nobody","bytes":-1}`)},
		{First: text(`{"type":"heartbeat","message_id":"h","timestamp":-9223372036854775808}`)},
		{First: text(`{"type":"heartbeat_ack","message_id":"h","timestamp":1}`)},
		{First: text(`{"type":"bogus","message_id":"b1"}`), Second: text(`{"type":"bogus"}`)},
		{First: text(`{"type":"auth_ok","session_id":"again"}`)},
		{First: text(`{"type":"auth_error","error":"late"}`)},
		{First: text(`{"type":"auth","api_key":"k"}`)},
		{First: text(`{"type":"","message_id":"x"}`)},
		{First: text(`{"type":["request"]}`)},
		{First: text(`{"type":"request","headers":{"A":[1]}}`)},
		{First: text(`{"type":"request","body":"%%%"}`)},
		{First: text(`{"type":"request","status":1e400}`)},
		{First: text(`{garbage`)},
		{First: text(`"just a string"`)},
		{First: text("{\"type\":\"heartbeat\",\"message_id\":\"\xc3\x28\"}")},
		{First: text("\xc3\x28")},
		{First: text(`{"type":"error","error":"` + strings.Repeat("x", readLimit) + `"}`)},
		{First: []byte{}},
		{First: []byte{}, BinFirst: true},
		{First: []byte{5, 'a'}, BinFirst: true},
		{First: chunk("unknown", ""), BinFirst: true},
	}
	fuzzframes.AddSeeds(f, seeds)
	f.Fuzz(func(t *testing.T, first []byte, binFirst bool, second []byte, binSecond bool) {
		probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
			n := pipenet.New()
			relay := hardening.NewRawRelay(n.Listener())
			t.Cleanup(func() {
				_ = relay.Close()
				_ = n.Close()
			})
			p := probe.New(t, system)
			p.Wait = time.Hour
			cfg := connection.DefaultConfig()
			cfg.URL, cfg.APIKey = relay.URL(), apiKey
			cfg.ReadLimit = readLimit
			cfg.NetDialContext = n.DialContext
			pid := p.SpawnChild(connection.Props(cfg))
			t.Cleanup(func() {
				_ = system.Root.StopFuture(pid).Wait()
				synctest.Wait()
			})
			for want := messages.Connecting; want <= messages.Authenticated; want++ {
				if sc, _ := probe.Expect[*messages.StateChanged](p); sc.State != want {
					t.Fatalf("state %v, want %v", sc.State, want)
				}
			}
			s := <-relay.Sessions()

			// A nil second message (a seed of one) is not sent at all.
			if err := s.Write(binFirst, first); err == nil && second != nil {
				_ = s.Write(binSecond, second)
			}
			_ = s.Send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "after-fuzz"})
			up := false
			for m := range s.Messages() {
				if m.Frame != nil && m.Frame.Type == wire.TypeHeartbeatAck && m.Frame.MessageID == "after-fuzz" {
					up = true
					break
				}
			}
			if !up {
				if code := s.CloseCode(); code != wire.CloseProtocolError && code != wire.CloseTooBig {
					t.Fatalf("connection closed with %d, want 1002 or 1009", code)
				}
			}

			synctest.Wait()
			p.Wait = time.Millisecond
			failed := false
			for {
				e, ok := p.Receive()
				if !ok {
					break
				}
				failure, isFailure := e.Msg.(*probe.Failure)
				if !isFailure {
					continue
				}
				cf, ok := failure.Reason.(*actormsg.ConnectionFailed)
				if !ok || cf.Type != messages.ProtocolError {
					t.Fatalf("connection failed with %v, want PROTOCOL_ERROR", failure.Reason)
				}
				failed = true
			}
			if up == failed {
				t.Fatalf("acked the heartbeat: %v, failed: %v; want exactly one", up, failed)
			}
		})
	})
}
