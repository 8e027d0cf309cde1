package supervisor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/pipenet"
	"github.com/enhanced-tunnel/tunnel/test/relaystub"
)

// rig is one tunnel against a relay stub over an in-memory network, inside
// a synctest bubble: every delay below is fake time, asserted exactly.
type rig struct {
	t      *testing.T
	net    *pipenet.Network
	stub   *relaystub.Stub
	tunnel *supervisor.Tunnel
	states chan messages.StateChanged
}

const stubKey = "right-key"

func newRig(t *testing.T, mutate func(*supervisor.Config)) *rig {
	t.Helper()
	return newRigOn(t, pipenet.New(), mutate)
}

// newRigOn starts the stub and the tunnel on n, which may already refuse.
// Each before runs on the rig after the stub starts, before the tunnel does.
func newRigOn(t *testing.T, n *pipenet.Network, mutate func(*supervisor.Config), before ...func(*rig)) *rig {
	t.Helper()
	r := &rig{t: t, net: n, stub: relaystub.New(n.Listener(), relaystub.Options{APIKey: stubKey}), states: make(chan messages.StateChanged, 1024)}
	for _, f := range before {
		f(r)
	}
	cfg := supervisor.DefaultConfig()
	cfg.Connections = 1 // the one-connection behaviour under test
	cfg.RelayURL = r.stub.URL()
	cfg.APIKey = stubKey
	cfg.NetDialContext = n.DialContext
	cfg.OnStateChange = func(s messages.StateChanged) { r.states <- s }
	if mutate != nil {
		mutate(&cfg)
	}
	tun, err := supervisor.Start(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.tunnel = tun
	t.Cleanup(func() {
		if err := tun.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
		_ = r.stub.Close()
		_ = n.Close()
		synctest.Wait()
		time.Sleep(time.Second) // fake time: lets protoactor's dead-letter throttle run out
	})
	return r
}

// next returns the next state change, failing after an hour of fake time.
func (r *rig) next() messages.StateChanged {
	r.t.Helper()
	select {
	case s := <-r.states:
		return s
	case <-time.After(time.Hour):
		r.t.Fatal("no state change within an hour")
		return messages.StateChanged{}
	}
}

// until returns the first state change to want, skipping others.
func (r *rig) until(want messages.State) messages.StateChanged {
	r.t.Helper()
	for {
		if s := r.next(); s.State == want {
			return s
		}
	}
}

func (r *rig) expectSequence(want ...messages.State) messages.StateChanged {
	r.t.Helper()
	var last messages.StateChanged
	for _, w := range want {
		last = r.next()
		if last.State != w {
			r.t.Fatalf("state %s, want %s (sequence %v)", last.State, w, want)
		}
	}
	return last
}

func TestRestartDelaysByFailureType(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(*rig)
		key     string
		failure string
		delay   time.Duration
		states  []messages.State // of one failed attempt
	}{
		{"auth failure waits 30s", func(r *rig) {}, "wrong-key", "AUTH_FAILURE", 30 * time.Second,
			[]messages.State{messages.Connecting, messages.Connected, messages.Authenticating, messages.Disconnected}},
		{"refused waits 10s", func(r *rig) { r.net.SetRefusing(true) }, stubKey, "CONNECTION_REFUSED", 10 * time.Second,
			[]messages.State{messages.Connecting, messages.Disconnected}},
		{"no auth reply times out after 10s, waits 10s", func(r *rig) { r.stub.SetMode(relaystub.NoAuthReply) }, stubKey, "TIMEOUT", 10 * time.Second,
			[]messages.State{messages.Connecting, messages.Connected, messages.Authenticating, messages.Disconnected}},
		{"garbage frame waits 10s", func(r *rig) { r.stub.SetMode(relaystub.Garbage) }, stubKey, "PROTOCOL_ERROR", 10 * time.Second,
			[]messages.State{messages.Connecting, messages.Connected, messages.Authenticating, messages.Disconnected}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRigOn(t, pipenet.New(), func(c *supervisor.Config) { c.APIKey = tc.key }, tc.setup)
				failedAt := r.expectSequence(tc.states...).At
				for attempt := 0; attempt < 3; attempt++ {
					again := r.next()
					if again.State != messages.Connecting {
						t.Fatalf("after the failure: %s, want CONNECTING", again.State)
					}
					if got := again.At.Sub(failedAt); got != tc.delay {
						t.Fatalf("restart %v after the failure, want exactly %v", got, tc.delay)
					}
					failedAt = r.expectSequence(tc.states[1:]...).At
				}
				synctest.Wait()
				st := r.tunnel.Status()
				if st.Health.FailureTypes[tc.failure] < 3 || st.Health.LastFailureType != tc.failure {
					t.Fatalf("failure types %v, last %q; want at least 3 %s", st.Health.FailureTypes, st.Health.LastFailureType, tc.failure)
				}
			})
		})
	}
}

