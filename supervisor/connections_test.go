package supervisor_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/pipenet"
	"github.com/enhanced-tunnel/tunnel/test/relaystub"
)

// pair is one tunnel with a connection to each of two relay stubs, A
// (connection 0) and B (connection 1), each on its own in-memory network,
// inside a synctest bubble.
type pair struct {
	t      *testing.T
	nets   [2]*pipenet.Network
	stubs  [2]*relaystub.Stub
	tunnel *supervisor.Tunnel
	states [2]chan messages.StateChanged // each connection's, in order
}

var pairURLs = []string{"ws://relay-a/tunnel", "ws://relay-b/tunnel"}

// newPair starts the stubs, lets before adjust them, then starts the tunnel.
func newPair(t *testing.T, mutate func(*supervisor.Config), before func(*pair)) *pair {
	t.Helper()
	p := &pair{t: t}
	for i := range p.states {
		p.states[i] = make(chan messages.StateChanged, 4096)
	}
	for i := range p.nets {
		p.nets[i] = pipenet.New()
		p.stubs[i] = relaystub.New(p.nets[i].Listener(), relaystub.Options{APIKey: stubKey, Resume: true})
	}
	if before != nil {
		before(p)
	}
	cfg := supervisor.DefaultConfig()
	cfg.RelayURLs = pairURLs
	cfg.APIKey = stubKey
	cfg.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if strings.HasPrefix(addr, "relay-a") {
			return p.nets[0].DialContext(ctx, network, addr)
		}
		return p.nets[1].DialContext(ctx, network, addr)
	}
	cfg.OnStateChange = func(s messages.StateChanged) { p.states[s.Connection] <- s }
	if mutate != nil {
		mutate(&cfg)
	}
	tun, err := supervisor.Start(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.tunnel = tun
	t.Cleanup(func() {
		if err := tun.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
		for i := range p.stubs {
			_ = p.stubs[i].Close()
			_ = p.nets[i].Close()
		}
		synctest.Wait()
		time.Sleep(time.Second) // fake time: lets protoactor's dead-letter throttle run out
	})
	return p
}

// until returns connection conn's next state change to want, skipping its
// others.
func (p *pair) until(conn int, want messages.State) messages.StateChanged {
	p.t.Helper()
	deadline := time.After(time.Hour)
	for {
		select {
		case s := <-p.states[conn]:
			if s.State == want {
				return s
			}
		case <-deadline:
			p.t.Fatalf("connection %d: no %s within an hour", conn, want)
		}
	}
}

// bothUp waits until both connections are authenticated.
func (p *pair) bothUp() {
	p.t.Helper()
	p.until(0, messages.Authenticated)
	p.until(1, messages.Authenticated)
}

// Each connection is its own child of the tree, with its own breaker and
// restart rule: relay A refusing every key walks connection 0 through 30 s
// waits into an open breaker (300 s), while connection 1 stays up on its
// one attempt; the status shows both and their aggregate.
func TestConnectionsHaveTheirOwnBreakerAndRestartRule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, nil, func(p *pair) { p.stubs[0].SetMode(relaystub.AuthError) })
		p.until(1, messages.Authenticated)
		failed := p.until(0, messages.Disconnected)
		for i := 2; i <= 5; i++ {
			again := p.until(0, messages.Connecting)
			if got := again.At.Sub(failed.At); got != 30*time.Second {
				t.Fatalf("attempt %d of connection 0 came %v after the auth failure, want exactly 30s", i, got)
			}
			failed = p.until(0, messages.Disconnected)
		}
		open := p.until(0, messages.CircuitBreaker)
		if open.At != failed.At {
			t.Fatalf("breaker opened %v after the 5th failure, want at once", open.At.Sub(failed.At))
		}
		synctest.Wait()
		st := p.tunnel.Status()
		c0, c1 := st.Connections[0], st.Connections[1]
		switch {
		case st.State != messages.Authenticated || !st.Connected || st.ReadyConnections != 1 || len(st.Connections) != 2:
			t.Fatalf("aggregate: state %s connected %v ready %d, %d connections", st.State, st.Connected, st.ReadyConnections, len(st.Connections))
		case c0.State != messages.CircuitBreaker || !c0.CircuitBreaker.Active || c0.CircuitBreaker.RecoveryIn != 300 || c0.Health.ConsecutiveFailures != 5:
			t.Fatalf("connection 0: %+v", c0)
		case c1.State != messages.Authenticated || !c1.Connected || c1.Health.TotalAttempts != 1 || c1.CircuitBreaker.Active:
			t.Fatalf("connection 1: %+v", c1)
		case c0.RelayURL != pairURLs[0] || c1.RelayURL != pairURLs[1]:
			t.Fatalf("relay urls %q %q", c0.RelayURL, c1.RelayURL)
		case st.Health.TotalAttempts != 6 || st.Health.Successes != 1 || st.Health.FailureTypes["AUTH_FAILURE"] != 5:
			t.Fatalf("aggregate health: %+v", st.Health)
		case st.CircuitBreaker.State != messages.BreakerOpen || st.CircuitBreaker.Openings != 1:
			t.Fatalf("aggregate breaker: %+v", st.CircuitBreaker)
		}

		// The trial comes exactly 300 s after the opening.
		p.stubs[0].SetMode(relaystub.AuthOK)
		trial := p.until(0, messages.Connecting)
		if got := trial.At.Sub(open.At); got != 300*time.Second {
			t.Fatalf("trial %v after the opening, want exactly 300s", got)
		}
		p.until(0, messages.Authenticated)
		synctest.Wait()
		if st := p.tunnel.Status(); st.ReadyConnections != 2 || st.Connections[1].Health.TotalAttempts != 1 {
			t.Fatalf("after the trial: ready %d, connection 1 attempts %d", st.ReadyConnections, st.Connections[1].Health.TotalAttempts)
		}
	})
}

