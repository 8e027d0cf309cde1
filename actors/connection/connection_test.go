package connection_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/enhanced-tunnel/tunnel/actors/connection"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/pipenet"
	"github.com/enhanced-tunnel/tunnel/test/probe"
	"github.com/enhanced-tunnel/tunnel/test/relaystub"
)

const (
	apiKey    = "test-key"
	readLimit = 4096
)

// bubble is one test's world inside a synctest bubble: an actor system with
// the probe as the connection's parent, and a relay stub on a pipe network.
type bubble struct {
	t      *testing.T
	system *actor.ActorSystem
	p      *probe.Probe
	net    *pipenet.Network
	stub   *relaystub.Stub
	cfg    connection.Config
}

func newBubble(t *testing.T) *bubble {
	system := actor.NewActorSystem(probe.Quiet()...)
	p := probe.New(t, system)
	p.Wait = time.Hour
	n := pipenet.New()
	stub := relaystub.New(n.Listener(), relaystub.Options{APIKey: apiKey, OversizeBytes: 2 * readLimit})
	t.Cleanup(func() {
		_ = stub.Close()
		_ = n.Close()
	})
	cfg := connection.DefaultConfig()
	cfg.URL, cfg.APIKey, cfg.Client = stub.URL(), apiKey, "test/1"
	cfg.ReadLimit = readLimit
	cfg.NetDialContext = n.DialContext
	// The heartbeat actor, whose frames keep a real connection alive, is
	// not here: pings stand in for it.
	cfg.PingInterval = 15 * time.Second
	return &bubble{t: t, system: system, p: p, net: n, stub: stub, cfg: cfg}
}

func (b *bubble) spawn() *actor.PID { return b.p.SpawnChild(connection.Props(b.cfg)) }

// stop stops the connection and lets the probe hear of it: the future
// returns before the parent's Terminated is handled, and a probe stopped in
// between would send Stop to a gone child, a dead letter whose throttle
// timer outlives the bubble.
func (b *bubble) stop(pid *actor.PID) {
	_ = b.system.Root.StopFuture(pid).Wait()
	synctest.Wait()
}

// authenticated runs body in a bubble against a connection that has just
// authenticated, and stops the connection afterwards.
func authenticated(t *testing.T, body func(t *testing.T, b *bubble, pid *actor.PID)) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		pid := b.spawn()
		b.expectStates()
		body(t, b, pid)
		b.stop(pid)
	})
}

// expectStates asserts the four states of a successful attempt, in order,
// and returns the last.
func (b *bubble) expectStates() *messages.StateChanged {
	b.t.Helper()
	return b.expectStatesFrom(messages.Connecting)
}

// expectStatesFrom asserts the states of a successful attempt from first on.
func (b *bubble) expectStatesFrom(first messages.State) *messages.StateChanged {
	b.t.Helper()
	var last *messages.StateChanged
	for want := first; want <= messages.Authenticated; want++ {
		last, _ = probe.Expect[*messages.StateChanged](b.p)
		if last.State != want || last.Attempt != 0 {
			b.t.Fatalf("state = %v (attempt %d), want %v (attempt 0)", last.State, last.Attempt, want)
		}
	}
	return last
}

// expectFailure returns the connection's failure and when it reached the probe.
func (b *bubble) expectFailure(pid *actor.PID) (*actormsg.ConnectionFailed, time.Time) {
	b.t.Helper()
	f, env := probe.ExpectSkipping[*probe.Failure](b.p)
	cf, ok := f.Reason.(*actormsg.ConnectionFailed)
	if !ok || !f.Who.Equal(pid) {
		b.t.Fatalf("failure of %v with %T %v", f.Who, f.Reason, f.Reason)
	}
	return cf, env.At
}

// stubFrame returns the next frame of type typ the stub received.
func (b *bubble) stubFrame(typ string) relaystub.Received {
	b.t.Helper()
	timeout := time.After(time.Hour)
	for {
		select {
		case r := <-b.stub.Frames():
			if r.Frame != nil && r.Frame.Type == typ {
				return r
			}
		case <-timeout:
			b.t.Fatalf("stub received no %q frame", typ)
		}
	}
}

func outbound(ctx context.Context, data string) *actormsg.Outbound {
	return &actormsg.Outbound{Ctx: ctx, Data: []byte(data), Reply: make(chan error, 1)}
}

func TestAuthenticatesAndStaysUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		start := time.Now()
		pid := b.spawn()
		sc := b.expectStates()
		if sc.SessionID != "session-1" || sc.ConnectTime != 0 || !sc.At.Equal(start) {
			t.Fatalf("authenticated = %+v", sc)
		}
		auth := b.stubFrame(wire.TypeAuth).Frame
		if auth.APIKey != apiKey || auth.Tunnel != wire.DefaultTunnel || auth.Client != "test/1" {
			t.Fatalf("auth frame = %+v", auth)
		}
		// Pings and pongs keep the read deadline (PongTimeout 30 s) moving.
		b.p.ExpectNoMsg(time.Hour)
		b.stop(pid)
	})
}

func TestFailureTypes(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(b *bubble)
		want    messages.FailureType
		wasAuth bool
		wantErr error // matched with errors.Is, when set
		timed   bool  // the failure comes exactly after from spawn
		after   time.Duration
	}{
		{name: "auth error", setup: func(b *bubble) { b.stub.SetMode(relaystub.AuthError) }, want: messages.AuthFailure},
		{name: "wrong key", setup: func(b *bubble) { b.cfg.APIKey = "wrong" }, want: messages.AuthFailure},
		{name: "HTTP 401", setup: func(b *bubble) { b.stub.SetHTTPStatus(http.StatusUnauthorized) }, want: messages.AuthFailure},
		{name: "HTTP 429", setup: func(b *bubble) { b.stub.SetHTTPStatus(http.StatusTooManyRequests) }, want: messages.AuthFailure},
		{name: "HTTP 503", setup: func(b *bubble) { b.stub.SetHTTPStatus(http.StatusServiceUnavailable) }, want: messages.Unknown},
		{name: "no auth reply", setup: func(b *bubble) { b.stub.SetMode(relaystub.NoAuthReply) }, want: messages.Timeout, timed: true, after: 10 * time.Second},
		{name: "garbage", setup: func(b *bubble) { b.stub.SetMode(relaystub.Garbage) }, want: messages.ProtocolError, wantErr: wire.ErrMalformed},
		{name: "oversized", setup: func(b *bubble) { b.stub.SetMode(relaystub.Oversized) }, want: messages.ProtocolError},
		{name: "drop after auth", setup: func(b *bubble) { b.stub.SetMode(relaystub.DropAfterAuth) }, want: messages.NetworkError, wasAuth: true},
		{name: "refused", setup: func(b *bubble) { b.net.SetRefusing(true) }, want: messages.ConnectionRefused, timed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBubble(t)
				tc.setup(b)
				start := time.Now()
				pid := b.spawn()
				cf, at := b.expectFailure(pid)
				if cf.Type != tc.want || cf.WasAuthenticated != tc.wasAuth {
					t.Fatalf("failure = %v (authenticated %v), want %v (authenticated %v)", cf, cf.WasAuthenticated, tc.want, tc.wasAuth)
				}
				if tc.wantErr != nil && !errors.Is(cf, tc.wantErr) {
					t.Fatalf("failure %v does not wrap %v", cf, tc.wantErr)
				}
				if got := at.Sub(start); tc.timed && got != tc.after {
					t.Fatalf("failed after %v, want exactly %v", got, tc.after)
				}
				b.stop(pid)
			})
		})
	}
}

func TestAuthErrorLogsTheRelaysTextAndNeverTheKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		logger, hook := logtest.NewNullLogger()
		logger.SetLevel(logrus.DebugLevel)
		b.cfg.Logger = logger
		b.stub.SetMode(relaystub.AuthError)
		pid := b.spawn()
		cf, _ := b.expectFailure(pid)
		b.stop(pid)

		var authErr *connection.AuthError
		if !errors.As(cf, &authErr) || authErr.Reason != relaystub.InvalidKey {
			t.Fatalf("failure %v does not carry the relay's text", cf)
		}
		var found bool
		for _, e := range hook.AllEntries() {
			line, _ := e.String()
			if strings.Contains(line, apiKey) {
				t.Fatalf("log line holds the API key: %s", line)
			}
			if e.Level == logrus.ErrorLevel && e.Message == "Authentication failed: Invalid API key" &&
				e.Data["actor"] == "connection" && e.Data["failure_type"] == "AUTH_FAILURE" && e.Data["state"] == "AUTHENTICATING" {
				found = true
			}
		}
		if !found {
			t.Fatalf("no error entry \"Authentication failed: Invalid API key\" in %d entries", len(hook.AllEntries()))
		}
	})
}

