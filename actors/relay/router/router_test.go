package router_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/enhanced-tunnel/tunnel/actors/relay/router"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

// fixture is a router whose parent, and whose only session, is the probe.
type fixture struct {
	t      *testing.T
	system *actor.ActorSystem
	p      *probe.Probe
	router *actor.PID
}

func newFixture(t *testing.T, system *actor.ActorSystem, change func(*router.Config)) *fixture {
	p := probe.New(t, system)
	p.Wait = time.Hour
	cfg := router.DefaultConfig()
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// The probe's cleanup stops the router with it, as its child.
	return &fixture{t: t, system: system, p: p, router: p.SpawnChild(router.Props(cfg))}
}

// register makes session (the probe unless given) serve tunnel.
func (f *fixture) register(tunnel string, session *probe.Probe) {
	f.t.Helper()
	if session == nil {
		session = f.p
	}
	session.Send(f.router, &relaymsg.SessionUp{Tunnel: tunnel, SessionID: "s-" + tunnel, Session: session.PID})
	probe.Expect[*relaymsg.Registered](session)
}

func (f *fixture) forward(tunnel, id string) *relaymsg.Exchange {
	ex := relaymsg.NewExchange(tunnel, &wire.Frame{Type: wire.TypeRequest, MessageID: id, Method: "GET", Path: "/"}, nil)
	f.system.Root.Send(f.router, &relaymsg.Forward{Exchange: ex})
	return ex
}

// dispatched expects the Dispatch of id at the probe.
func (f *fixture) dispatched(id string) {
	f.t.Helper()
	d, _ := probe.Expect[*relaymsg.Dispatch](f.p)
	if d.Exchange.ID() != id {
		f.t.Fatalf("dispatched %q, want %q", d.Exchange.ID(), id)
	}
}

func outcome(t *testing.T, ex *relaymsg.Exchange) relaymsg.Outcome {
	t.Helper()
	select {
	case out := <-ex.Outcome:
		return out
	case <-time.After(time.Hour):
		t.Fatal("no outcome")
	}
	return relaymsg.Outcome{}
}

func TestRequestTimesOutAfterExactlyTheRequestTimeout(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		f.register("default", nil)
		start := time.Now()
		ex := f.forward("default", "m1")
		f.dispatched("m1")
		out := outcome(t, ex)
		if took := time.Since(start); took != 60*time.Second {
			t.Fatalf("504 after %v, want exactly 60s", took)
		}
		if out.Status != http.StatusGatewayTimeout || out.Response != nil {
			t.Fatalf("outcome %+v", out)
		}
		c, env := probe.Expect[*relaymsg.Cancel](f.p)
		if c.MessageID != "m1" || env.At.Sub(start) != 60*time.Second {
			t.Fatalf("cancel %+v at %v", c, env.At.Sub(start))
		}
		// The front lets go after its 504: nothing more for the session.
		f.system.Root.Send(f.router, &relaymsg.Done{MessageID: "m1"})
		f.p.ExpectNoMsg(time.Minute)
	})
}

func TestResponseStopsTheTimeout(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		f.register("default", nil)
		ex := f.forward("default", "m1")
		f.dispatched("m1")
		resp := &wire.Frame{Type: wire.TypeResponse, MessageID: "m1", Status: 201}
		f.system.Root.Send(f.router, &relaymsg.Response{MessageID: "m1", Frame: resp})
		if out := outcome(t, ex); out.Response != resp {
			t.Fatalf("outcome %+v", out)
		}
		f.p.ExpectNoMsg(2 * time.Minute)
		select {
		case out := <-ex.Outcome:
			t.Fatalf("second outcome %+v", out)
		default:
		}
		f.system.Root.Send(f.router, &relaymsg.Done{MessageID: "m1"})
		if r, _ := probe.Expect[*relaymsg.Release](f.p); r.MessageID != "m1" {
			t.Fatalf("release %+v", r)
		}
	})
}

func TestRequestForATunnelWithNoSessionIs503(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		if out := outcome(t, f.forward("a", "m0")); out.Status != http.StatusServiceUnavailable {
			t.Fatalf("no tunnel: %+v", out)
		}
		f.register("a", nil)
		f.forward("a", "m1")
		f.dispatched("m1")
	})
}

func TestDoneTellsTheSession(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answered bool
		cancel   bool
		want     string
	}{
		{"complete", true, false, "release"},
		{"client left mid-body", true, true, "cancel"},
		{"client left before the response", false, false, "cancel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				f := newFixture(t, system, nil)
				f.register("default", nil)
				ex := f.forward("default", "m1")
				f.dispatched("m1")
				if tc.answered {
					f.system.Root.Send(f.router, &relaymsg.Response{MessageID: "m1", Frame: &wire.Frame{Type: wire.TypeResponse, Status: 200}})
					outcome(t, ex)
				}
				f.system.Root.Send(f.router, &relaymsg.Done{MessageID: "m1", Cancel: tc.cancel})
				e, ok := f.p.Receive()
				if !ok {
					t.Fatal("nothing for the session")
				}
				switch m := e.Msg.(type) {
				case *relaymsg.Release:
					if tc.want != "release" || m.MessageID != "m1" {
						t.Fatalf("got %+v, want %s", m, tc.want)
					}
				case *relaymsg.Cancel:
					if tc.want != "cancel" || m.MessageID != "m1" {
						t.Fatalf("got %+v, want %s", m, tc.want)
					}
				default:
					t.Fatalf("got %T", m)
				}
			})
		})
	}
}

func TestSessionDownFailsWaitingRequestsWith502(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		f.register("a", nil)
		ex := f.forward("a", "m1")
		f.dispatched("m1")
		f.system.Root.Send(f.router, &relaymsg.SessionDown{Tunnel: "a", Session: f.p.PID})
		if out := outcome(t, ex); out.Status != http.StatusBadGateway {
			t.Fatalf("outcome %+v", out)
		}
		if out := outcome(t, f.forward("a", "m2")); out.Status != http.StatusServiceUnavailable {
			t.Fatalf("after the session left: %+v", out)
		}
	})
}

func TestSupervisorFailureIs502(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		f.register("a", nil)
		ex := f.forward("a", "m1")
		f.dispatched("m1")
		f.system.Root.Send(f.router, &relaymsg.Failed{MessageID: "m1", Error: "upstream down"})
		if out := outcome(t, ex); out.Status != http.StatusBadGateway || out.Error != "tunnel: upstream down" {
			t.Fatalf("outcome %+v", out)
		}
	})
}

func TestNewSessionTakesTheTunnelOver(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		f.register("a", nil)
		newer := probe.New(t, f.system)
		newer.Wait = time.Hour
		f.register("a", newer)
		if c, _ := probe.Expect[*relaymsg.CloseSession](f.p); c.Code != wire.CloseNormal {
			t.Fatalf("close %+v", c)
		}
		// The old session's end does not unregister the new one.
		f.system.Root.Send(f.router, &relaymsg.SessionDown{Tunnel: "a", Session: f.p.PID})
		f.forward("a", "m1")
		if d, _ := probe.Expect[*relaymsg.Dispatch](newer); d.Exchange.ID() != "m1" {
			t.Fatalf("dispatch %+v", d)
		}
	})
}

func TestListTunnels(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		f.register("b", nil)
		f.register("a", nil)
		f.p.Send(f.router, &relaymsg.ListTunnels{})
		if got, _ := probe.Expect[*relaymsg.Tunnels](f.p); len(got.Names) != 2 || got.Names[0] != "a" || got.Names[1] != "b" {
			t.Fatalf("tunnels %v", got.Names)
		}
	})
}