// A connection lost to the network is retried after 10 s, on its own: the
// other connection neither reconnects nor notices.
func TestALostConnectionRestartsAfter10sAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, nil, nil)
		p.bothUp()
		p.stubs[1].DropAll()
		down := p.until(1, messages.Disconnected)
		again := p.until(1, messages.Connecting)
		if got := again.At.Sub(down.At); got != 10*time.Second {
			t.Fatalf("connection 1 restarted %v after its loss, want exactly 10s", got)
		}
		p.until(1, messages.Authenticated)
		synctest.Wait()
		st := p.tunnel.Status()
		if a0, a1 := st.Connections[0].Health.TotalAttempts, st.Connections[1].Health.TotalAttempts; a0 != 1 || a1 != 2 {
			t.Fatalf("attempts %d and %d, want 1 and 2", a0, a1)
		}
		if st.Health.Drops != 1 || st.Connections[1].Health.Drops != 1 {
			t.Fatalf("drops %d (connection 1: %d), want 1", st.Health.Drops, st.Connections[1].Health.Drops)
		}
	})
}

// Requests from the host take the live connections in turn; with one down
// they all take the other, at once, never waiting for the reconnect.
func TestRequestsTakeAnyLiveConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, nil, nil)
		p.bothUp()
		for i := range 4 {
			if err := p.tunnel.Send(context.Background(), &messages.TunnelMessage{Type: messages.TypeRequest, Method: "POST", Path: "/"}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		synctest.Wait()
		if a, b := countFrames(p.stubs[0], wire.TypeRequest), countFrames(p.stubs[1], wire.TypeRequest); a != 2 || b != 2 {
			t.Fatalf("requests on A and B: %d and %d, want 2 and 2", a, b)
		}

		p.stubs[0].SetMode(relaystub.HTTPStatus)
		p.stubs[0].SetHTTPStatus(503)
		p.stubs[0].DropAll()
		p.until(0, messages.Disconnected)
		sent := time.Now()
		for i := range 3 {
			if err := p.tunnel.Send(context.Background(), &messages.TunnelMessage{Type: messages.TypeRequest, Method: "POST", Path: "/"}); err != nil {
				t.Fatalf("send %d with A down: %v", i, err)
			}
		}
		if waited := time.Since(sent); waited != 0 {
			t.Fatalf("sends with one connection down took %v, want no wait", waited)
		}
		synctest.Wait()
		if a, b := countFrames(p.stubs[0], wire.TypeRequest), countFrames(p.stubs[1], wire.TypeRequest); a != 0 || b != 3 {
			t.Fatalf("requests on A and B with A down: %d and %d, want 0 and 3", a, b)
		}
	})
}

// firstRequest waits for a request frame at either stub and returns that
// stub, then the other.
func firstRequest(t *testing.T, p *pair) (got, other *relaystub.Stub) {
	t.Helper()
	deadline := time.After(time.Hour)
	for {
		select {
		case rec := <-p.stubs[0].Frames():
			if rec.Frame != nil && rec.Frame.Type == wire.TypeRequest {
				return p.stubs[0], p.stubs[1]
			}
		case rec := <-p.stubs[1].Frames():
			if rec.Frame != nil && rec.Frame.Type == wire.TypeRequest {
				return p.stubs[1], p.stubs[0]
			}
		case <-deadline:
			t.Fatal("no request within an hour")
		}
	}
}