func TestBreakerOpensAfterFiveFailuresAndTriesOnceAfter300s(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		n.SetRefusing(true)
		r := newRigOn(t, n, nil)

		var fifth messages.StateChanged
		for i := 1; i <= 5; i++ {
			r.expectSequence(messages.Connecting)
			fifth = r.expectSequence(messages.Disconnected)
		}
		open := r.next()
		if open.State != messages.CircuitBreaker || open.At != fifth.At {
			t.Fatalf("after the 5th failure: %s at +%v, want CIRCUIT_BREAKER at once", open.State, open.At.Sub(fifth.At))
		}
		synctest.Wait()
		st := r.tunnel.Status()
		if st.State != messages.CircuitBreaker || !st.CircuitBreaker.Active || st.CircuitBreaker.RecoveryIn != 300 || st.Health.ConsecutiveFailures != 5 {
			t.Fatalf("status when open: %+v", st)
		}
		time.Sleep(100 * time.Second)
		if got := r.tunnel.Status().CircuitBreaker.RecoveryIn; got != 200 {
			t.Fatalf("recovery_in 100s later = %v, want 200", got)
		}

		// The trial fails: the breaker opens for another full recovery.
		trial := r.expectSequence(messages.Connecting)
		if got := trial.At.Sub(open.At); got != 300*time.Second {
			t.Fatalf("trial %v after opening, want exactly 300s", got)
		}
		reopened := r.expectSequence(messages.Disconnected, messages.CircuitBreaker)
		synctest.Wait()
		if st := r.tunnel.Status(); st.CircuitBreaker.Openings != 2 || st.CircuitBreaker.RecoveryIn != 300 {
			t.Fatalf("after a failed trial: %+v", st.CircuitBreaker)
		}

		// The relay is back: the next trial succeeds and closes the breaker.
		n.SetRefusing(false)
		trial = r.expectSequence(messages.Connecting)
		if got := trial.At.Sub(reopened.At); got != 300*time.Second {
			t.Fatalf("second trial %v after reopening, want exactly 300s", got)
		}
		r.expectSequence(messages.Connected, messages.Authenticating, messages.Authenticated)
		synctest.Wait() // the breaker and the ledger hear of the success
		st = r.tunnel.Status()
		if st.State != messages.Authenticated || !st.Connected || st.CircuitBreaker.Active || st.Health.ConsecutiveFailures != 0 {
			t.Fatalf("after a successful trial: %+v", st)
		}
	})
}

func TestFlappingLinkStillTripsTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRigOn(t, pipenet.New(), nil, func(r *rig) { r.stub.SetMode(relaystub.DropAfterAuth) })
		for i := 0; i < 5; i++ {
			r.expectSequence(messages.Connecting, messages.Connected, messages.Authenticating, messages.Authenticated, messages.Disconnected)
		}
		r.expectSequence(messages.CircuitBreaker)
		synctest.Wait()
		if st := r.tunnel.Status(); st.Health.ConsecutiveFailures < 5 || st.Health.FailureTypes["NETWORK_ERROR"] < 5 {
			t.Fatalf("flapping: %+v", st.Health)
		}
	})
}

func TestStaleHeartbeatFailsAfter30sAndReconnects10sLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRigOn(t, pipenet.New(), nil, func(r *rig) { r.stub.SetAckHeartbeats(false) })
		up := r.until(messages.Authenticated)
		down := r.next()
		if down.State != messages.Disconnected || down.At.Sub(up.At) != 30*time.Second {
			t.Fatalf("%s %v after AUTHENTICATED, want DISCONNECTED after exactly 30s", down.State, down.At.Sub(up.At))
		}
		again := r.next()
		if again.State != messages.Connecting || again.At.Sub(down.At) != 10*time.Second {
			t.Fatalf("%s %v after the stale connection, want CONNECTING after exactly 10s", again.State, again.At.Sub(down.At))
		}
		synctest.Wait()
		if got := r.tunnel.Status().Health.LastFailureType; got != "NETWORK_ERROR" {
			t.Fatalf("last failure type %q, want NETWORK_ERROR", got)
		}
	})
}