func TestStaleFailsWithNetworkError(t *testing.T) {
	authenticated(t, func(t *testing.T, b *bubble, pid *actor.PID) {
		b.p.Send(pid, &actormsg.Stale{SinceAck: 45200 * time.Millisecond})
		cf, _ := b.expectFailure(pid)
		if cf.Type != messages.NetworkError || !cf.WasAuthenticated || !errors.Is(cf, connection.ErrStale) {
			t.Fatalf("failure = %v (authenticated %v)", cf, cf.WasAuthenticated)
		}
		if !strings.Contains(cf.Error(), "45.2s") {
			t.Fatalf("failure %q does not say how long", cf)
		}
	})
}

func TestUnknownTypeIsAnsweredAndConnectionStaysUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		b.stub.SetMode(relaystub.UnknownType)
		pid := b.spawn()
		b.expectStates()
		answer := b.stubFrame(wire.TypeError).Frame
		if answer.MessageID != "bogus-1" || answer.Error != `unknown message type "bogus"` {
			t.Fatalf("answer to bogus = %+v", answer)
		}
		o := outbound(context.Background(), `{"type":"cancel","message_id":"c1"}`)
		b.p.Send(pid, o)
		if err := <-o.Reply; err != nil {
			t.Fatalf("outbound after unknown type: %v", err)
		}
		if got := b.stubFrame(wire.TypeCancel).Frame.MessageID; got != "c1" {
			t.Fatalf("stub got cancel %q", got)
		}
		b.p.ExpectNoMsg(time.Minute)
		b.stop(pid)
	})
}

func TestOutboundIsWrittenAndAnswered(t *testing.T) {
	authenticated(t, func(t *testing.T, b *bubble, pid *actor.PID) {
		gone, cancel := context.WithCancel(context.Background())
		cancel()
		skipped := outbound(gone, `{"type":"request","message_id":"skipped"}`)
		text := outbound(context.Background(), `{"type":"request","message_id":"r1"}`)
		chunk, _ := wire.EncodeChunk("r1", []byte("audio"))
		binary := &actormsg.Outbound{Ctx: context.Background(), Binary: true, Data: chunk, Reply: make(chan error, 1)}
		for _, o := range []*actormsg.Outbound{skipped, text, binary} {
			b.p.Send(pid, o)
		}
		if err := <-skipped.Reply; !errors.Is(err, context.Canceled) {
			t.Fatalf("frame with a done ctx answered %v, want context.Canceled", err)
		}
		for _, o := range []*actormsg.Outbound{text, binary} {
			if err := <-o.Reply; err != nil {
				t.Fatalf("outbound answered %v", err)
			}
		}
		if r := <-b.stub.Frames(); r.Frame == nil || r.Frame.Type != wire.TypeAuth {
			t.Fatalf("first frame at the stub = %+v, want auth", r)
		}
		if r := <-b.stub.Frames(); r.Frame == nil || r.Frame.MessageID != "r1" {
			t.Fatalf("second frame at the stub = %+v, want request r1 (the skipped one never written)", r)
		}
		if r := <-b.stub.Frames(); !r.Binary || string(r.Data) != string(chunk) {
			t.Fatalf("third message at the stub = %+v, want the chunk", r)
		}
	})
}

func TestOutboundBeforeAuthIsUndeliverable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		b.stub.SetMode(relaystub.NoAuthReply)
		pid := b.spawn()
		for range 3 { // Connecting, Connected, Authenticating
			probe.Expect[*messages.StateChanged](b.p)
		}
		o := outbound(context.Background(), `{"type":"request","message_id":"early"}`)
		b.p.Send(pid, o)
		u, _ := probe.Expect[*actormsg.Undeliverable](b.p)
		if len(u.Frames) != 1 || u.Frames[0] != o {
			t.Fatalf("undeliverable = %+v", u)
		}
		if len(o.Reply) != 0 {
			t.Fatal("an undeliverable frame was answered; the parent answers it")
		}
		// Stopping while the relay says nothing closes at once, without
		// waiting for the connect timeout.
		start := time.Now()
		b.stop(pid)
		if got := time.Since(start); got != 0 {
			t.Fatalf("stop took %v", got)
		}
	})
}