// countFrames drains what the stub received so far and counts frames of typ.
func countFrames(s *relaystub.Stub, typ string) int {
	n := 0
	for {
		select {
		case rec := <-s.Frames():
			if rec.Frame != nil && rec.Frame.Type == typ {
				n++
			}
		default:
			return n
		}
	}
}

// A request the relay sent on connection 1 is answered on connection 1, and
// a response whose connection is gone fails instead of taking another.
func TestResponsesGoBackTheWayTheirRequestCame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		answered := make(chan error, 4)
		release := make(chan struct{})
		p := newPair(t, func(c *supervisor.Config) {
			c.OnMessage = func(ctx context.Context, tun *supervisor.Tunnel, msg *messages.TunnelMessage) {
				if msg.Path == "/slow" {
					<-release
				}
				answered <- tun.Send(context.Background(), &messages.TunnelMessage{Type: messages.TypeResponse, MessageID: msg.MessageID, Status: 200})
			}
		}, nil)
		p.bothUp()
		for range 3 {
			_ = p.stubs[1].Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "b-" + time.Now().String(), Method: "GET", Path: "/"})
			if err := <-answered; err != nil {
				t.Fatalf("answer: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
		synctest.Wait()
		if a, b := countFrames(p.stubs[0], wire.TypeResponse), countFrames(p.stubs[1], wire.TypeResponse); a != 0 || b != 3 {
			t.Fatalf("responses on A and B: %d and %d, want 0 and 3", a, b)
		}

		_ = p.stubs[1].Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "slow", Method: "GET", Path: "/slow"})
		synctest.Wait()
		p.stubs[1].SetMode(relaystub.HTTPStatus)
		p.stubs[1].SetHTTPStatus(503)
		p.stubs[1].DropAll()
		p.until(1, messages.Disconnected)
		close(release)
		if err := <-answered; !errors.Is(err, messages.ErrConnectionLost) {
			t.Fatalf("a response whose connection is gone: %v, want ErrConnectionLost", err)
		}
		synctest.Wait()
		if a := countFrames(p.stubs[0], wire.TypeResponse); a != 0 {
			t.Fatalf("%d responses went out on A, the wrong connection", a)
		}
	})
}

// Request retries on another connection once, and only what may be sent
// twice: an idempotent method with an inline body.
func TestRequestRetriesIdempotentRequestsOnAnotherConnection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		retry   bool
		wantErr bool
	}{
		{"GET is retried", "GET", true, false},
		{"PUT is retried", "PUT", true, false},
		{"POST is not", "POST", true, true},
		{"GET with RetryIdempotent off is not", "GET", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPair(t, func(c *supervisor.Config) { c.RetryIdempotent = tc.retry }, nil)
				p.bothUp()
				type outcome struct {
					msg *messages.TunnelMessage
					err error
				}
				done := make(chan outcome, 1)
				go func() {
					m, err := p.tunnel.Request(context.Background(), &messages.TunnelMessage{Method: tc.method, Path: "/v1/voices"})
					done <- outcome{m, err}
				}()
				// The first try takes one connection: kill it there.
				first, other := firstRequest(t, p)
				first.SetMode(relaystub.HTTPStatus)
				first.SetHTTPStatus(503)
				first.DropAll()
				if tc.wantErr {
					if o := <-done; !errors.Is(o.err, messages.ErrConnectionLost) {
						t.Fatalf("Request = %v, want ErrConnectionLost", o.err)
					}
					return
				}
				again := nextFrame(t, other, wire.TypeRequest)
				_ = other.Send(&wire.Frame{Type: wire.TypeResponse, MessageID: again.MessageID, Status: 200, Body: []byte("voices")})
				if o := <-done; o.err != nil || string(o.msg.Body) != "voices" {
					t.Fatalf("Request = %v, %v; want the answer from the other connection", o.msg, o.err)
				}
			})
		})
	}
}