func TestSendQueuesWhileDisconnectedAndWritesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		n.SetRefusing(true)
		r := newRigOn(t, n, func(c *supervisor.Config) { c.MaxQueue = 3 })
		r.until(messages.Disconnected)

		ctx := context.Background()
		results := make(chan error, 3)
		for i := 0; i < 3; i++ {
			go func() {
				results <- r.tunnel.Send(ctx, &messages.TunnelMessage{Type: messages.TypeError, MessageID: string(rune('a' + i)), Error: "x"})
			}()
			synctest.Wait() // in order
		}
		err := r.tunnel.Send(ctx, &messages.TunnelMessage{Type: messages.TypeError, MessageID: "d", Error: "x"})
		if !errors.Is(err, messages.ErrQueueFull) {
			t.Fatalf("fourth Send while disconnected: %v, want ErrQueueFull", err)
		}
		select {
		case err := <-results:
			t.Fatalf("a queued Send returned %v before any connection", err)
		default:
		}

		n.SetRefusing(false)
		r.until(messages.Authenticated)
		for i := 0; i < 3; i++ {
			if err := <-results; err != nil {
				t.Fatalf("queued Send: %v", err)
			}
		}
		var got []string
		for len(got) < 3 {
			rec := <-r.stub.Frames()
			if rec.Frame != nil && rec.Frame.Type == wire.TypeError {
				got = append(got, rec.Frame.MessageID)
			}
		}
		if got[0] != "a" || got[1] != "b" || got[2] != "c" {
			t.Fatalf("frames written as %v, want [a b c]", got)
		}
	})
}

func TestStopFailsQueuedFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		n.SetRefusing(true)
		r := newRigOn(t, n, nil)
		r.until(messages.Disconnected)
		result := make(chan error, 1)
		go func() {
			result <- r.tunnel.Send(context.Background(), &messages.TunnelMessage{Type: messages.TypeCancel, MessageID: "q"})
		}()
		synctest.Wait()
		if err := r.tunnel.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := <-result; !errors.Is(err, messages.ErrStopped) {
			t.Fatalf("queued Send after Stop: %v, want ErrStopped", err)
		}
		if err := r.tunnel.Send(context.Background(), &messages.TunnelMessage{Type: messages.TypeCancel, MessageID: "q"}); !errors.Is(err, messages.ErrStopped) {
			t.Fatalf("Send after Stop: %v, want ErrStopped", err)
		}
	})
}

func TestSendRejectsInvalidMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		for _, msg := range []*messages.TunnelMessage{
			nil,
			{Type: "bogus"},
			{Type: messages.TypeResponse}, // no id to answer
			{Type: messages.TypeRequest, MessageID: string(make([]byte, 300))},
		} {
			if err := r.tunnel.Send(context.Background(), msg); !errors.Is(err, supervisor.ErrInvalidMessage) {
				t.Errorf("Send(%+v) = %v, want ErrInvalidMessage", msg, err)
			}
		}
	})
}