func TestHeartbeatWrittenAndAckForwarded(t *testing.T) {
	authenticated(t, func(t *testing.T, b *bubble, pid *actor.PID) {
		b.p.Send(pid, &actormsg.SendHeartbeat{MessageID: "hb-1", Timestamp: 1700000000000})
		if f := b.stubFrame(wire.TypeHeartbeat).Frame; f.MessageID != "hb-1" || f.Timestamp != 1700000000000 {
			t.Fatalf("heartbeat at the stub = %+v", f)
		}
		ack, _ := probe.Expect[*actormsg.HeartbeatAck](b.p)
		if ack.MessageID != "hb-1" || ack.Timestamp != 1700000000000 || !ack.At.Equal(time.Now()) {
			t.Fatalf("ack = %+v", ack)
		}
	})
}

func TestInboundFramesAndChunksReachTheParent(t *testing.T) {
	authenticated(t, func(t *testing.T, b *bubble, pid *actor.PID) {
		send := func(f func() error) {
			t.Helper()
			if err := f(); err != nil {
				t.Fatal(err)
			}
		}
		send(func() error {
			return b.stub.Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "r1", Method: "POST", Path: "/v1/tts", Body: []byte("hi")})
		})
		in, _ := probe.Expect[*actormsg.Inbound](b.p)
		if in.Frame == nil || in.Frame.MessageID != "r1" || in.Frame.Path != "/v1/tts" || string(in.Frame.Body) != "hi" {
			t.Fatalf("inbound = %+v", in)
		}
		chunk, _ := wire.EncodeChunk("r1", []byte("audio"))
		send(func() error { return b.stub.SendBinary(chunk) })
		in, _ = probe.Expect[*actormsg.Inbound](b.p)
		if in.Chunk == nil || in.Chunk.MessageID != "r1" || string(in.Chunk.Data) != "audio" {
			t.Fatalf("inbound chunk = %+v", in)
		}
		// A relay's own heartbeat is acked, not passed on.
		send(func() error {
			return b.stub.Send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "relay-hb", Timestamp: 7})
		})
		if f := b.stubFrame(wire.TypeHeartbeatAck).Frame; f.MessageID != "relay-hb" || f.Timestamp != 7 {
			t.Fatalf("ack of the relay's heartbeat = %+v", f)
		}
		b.p.ExpectNoMsg(time.Minute)
	})
}

func TestAuthFrameAfterAuthIsProtocolError(t *testing.T) {
	authenticated(t, func(t *testing.T, b *bubble, pid *actor.PID) {
		if err := b.stub.Send(&wire.Frame{Type: wire.TypeAuthOK, SessionID: "again"}); err != nil {
			t.Fatal(err)
		}
		cf, _ := b.expectFailure(pid)
		if cf.Type != messages.ProtocolError || !errors.Is(cf, connection.ErrProtocol) || !cf.WasAuthenticated {
			t.Fatalf("failure = %v", cf)
		}
	})
}

func TestRestartAfterFailureReconnects(t *testing.T) {
	authenticated(t, func(t *testing.T, b *bubble, pid *actor.PID) {
		// A failure is a system message and may overtake the states, so the
		// states are seen before the relay drops the connection.
		b.stub.DropAll()
		cf, _ := b.expectFailure(pid)
		if cf.Type != messages.NetworkError || !cf.WasAuthenticated {
			t.Fatalf("failure = %v", cf)
		}
		b.p.Restart(pid)
		if sc := b.expectStates(); sc.SessionID != "session-2" {
			t.Fatalf("after restart: %+v", sc)
		}
		o := outbound(context.Background(), `{"type":"request","message_id":"after"}`)
		b.p.Send(pid, o)
		if err := <-o.Reply; err != nil {
			t.Fatalf("outbound after restart: %v", err)
		}
		if got := b.stub.Connections(); got != 2 {
			t.Fatalf("stub saw %d connections, want 2", got)
		}
		b.p.ExpectNoMsg(time.Minute)
	})
}

