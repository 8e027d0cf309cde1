package supervisor_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/fuzzframes"
	"github.com/enhanced-tunnel/tunnel/test/hardening"
	"github.com/enhanced-tunnel/tunnel/test/pipenet"
)

// Limits of the fuzzed tunnel: small, so that the fuzzer reaches them.
const (
	fuzzReadLimit = 4096
	fuzzChunk     = 512
)

// What is in flight when the fuzzed messages arrive, one per way a frame
// can find its id known: a request of the relay whose body is streaming to
// the handler, a Request of this side waiting for its answer, and a
// response body of this side waiting for window.
const (
	idInbound  = "in-1"
	idPending  = "pending-1"
	idOutbound = "out-1"
)

// FuzzTunnelFrames feeds a running Tunnel two arbitrary messages from the
// relay, text or binary, while streams and requests are in flight. Nothing
// may panic, and the tunnel must either stay up (its connection acks a
// heartbeat the relay sends after them, and nothing failed) or fail with
// PROTOCOL_ERROR, having closed the connection with 1002 or 1009.
func FuzzTunnelFrames(f *testing.F) {
	text := fuzzframes.Text
	chunk := func(id, data string) []byte { return fuzzframes.Chunk(f, id, data) }
	seeds := []fuzzframes.Pair{
		{First: chunk(idInbound, "more body"), BinFirst: true, Second: text(`{"type":"stream_end","message_id":"` + idInbound + `"}`)},
		{First: chunk(idInbound, strings.Repeat("x", 3*fuzzChunk)), BinFirst: true},
		{First: text(`{"type":"stream_error","message_id":"` + idInbound + `","error":"client left"}`)},
		{First: text(`{"type":"cancel","message_id":"` + idInbound + `"}`), Second: chunk(idInbound, "late"), BinSecond: true},
		{First: text(`{"type":"request","message_id":"` + idInbound + `","method":"GET","path":"/"}`)},
		{First: text(`{"type":"request","message_id":"r2","method":"GET","path":"/","stream":true}`),
			Second: text(`{"type":"stream_end","message_id":"r2"}`)},
		{First: text(`{"type":"response","message_id":"` + idPending + `","status":200,"body":"aGk="}`)},
		{First: text(`{"type":"response","message_id":"` + idPending + `","status":200,"stream":true}`),
			Second: chunk(idPending, "audio"), BinSecond: true},
		{First: text(`{"type":"error","message_id":"` + idPending + `","error":"no route"}`)},
		{First: text(`{"type":"response","message_id":"nobody","status":200}`)},
		{First: text(`{"type":"error","error":"about nothing"}`)},
		{First: text(`{"type":"window_update","message_id":"` + idOutbound + `","bytes":4096}`)},
		{First: text(`{"type":"window_update","message_id":"` + idOutbound + `","bytes":-4096}`)},
		{First: text(`{"type":"window_update","message_id":"` + idOutbound + `","bytes":9223372036854775807}`),
			Second: text(`{"type":"window_update","message_id":"` + idOutbound + `","bytes":9223372036854775807}`)},
		{First: text(`{"type":"window_update","message_id":"nobody","bytes":10}`)},
		{First: text(`{"type":"cancel","message_id":"` + idOutbound + `"}`)},
		{First: chunk("nobody", "x"), BinFirst: true, Second: chunk("nobody", "y"), BinSecond: true},
		{First: text(`{"type":"stream_end","message_id":"nobody"}`)},
		{First: text(`{"type":"heartbeat_ack","message_id":"unasked","timestamp":1}`)},
		{First: text(`{"type":"bogus","message_id":"b"}`)},
		{First: text(`{"type":"auth_ok","session_id":"again"}`)},
		{First: text(`{"type":null}`)},
		{First: text(`{"type":"request","message_id":7}`)},
		{First: text(`{garbage`)},
		{First: text("{\"type\":\"request\",\"message_id\":\"\xff\",\"path\":\"/\"}")},
		{First: text(`{"type":"error","error":"` + strings.Repeat("x", fuzzReadLimit) + `"}`)},
		{First: []byte{}, BinFirst: true},
		{First: []byte{9, 'x'}, BinFirst: true},
	}
	fuzzframes.AddSeeds(f, seeds)
	f.Fuzz(func(t *testing.T, first []byte, binFirst bool, second []byte, binSecond bool) {
		synctest.Test(t, func(t *testing.T) {
			fz := startFuzzTunnel(t)
			s := fz.inFlight()

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
			synctest.Wait()
			st := fz.tunnel.Status()
			if up {
				if st.State != messages.Authenticated || len(st.Health.FailureTypes) != 0 {
					t.Fatalf("tunnel up but status %s with failures %v", st.State, st.Health.FailureTypes)
				}
			} else {
				if code := s.CloseCode(); code != wire.CloseProtocolError && code != wire.CloseTooBig {
					t.Fatalf("connection closed with %d, want 1002 or 1009", code)
				}
				if st.Health.LastFailureType != messages.ProtocolError.String() {
					t.Fatalf("failure %q (%s), want PROTOCOL_ERROR", st.Health.LastFailureType, st.Health.LastError)
				}
			}
			fz.stop()
			for _, e := range fz.logs.AllEntries() {
				// protoactor logs every panic it recovers; the only one
				// expected is the connection failing with its typed reason.
				if e.Message == "[ACTOR] Recovering" && !strings.HasPrefix(fmt.Sprint(e.Data["reason"]), messages.ProtocolError.String()) {
					t.Fatalf("an actor panicked: %v", e.Data)
				}
			}
		})
	})
}

