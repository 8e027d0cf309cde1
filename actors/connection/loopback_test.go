package connection_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/actors/connection"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/probe"
	"github.com/enhanced-tunnel/tunnel/test/relaystub"
)

// Tests over real loopback sockets assert outcomes, never timings.

// loopback returns an actor system and probe whose cleanup stops everything
// and then checks that no goroutine is left.
func loopback(t *testing.T) (*actor.ActorSystem, *probe.Probe) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	system := actor.NewActorSystem(probe.Quiet()...)
	t.Cleanup(system.Shutdown)
	return system, probe.New(t, system)
}

func listen(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLoopbackAuthenticatesWritesAndStops(t *testing.T) {
	system, p := loopback(t)
	stub := relaystub.New(listen(t), relaystub.Options{APIKey: apiKey})
	t.Cleanup(func() { _ = stub.Close() })

	cfg := connection.DefaultConfig()
	cfg.URL, cfg.APIKey = stub.URL(), apiKey
	pid := p.SpawnChild(connection.Props(cfg))
	var sc *messages.StateChanged
	for _, want := range []messages.State{messages.Connecting, messages.Connected, messages.Authenticating, messages.Authenticated} {
		if sc, _ = probe.Expect[*messages.StateChanged](p); sc.State != want {
			t.Fatalf("state = %v, want %v", sc.State, want)
		}
	}
	if sc.SessionID != "session-1" || sc.ConnectTime <= 0 {
		t.Fatalf("authenticated = %+v", sc)
	}

	o := outbound(context.Background(), `{"type":"request","message_id":"r1"}`)
	p.Send(pid, o)
	if err := <-o.Reply; err != nil {
		t.Fatalf("outbound: %v", err)
	}
	p.Send(pid, &actormsg.SendHeartbeat{MessageID: "hb", Timestamp: 1})
	if ack, _ := probe.Expect[*actormsg.HeartbeatAck](p); ack.MessageID != "hb" {
		t.Fatalf("ack = %+v", ack)
	}
	for _, want := range []string{wire.TypeAuth, wire.TypeRequest, wire.TypeHeartbeat} {
		if r := <-stub.Frames(); r.Frame == nil || r.Frame.Type != want {
			t.Fatalf("stub received %+v, want %s", r, want)
		}
	}
	if err := system.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestLoopbackRefusedOnClosedPort(t *testing.T) {
	system, p := loopback(t)
	l := listen(t)
	addr := l.Addr().String()
	l.Close()

	cfg := connection.DefaultConfig()
	cfg.URL, cfg.APIKey = "ws://"+addr+"/tunnel", apiKey
	pid := p.SpawnChild(connection.Props(cfg))
	f, _ := probe.ExpectSkipping[*probe.Failure](p)
	if cf, ok := f.Reason.(*actormsg.ConnectionFailed); !ok || cf.Type != messages.ConnectionRefused || cf.WasAuthenticated {
		t.Fatalf("failure = %v", f.Reason)
	}
	if err := system.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestLoopbackStopDuringHandshakeLeavesNothing(t *testing.T) {
	system, p := loopback(t)
	stub := relaystub.New(listen(t), relaystub.Options{})
	t.Cleanup(func() { _ = stub.Close() })
	stub.SetMode(relaystub.NoAuthReply)

	cfg := connection.DefaultConfig()
	cfg.URL, cfg.APIKey = stub.URL(), apiKey
	cfg.ConnectTimeout = time.Hour // only Stop can end this attempt
	pid := p.SpawnChild(connection.Props(cfg))
	for range 3 {
		probe.Expect[*messages.StateChanged](p)
	}
	if err := system.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
}