// By default the connection sends no pings: the heartbeat frames are the
// keepalive, and without any message from the relay the connection fails
// PongTimeout after auth_ok.
func TestNoPingsByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		b.cfg.PingInterval = connection.DefaultPingInterval
		pid := b.spawn()
		_, env := probe.Expect[*messages.StateChanged](b.p)
		start := env.At
		b.expectStatesFrom(messages.Connected)
		cf, at := b.expectFailure(pid)
		if cf.Type != messages.NetworkError || at.Sub(start) != 30*time.Second {
			t.Fatalf("failure %v after %v, want NETWORK_ERROR after exactly 30s", cf, at.Sub(start))
		}
		if got := b.stub.Pings(); got != 0 {
			t.Fatalf("%d pings, want none", got)
		}
		b.stop(pid)
	})
}

func TestPingEveryIntervalAndPongTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		b.stub.SetAnswerPings(false)
		pid := b.spawn()
		_, env := probe.Expect[*messages.StateChanged](b.p)
		start := env.At
		b.expectStatesFrom(messages.Connected)

		b.p.ExpectNoMsg(15*time.Second - time.Millisecond)
		synctest.Wait()
		if got := b.stub.Pings(); got != 0 {
			t.Fatalf("%d pings before 15s", got)
		}
		b.p.ExpectNoMsg(time.Millisecond)
		synctest.Wait()
		if got := b.stub.Pings(); got != 1 {
			t.Fatalf("%d pings at 15s, want 1", got)
		}

		// Unanswered, the connection lives PongTimeout after its last message.
		cf, at := b.expectFailure(pid)
		if cf.Type != messages.NetworkError || !cf.WasAuthenticated {
			t.Fatalf("failure = %v", cf)
		}
		if got := at.Sub(start); got != 30*time.Second {
			t.Fatalf("failed %v after auth_ok, want exactly 30s", got)
		}
		b.stop(pid)
	})
}

// Each frame ends in exactly one way when the connection fails under it:
// written (nil), lost while being written, or handed back to the parent.
func TestFramesQueuedAtFailureAreWrittenLostOrHandedBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		pid := b.spawn()
		b.expectStates()
		frames := make([]*actormsg.Outbound, 50)
		for i := range frames {
			frames[i] = outbound(context.Background(), `{"type":"request","message_id":"m"}`)
			b.p.Send(pid, frames[i])
		}
		b.p.Send(pid, &actormsg.Stale{SinceAck: 31 * time.Second})
		// Read everything up to an hour after the failure: Undeliverable
		// may come before or after it.
		handedBack := map[*actormsg.Outbound]bool{}
		failed := false
		for {
			e, ok := b.p.Receive()
			if !ok {
				break
			}
			if _, isF := e.Msg.(*probe.Failure); isF && !failed {
				failed = true
				b.stop(pid)
			}
			if u, isU := e.Msg.(*actormsg.Undeliverable); isU {
				for _, o := range u.Frames {
					handedBack[o] = true
				}
			}
		}
		if !failed {
			t.Fatal("no failure")
		}
		for i, o := range frames {
			answered := len(o.Reply) == 1
			if answered == handedBack[o] {
				t.Fatalf("frame %d: answered %v, handed back %v; want exactly one", i, answered, handedBack[o])
			}
			if answered {
				if err := <-o.Reply; err != nil && !errors.Is(err, messages.ErrConnectionLost) {
					t.Fatalf("frame %d answered %v", i, err)
				}
			}
		}
	})
}

func TestPoisonAnswersEveryQueuedFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		pid := b.spawn()
		b.expectStates()
		frames := make([]*actormsg.Outbound, 50)
		for i := range frames {
			frames[i] = outbound(context.Background(), `{"type":"request","message_id":"m"}`)
			b.p.Send(pid, frames[i])
		}
		// Poison, unlike Stop, comes after the frames in the mailbox.
		_ = b.system.Root.PoisonFuture(pid).Wait()
		synctest.Wait()
		for i, o := range frames {
			select {
			case err := <-o.Reply:
				if err != nil && !errors.Is(err, messages.ErrStopped) {
					t.Fatalf("frame %d answered %v", i, err)
				}
			default:
				t.Fatalf("frame %d not answered after Stop", i)
			}
		}
		b.p.ExpectNoMsg(time.Minute) // nothing handed back
	})
}