// nextFrame returns the next text frame of type typ the stub received.
func nextFrame(t *testing.T, s *relaystub.Stub, typ string) *wire.Frame {
	t.Helper()
	f, err := awaitFrame(s, typ)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// awaitFrame is nextFrame for goroutines other than the test's.
func awaitFrame(s *relaystub.Stub, typ string) (*wire.Frame, error) {
	deadline := time.After(time.Hour) // fake time; heartbeats keep arriving meanwhile
	for {
		select {
		case rec := <-s.Frames():
			if rec.Frame != nil && rec.Frame.Type == typ {
				return rec.Frame, nil
			}
		case <-deadline:
			return nil, fmt.Errorf("no %s frame within an hour", typ)
		}
	}
}

func TestRequestGetsItsResponseAndStreamedBodies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(c *supervisor.Config) { c.InlineLimit = 1024; c.ChunkSize = 4096; c.Window = 16384 })
		r.until(messages.Authenticated)

		// A body over the inline limit goes out as a stream; the answer comes back streamed too.
		body := bytes.Repeat([]byte("0123456789abcdef"), 8192) // 128 KiB
		type answer struct {
			msg *messages.TunnelMessage
			err error
		}
		answers := make(chan answer, 1)
		go func() {
			m, err := r.tunnel.Request(context.Background(), &messages.TunnelMessage{Method: "POST", Path: "/v1/tts?x=1", BodyStream: bytes.NewReader(body)})
			answers <- answer{m, err}
		}()
		req := nextFrame(t, r.stub, wire.TypeRequest)
		if !req.Stream || req.Method != "POST" || req.Path != "/v1/tts?x=1" || len(req.Body) != 0 {
			t.Fatalf("request frame %+v", req)
		}
		var got []byte
		granted := int64(0)
		for {
			rec := <-r.stub.Frames()
			if rec.Binary {
				id, chunk, err := wire.DecodeChunk(rec.Data)
				if err != nil || id != req.MessageID {
					t.Fatalf("chunk for %q: %v", id, err)
				}
				got = append(got, chunk...)
				// Grant as a relay would, once per 8 KiB consumed.
				if int64(len(got))-granted >= 8192 {
					_ = r.stub.Send(&wire.Frame{Type: wire.TypeWindowUpdate, MessageID: id, Bytes: int64(len(got)) - granted})
					granted = int64(len(got))
				}
				continue
			}
			if rec.Frame != nil && rec.Frame.Type == wire.TypeStreamEnd {
				break
			}
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("streamed request body: %d bytes, want %d byte-exact", len(got), len(body))
		}

		if err := r.stub.Send(&wire.Frame{Type: wire.TypeResponse, MessageID: req.MessageID, Status: 200, Stream: true}); err != nil {
			t.Fatal(err)
		}
		a := <-answers
		if a.err != nil || a.msg.Status != 200 || a.msg.BodyStream == nil {
			t.Fatalf("Request = %+v, %v", a.msg, a.err)
		}
		// Within the 16 KiB window, then the sender waits for the grant that
		// reading half the window must bring before it ends the stream.
		audio := bytes.Repeat([]byte{1, 2, 3}, 5000)
		grantSeen := make(chan error, 1)
		go func() {
			for off := 0; off < len(audio); off += 5000 {
				chunk, _ := wire.EncodeChunk(req.MessageID, audio[off:min(off+5000, len(audio))])
				_ = r.stub.SendBinary(chunk)
			}
			wu, err := awaitFrame(r.stub, wire.TypeWindowUpdate)
			if err == nil && (wu.MessageID != req.MessageID || wu.Bytes < 8192) {
				err = fmt.Errorf("window update %+v, want at least 8192 bytes for %s", wu, req.MessageID)
			}
			grantSeen <- err
			_ = r.stub.Send(&wire.Frame{Type: wire.TypeStreamEnd, MessageID: req.MessageID})
		}()
		gotAudio, err := io.ReadAll(a.msg.BodyStream)
		if err != nil || !bytes.Equal(gotAudio, audio) {
			t.Fatalf("streamed response body: %d bytes, %v", len(gotAudio), err)
		}
		if err := <-grantSeen; err != nil {
			t.Fatal(err)
		}
	})
}

func TestRequestCancelledByContextSendsCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.until(messages.Authenticated)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := r.tunnel.Request(ctx, &messages.TunnelMessage{Method: "GET", Path: "/slow"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Request = %v, want deadline exceeded", err)
		}
		req := nextFrame(t, r.stub, wire.TypeRequest)
		if c := nextFrame(t, r.stub, wire.TypeCancel); c.MessageID != req.MessageID {
			t.Fatalf("cancel for %q, want %q", c.MessageID, req.MessageID)
		}
	})
}

func TestRequestFailsWhenTheConnectionIsLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.until(messages.Authenticated)
		errs := make(chan error, 1)
		go func() {
			_, err := r.tunnel.Request(context.Background(), &messages.TunnelMessage{Method: "POST", Path: "/"})
			errs <- err
		}()
		nextFrame(t, r.stub, wire.TypeRequest)
		r.stub.DropAll()
		if err := <-errs; !errors.Is(err, messages.ErrConnectionLost) {
			t.Fatalf("Request across a lost connection = %v, want ErrConnectionLost", err)
		}
	})
}

func TestHandlerAnswersRequestsAndSeesCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cancelled := make(chan string, 1)
		r := newRig(t, func(c *supervisor.Config) {
			c.OnMessage = func(ctx context.Context, tun *supervisor.Tunnel, msg *messages.TunnelMessage) {
				if msg.Path == "/hang" {
					<-ctx.Done()
					cancelled <- msg.MessageID
					return
				}
				_ = tun.Send(ctx, &messages.TunnelMessage{Type: messages.TypeResponse, MessageID: msg.MessageID, Status: 201, Body: append([]byte("echo:"), msg.Body...)})
			}
		})
		r.until(messages.Authenticated)
		_ = r.stub.Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "r1", Method: "POST", Path: "/v1/tts", Body: []byte("hi")})
		resp := nextFrame(t, r.stub, wire.TypeResponse)
		if resp.MessageID != "r1" || resp.Status != 201 || string(resp.Body) != "echo:hi" {
			t.Fatalf("response %+v", resp)
		}
		_ = r.stub.Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "r2", Method: "GET", Path: "/hang"})
		synctest.Wait()
		_ = r.stub.Send(&wire.Frame{Type: wire.TypeCancel, MessageID: "r2"})
		if id := <-cancelled; id != "r2" {
			t.Fatalf("cancelled %q", id)
		}
		// A duplicate id of a request still in the handler is refused with an error frame.
		_ = r.stub.Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "r3", Path: "/hang"})
		_ = r.stub.Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "r3", Path: "/hang"})
		if e := nextFrame(t, r.stub, wire.TypeError); e.MessageID != "r3" {
			t.Fatalf("error frame %+v", e)
		}
	})
}

// A cancel from the relay for a request whose body is still streaming in
// fails that body at once: a handler reading msg.BodyStream without watching
// its ctx (as an upstream request writing the body does not) gets the bytes
// that arrived, then an error naming the cancel, not io.EOF and not a wait
// for chunks that will never come. The stream is forgotten: a chunk for it
// arriving after the cancel reaches no reader and is answered, as for any
// unknown stream, with one "unknown stream" error frame for that id, and no
// more for later chunks of the same id.
func TestRelayCancelFailsTheStreamedRequestBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type ending struct {
			body []byte
			err  error
		}
		endings := make(chan ending, 4)
		bodies := make(chan io.Closer, 4)
		r := newRig(t, func(c *supervisor.Config) {
			c.OnMessage = func(_ context.Context, _ *supervisor.Tunnel, msg *messages.TunnelMessage) {
				if msg.BodyStream == nil {
					endings <- ending{err: fmt.Errorf("message %s %q without a body stream", msg.Type, msg.MessageID)}
					return
				}
				if c, ok := msg.BodyStream.(io.Closer); ok {
					bodies <- c
				}
				// Deliberately blind to ctx: only the body can end this loop.
				var got []byte
				buf := make([]byte, 512)
				for {
					n, err := msg.BodyStream.Read(buf)
					got = append(got, buf[:n]...)
					if err != nil {
						endings <- ending{got, err}
						return
					}
				}
			}
		})
		r.until(messages.Authenticated)

		const id = "body-1"
		chunkOf := func(id, data string) []byte {
			t.Helper()
			c, err := wire.EncodeChunk(id, []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		if err := r.stub.Send(&wire.Frame{Type: wire.TypeRequest, MessageID: id, Method: "POST", Path: "/v1/upload", Stream: true}); err != nil {
			t.Fatal(err)
		}
		if err := r.stub.SendBinary(chunkOf(id, "first bytes")); err != nil {
			t.Fatal(err)
		}
		// No stream_end: the public client went away mid-body.
		if err := r.stub.Send(&wire.Frame{Type: wire.TypeCancel, MessageID: id}); err != nil {
			t.Fatal(err)
		}

		var e ending
		select {
		case e = <-endings:
		case <-time.After(time.Hour): // fake time
			// Free the handler, or the rig's Stop would wait for it forever.
			select {
			case c := <-bodies:
				_ = c.Close()
			default:
			}
			t.Fatal("the handler's BodyStream.Read still blocks an hour after the relay's cancel")
		}
		if string(e.body) != "first bytes" {
			t.Errorf("handler read %q before the error, want the chunk %q", e.body, "first bytes")
		}
		switch {
		case e.err == nil || errors.Is(e.err, io.EOF):
			t.Fatalf("body ended with %v, want an error for the cancel (a cancelled body is not complete)", e.err)
		case !strings.Contains(e.err.Error(), "cancel") || !strings.Contains(e.err.Error(), id):
			t.Fatalf("body ended with %q, want an error naming the cancel of %s", e.err, id)
		}

		// Late chunks for the cancelled id: dropped, one error frame for the
		// id (PROTOCOL.md: "answers error once for that id"). A chunk of
		// another unknown id then marks the point by which a second error
		// for id would have been written (the tunnel answers in order).
		for _, data := range []string{"late", "later"} {
			if err := r.stub.SendBinary(chunkOf(id, data)); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.stub.SendBinary(chunkOf("marker", "x")); err != nil {
			t.Fatal(err)
		}
		if f := nextFrame(t, r.stub, wire.TypeError); f.MessageID != id || f.Error != "unknown stream" {
			t.Fatalf("first error frame after the late chunks: %+v, want %q for %s", f, "unknown stream", id)
		}
		if f := nextFrame(t, r.stub, wire.TypeError); f.MessageID != "marker" {
			t.Fatalf("second error frame: %+v, want the marker's (one error per unknown id, not per chunk)", f)
		}
		synctest.Wait()
		select {
		case e := <-endings:
			t.Fatalf("a late chunk reached a handler: %q, %v", e.body, e.err)
		default:
		}
	})
}

func TestNoHandlerAnswersRequestsWithAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.until(messages.Authenticated)
		_ = r.stub.Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "r1", Method: "GET", Path: "/"})
		if e := nextFrame(t, r.stub, wire.TypeError); e.MessageID != "r1" || e.Error == "" {
			t.Fatalf("error frame %+v", e)
		}
	})
}

func TestStatusJSONHasEveryKeyFromTheStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		n.SetRefusing(true)
		r := newRigOn(t, n, nil)
		raw, err := json.Marshal(r.tunnel.Status())
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		_ = json.Unmarshal(raw, &doc)
		health, _ := doc["health"].(map[string]any)
		cb, _ := doc["circuit_breaker"].(map[string]any)
		for _, key := range []string{"state", "connected"} {
			if _, ok := doc[key]; !ok {
				t.Errorf("no %q in %s", key, raw)
			}
		}
		for _, key := range []string{"success_rate", "total_attempts", "consecutive_failures", "time_since_last_success", "failure_types"} {
			if _, ok := health[key]; !ok {
				t.Errorf("no health.%s in %s", key, raw)
			}
		}
		for _, key := range []string{"active", "recovery_in"} {
			if _, ok := cb[key]; !ok {
				t.Errorf("no circuit_breaker.%s in %s", key, raw)
			}
		}
		if health["time_since_last_success"] != nil {
			t.Errorf("time_since_last_success = %v before any success, want null", health["time_since_last_success"])
		}
		if ft, ok := health["failure_types"].(map[string]any); !ok {
			t.Errorf("failure_types = %v, want an object", health["failure_types"])
		} else if len(ft) > 1 {
			t.Errorf("failure_types = %v", ft)
		}
	})
}

func TestReconnectCutsTheWaitShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		n.SetRefusing(true)
		r := newRigOn(t, n, nil)
		down := r.until(messages.Disconnected)
		n.SetRefusing(false)
		time.Sleep(time.Second)
		r.tunnel.Reconnect()
		again := r.next()
		if again.State != messages.Connecting || again.At.Sub(down.At) != time.Second {
			t.Fatalf("%s %v after the failure, want CONNECTING right after Reconnect (1s)", again.State, again.At.Sub(down.At))
		}
		r.until(messages.Authenticated)
		r.tunnel.Reconnect()
		r.expectSequence(messages.Disconnected, messages.Connecting)
		r.until(messages.Authenticated)
		synctest.Wait()
		if st := r.tunnel.Status(); st.Health.FailureTypes["NETWORK_ERROR"] != 0 {
			t.Fatalf("a requested reconnect counted as a failure: %v", st.Health.FailureTypes)
		}
	})
}