type fuzzTunnel struct {
	t      *testing.T
	net    *pipenet.Network
	relay  *hardening.RawRelay
	tunnel *supervisor.Tunnel
	logs   *logtest.Hook
	work   sync.WaitGroup // the goroutines that keep things in flight
	once   sync.Once
}

func startFuzzTunnel(t *testing.T) *fuzzTunnel {
	n := pipenet.New()
	fz := &fuzzTunnel{t: t, net: n, relay: hardening.NewRawRelay(n.Listener())}
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	fz.logs = hook
	cfg := supervisor.DefaultConfig()
	cfg.Connections = 1 // the one-connection behaviour under test
	cfg.RelayURL, cfg.APIKey = fz.relay.URL(), stubKey
	cfg.NetDialContext = n.DialContext
	cfg.ReadLimit, cfg.InlineLimit, cfg.ChunkSize, cfg.Window = fuzzReadLimit, fuzzChunk, fuzzChunk, fuzzChunk
	cfg.Logger = logger
	// The handler drains what it is given and answers requests.
	cfg.OnMessage = func(ctx context.Context, tun *supervisor.Tunnel, msg *messages.TunnelMessage) {
		if msg.BodyStream != nil {
			_, _ = io.Copy(io.Discard, msg.BodyStream)
		}
		if msg.Type == messages.TypeRequest {
			_ = tun.Send(ctx, &messages.TunnelMessage{Type: messages.TypeResponse, MessageID: msg.MessageID, Status: 204})
		}
	}
	tun, err := supervisor.Start(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fz.tunnel = tun
	t.Cleanup(fz.stop)
	return fz
}

// inFlight waits for the tunnel's connection and puts the three exchanges
// of the fuzz target in flight.
func (fz *fuzzTunnel) inFlight() *hardening.RawSession {
	t := fz.t
	s := <-fz.relay.Sessions()
	synctest.Wait()
	if st := fz.tunnel.Status(); st.State != messages.Authenticated {
		t.Fatalf("state %s after auth_ok", st.State)
	}
	next := func(typ string) *wire.Frame {
		t.Helper()
		for m := range s.Messages() {
			if m.Frame != nil && m.Frame.Type == typ {
				return m.Frame
			}
		}
		t.Fatalf("connection closed before a %s frame", typ)
		return nil
	}

	if err := s.Send(&wire.Frame{Type: wire.TypeRequest, MessageID: idInbound, Method: "POST", Path: "/up", Stream: true}); err != nil {
		t.Fatal(err)
	}
	first, _ := wire.EncodeChunk(idInbound, []byte("first part"))
	_ = s.Write(true, first)

	fz.work.Go(func() {
		resp, err := fz.tunnel.Request(context.Background(), &messages.TunnelMessage{MessageID: idPending, Method: "GET", Path: "/"})
		if err == nil && resp.BodyStream != nil {
			_, _ = io.Copy(io.Discard, resp.BodyStream)
		}
	})
	next(wire.TypeRequest)

	body := strings.NewReader(strings.Repeat("a", 4*fuzzChunk))
	fz.work.Go(func() {
		_ = fz.tunnel.Send(context.Background(), &messages.TunnelMessage{Type: messages.TypeResponse, MessageID: idOutbound, Status: 200, BodyStream: body})
	})
	next(wire.TypeResponse)
	synctest.Wait() // the first window's worth of chunks is out
	return s
}

// stop stops everything and waits for it; later calls do nothing.
func (fz *fuzzTunnel) stop() { fz.once.Do(fz.stopOnce) }

func (fz *fuzzTunnel) stopOnce() {
	if err := fz.tunnel.Stop(context.Background()); err != nil {
		fz.t.Errorf("Stop: %v", err)
	}
	fz.work.Wait()
	_ = fz.relay.Close()
	_ = fz.net.Close()
	synctest.Wait()
	time.Sleep(time.Second) // fake time: lets protoactor's dead-letter throttle run out
}