// The status in JSON has the seed's shape at the top, plus
// ready_connections and one object per connection in the same shape.
func TestStatusJSONHasOneObjectPerConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, nil, nil)
		p.bothUp()
		synctest.Wait()
		raw, err := json.Marshal(p.tunnel.Status())
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"state", "connected", "tunnel", "health", "circuit_breaker", "ready_connections", "connections"} {
			if _, ok := st[k]; !ok {
				t.Fatalf("status has no %q: %s", k, raw)
			}
		}
		conns := st["connections"].([]any)
		if len(conns) != 2 || st["ready_connections"].(float64) != 2 {
			t.Fatalf("connections %d, ready %v", len(conns), st["ready_connections"])
		}
		for _, c := range conns {
			for _, k := range []string{"relay_url", "state", "connected", "health", "circuit_breaker"} {
				if _, ok := c.(map[string]any)[k]; !ok {
					t.Fatalf("connection has no %q: %s", k, raw)
				}
			}
		}
	})
}

// childrenOf asks a host actor for its children.
type childrenOf struct{}

// hostWithTunnel spawns a tunnel under itself when it starts, and counts
// the failures its strategy sees.
type hostWithTunnel struct {
	cfg     supervisor.Config
	started chan *supervisor.Tunnel
}

func (h *hostWithTunnel) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		t, err := supervisor.SpawnUnder(ctx, h.cfg)
		if err != nil {
			panic(err)
		}
		h.started <- t
	case *childrenOf:
		ctx.Respond(ctx.Children())
	}
}

// A host that spawns the tunnel under its own actor has the tunnel's root as
// its child: stopping the host's actor stops the tunnel's tree and closes
// its connections.
func TestSpawnUnderMakesTheTunnelTheHostsChild(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		stub := relaystub.New(n.Listener(), relaystub.Options{APIKey: stubKey})
		defer func() { _ = stub.Close(); _ = n.Close() }()
		cfg := supervisor.DefaultConfig()
		cfg.RelayURL, cfg.APIKey, cfg.NetDialContext = stub.URL(), stubKey, n.DialContext
		system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
		started := make(chan *supervisor.Tunnel, 1)
		host := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &hostWithTunnel{cfg: cfg, started: started} }))
		tun := <-started
		synctest.Wait()
		if st := tun.Status(); st.ReadyConnections != 2 || stub.Connections() != 2 {
			t.Fatalf("ready %d, stub sees %d connections; want 2 and 2", st.ReadyConnections, stub.Connections())
		}
		res, err := system.Root.RequestFuture(host, &childrenOf{}, time.Second).Result()
		if kids, _ := res.([]*actor.PID); err != nil || len(kids) != 1 || !kids[0].Equal(tun.PID()) {
			t.Fatalf("host's children %v (%v), want the tunnel's root %v", res, err, tun.PID())
		}
		if err := system.Root.StopFuture(host).Wait(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(cfg.CloseTimeout) // fake time: the close handshakes are done
		synctest.Wait()
		if err := stub.Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "late"}); !errors.Is(err, relaystub.ErrNoSession) {
			t.Fatalf("a session is left after the host's actor stopped (send: %v)", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = tun.Stop(ctx)
		system.Shutdown()
		time.Sleep(time.Second) // fake time: lets protoactor's dead-letter throttle run out
	})
}

// chunksOf drains what the stub received so far: the body bytes of stream
// id, and whether its stream_end came.
func chunksOf(s *relaystub.Stub, id string) (body []byte, ended bool) {
	for {
		select {
		case rec := <-s.Frames():
			switch {
			case rec.Binary:
				if gotID, data, err := wire.DecodeChunk(rec.Data); err == nil && gotID == id {
					body = append(body, data...)
				}
			case rec.Frame != nil && rec.Frame.Type == wire.TypeStreamEnd && rec.Frame.MessageID == id:
				ended = true
			}
		default:
			return body, ended
		}
	}
}

// A response body being streamed when its connection is lost goes on over
// the other connection: the supervisor asks with stream_resume, the relay
// answers with the bytes it has, and the supervisor sends the rest from
// there, the bytes the lost connection may have dropped included. A relay
// that cannot resume it fails the handler's Send.
func TestResponseStreamMovesToTheOtherConnection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		refuse bool
	}{{"resumed", false}, {"refused", true}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				body, write := io.Pipe()
				sent := make(chan error, 1)
				p := newPair(t, func(c *supervisor.Config) {
					c.OnMessage = func(ctx context.Context, tun *supervisor.Tunnel, msg *messages.TunnelMessage) {
						// As an upstream request does, the body fails when
						// the handler's context ends.
						context.AfterFunc(ctx, func() { _ = write.CloseWithError(ctx.Err()) })
						sent <- tun.Send(ctx, &messages.TunnelMessage{Type: messages.TypeResponse, MessageID: msg.MessageID, Status: 200, BodyStream: body})
					}
				}, nil)
				p.bothUp()
				_ = p.stubs[0].Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "speech", Method: "POST", Path: "/v1/tts"})
				nextFrame(t, p.stubs[0], wire.TypeResponse)
				_, _ = write.Write([]byte("first part|"))
				synctest.Wait()
				got, _ := chunksOf(p.stubs[0], "speech")
				if string(got) != "first part|" {
					t.Fatalf("relay A got %q", got)
				}

				p.stubs[0].SetMode(relaystub.HTTPStatus)
				p.stubs[0].SetHTTPStatus(503)
				p.stubs[0].DropAll()
				ask := nextFrame(t, p.stubs[1], wire.TypeStreamResume)
				if ask.MessageID != "speech" {
					t.Fatalf("stream_resume for %q", ask.MessageID)
				}
				if tc.refuse {
					_ = p.stubs[1].Send(&wire.Frame{Type: wire.TypeError, MessageID: "speech", Error: "stream cannot be resumed"})
					if err := <-sent; !errors.Is(err, messages.ErrConnectionLost) {
						t.Fatalf("Send after a refused resume: %v, want ErrConnectionLost", err)
					}
					return
				}
				// The relay grants through its new connection as soon as it
				// has the stream, which may be before its answer: that grant
				// is not in the answer's credit (5 bytes here), and the
				// stream would stall without it. The relay has all but the
				// last 5 bytes: those come again.
				_ = p.stubs[1].Send(&wire.Frame{Type: wire.TypeWindowUpdate, MessageID: "speech", Bytes: 1 << 20})
				_ = p.stubs[1].Send(&wire.Frame{Type: wire.TypeStreamResume, MessageID: "speech", Offset: int64(len("first ")), Bytes: 5})
				_, _ = write.Write([]byte("second part"))
				_ = write.Close()
				if err := <-sent; err != nil {
					t.Fatalf("Send of the moved stream: %v", err)
				}
				synctest.Wait()
				rest, ended := chunksOf(p.stubs[1], "speech")
				if string(rest) != "part|second part" || !ended {
					t.Fatalf("relay B got %q (ended %v), want the rest from the offset and the stream's end", rest, ended)
				}
			})
		})
	}
}

// A response stream sent whole is not yet read whole: when its connection
// is lost before the relay acks a heartbeat sent after the stream's end,
// the stream moves and its tail and end go again over the other
// connection. After such an ack it is let go.
func TestAStreamSentWholeMovesUntilItsEndIsSurelyRead(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ackFirst bool
	}{{"lost before the ack", false}, {"lost after the ack", true}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sent := make(chan error, 1)
				p := newPair(t, func(c *supervisor.Config) {
					c.OnMessage = func(ctx context.Context, tun *supervisor.Tunnel, msg *messages.TunnelMessage) {
						sent <- tun.Send(ctx, &messages.TunnelMessage{Type: messages.TypeResponse, MessageID: msg.MessageID, Status: 200,
							BodyStream: strings.NewReader("the whole speech")})
					}
				}, nil)
				p.bothUp()
				_ = p.stubs[0].Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "speech", Method: "POST", Path: "/v1/tts"})
				if err := <-sent; err != nil {
					t.Fatalf("Send: %v", err)
				}
				if tc.ackFirst {
					time.Sleep(supervisor.DefaultHeartbeatInterval) // fake time: a heartbeat goes and is acked
				}
				synctest.Wait()
				p.stubs[0].SetMode(relaystub.HTTPStatus)
				p.stubs[0].SetHTTPStatus(503)
				p.stubs[0].DropAll()
				p.until(0, messages.Disconnected)
				synctest.Wait()
				asked := countFrames(p.stubs[1], wire.TypeStreamResume)
				if tc.ackFirst {
					if asked != 0 {
						t.Fatalf("%d stream_resume after the relay acked past the stream's end, want none", asked)
					}
					return
				}
				if asked != 1 {
					t.Fatalf("%d stream_resume, want 1", asked)
				}
				// The relay lost the last 6 bytes and the end with the connection.
				_ = p.stubs[1].Send(&wire.Frame{Type: wire.TypeStreamResume, MessageID: "speech", Offset: int64(len("the whole ")), Bytes: 1 << 20})
				synctest.Wait()
				rest, ended := chunksOf(p.stubs[1], "speech")
				if string(rest) != "speech" || !ended {
					t.Fatalf("relay B got %q (ended %v), want the lost tail and the end", rest, ended)
				}
			})
		})
	}
}
