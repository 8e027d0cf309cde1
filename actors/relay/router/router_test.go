package router_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/enhanced-tunnel/tunnel/actors/relay/router"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

// fixture is a router whose parent, and whose first session, is the probe.
// It knows the tunnels "default", "a" and "b", and keeps its metrics.
type fixture struct {
	t        *testing.T
	system   *actor.ActorSystem
	p        *probe.Probe
	router   *actor.PID
	retries  *prometheus.CounterVec
	held     *prometheus.GaugeVec
	sessions *prometheus.GaugeVec
	// resumeCount counts the stream resumes, by result.
	resumeCount *prometheus.CounterVec
}

func newFixture(t *testing.T, system *actor.ActorSystem, change func(*router.Config)) *fixture {
	p := probe.New(t, system)
	p.Wait = time.Hour
	f := &fixture{
		t: t, system: system, p: p,
		retries:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "retries"}, []string{"reason"}),
		held:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "held"}, []string{"tunnel"}),
		sessions:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sessions"}, []string{"tunnel"}),
		resumeCount: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "resumes"}, []string{"result"}),
	}
	cfg := router.DefaultConfig()
	cfg.Tunnels = []string{"default", "a", "b"}
	cfg.Retries, cfg.Held, cfg.Sessions, cfg.Resumes = f.retries, f.held, f.sessions, f.resumeCount
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// The probe's cleanup stops the router with it, as its child.
	f.router = p.SpawnChild(router.Props(cfg))
	return f
}

// register makes session (the probe unless given) serve tunnel, as a
// supervisor that names no instance.
func (f *fixture) register(tunnel string, session *probe.Probe) {
	f.t.Helper()
	if session == nil {
		session = f.p
	}
	if r := f.up(session, tunnel, "", 0); r.Refused {
		f.t.Fatalf("session for %s refused: %+v", tunnel, r)
	}
}

// up sends the SessionUp of session for tunnel, instance and index, and
// returns the router's answer.
func (f *fixture) up(session *probe.Probe, tunnel, instance string, index int) *relaymsg.Registered {
	f.t.Helper()
	session.Send(f.router, &relaymsg.SessionUp{Tunnel: tunnel, SessionID: "s-" + session.PID.Id, Session: session.PID, Instance: instance, Index: index})
	r, _ := probe.Expect[*relaymsg.Registered](session)
	return r
}

// replica registers a new session (a probe) for tunnel with instance and
// index.
func (f *fixture) replica(tunnel, instance string, index int) *probe.Probe {
	f.t.Helper()
	s := probe.New(f.t, f.system)
	s.Wait = time.Hour
	if r := f.up(s, tunnel, instance, index); r.Refused {
		f.t.Fatalf("session %s/%d refused: %+v", instance, index, r)
	}
	return s
}

// down tells the router that session ended, with the request frames of
// written sent.
func (f *fixture) down(session *probe.Probe, tunnel string, written ...string) {
	f.system.Root.Send(f.router, &relaymsg.SessionDown{Tunnel: tunnel, Session: session.PID, Written: written})
}

func (f *fixture) forward(tunnel, id string) *relaymsg.Exchange {
	return f.request(tunnel, id, http.MethodGet, nil, false)
}

// request forwards a request with method and an inline body, or a streamed
// one.
func (f *fixture) request(tunnel, id, method string, body []byte, streamed bool) *relaymsg.Exchange {
	frame := &wire.Frame{Type: wire.TypeRequest, MessageID: id, Method: method, Path: "/", Body: body}
	var upload *wire.SendWindow
	if streamed {
		frame.Stream, upload = true, wire.NewSendWindow(wire.DefaultWindow)
	}
	ex := relaymsg.NewExchange(tunnel, frame, upload)
	f.system.Root.Send(f.router, &relaymsg.Forward{Exchange: ex})
	return ex
}

func (f *fixture) done(id string) {
	f.system.Root.Send(f.router, &relaymsg.Done{MessageID: id})
}

func (f *fixture) respond(id string) {
	f.system.Root.Send(f.router, &relaymsg.Response{MessageID: id, Frame: &wire.Frame{Type: wire.TypeResponse, MessageID: id, Status: 200}})
}

// dispatched expects the Dispatch of id at the probe.
func (f *fixture) dispatched(id string) {
	f.t.Helper()
	dispatchedTo(f.t, f.p, id)
}

// dispatchedTo expects the Dispatch of id at session.
func dispatchedTo(t *testing.T, session *probe.Probe, id string) {
	t.Helper()
	d, _ := probe.Expect[*relaymsg.Dispatch](session)
	if d.Exchange.ID() != id {
		t.Fatalf("dispatched %q, want %q", d.Exchange.ID(), id)
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

// noOutcome fails if ex gets an outcome within d (fake time).
func noOutcome(t *testing.T, ex *relaymsg.Exchange, d time.Duration) {
	t.Helper()
	select {
	case out := <-ex.Outcome:
		t.Fatalf("outcome %+v, want none yet", out)
	case <-time.After(d):
	}
}

func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Gauge != nil {
		return d.GetGauge().GetValue()
	}
	return d.GetCounter().GetValue()
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
		f.done("m1")
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
		f.done("m1")
		// Inline both ways: the session forgot it with its response.
		f.p.ExpectNoMsg(time.Minute)
	})
}

// Done tells the session what is left to do: release a streamed response,
// cancel an unfinished one, nothing for an inline response (the session
// forgot it when it routed it).
func TestDoneTellsTheSession(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answered bool
		stream   bool
		cancel   bool
		want     string
	}{
		{"complete inline", true, false, false, ""},
		{"complete stream", true, true, false, "release"},
		{"client left mid-body", true, true, true, "cancel"},
		{"client left before the response", false, false, false, "cancel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				f := newFixture(t, system, nil)
				f.register("default", nil)
				ex := f.forward("default", "m1")
				f.dispatched("m1")
				switch {
				case tc.stream:
					body := wire.NewStreamReader(wire.DefaultWindow, func(int64) {})
					f.system.Root.Send(f.router, &relaymsg.Response{MessageID: "m1", Body: body,
						Frame: &wire.Frame{Type: wire.TypeResponse, MessageID: "m1", Status: 200, Stream: true}})
					outcome(t, ex)
				case tc.answered:
					f.respond("m1")
					outcome(t, ex)
				}
				f.system.Root.Send(f.router, &relaymsg.Done{MessageID: "m1", Cancel: tc.cancel})
				if tc.want == "" {
					f.p.ExpectNoMsg(time.Minute)
					return
				}
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

func TestListTunnelsNamesThoseWithASession(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		f.register("b", nil)
		f.register("a", nil)
		f.replica("a", "i2", 0)
		f.p.Send(f.router, &relaymsg.ListTunnels{})
		if got, _ := probe.Expect[*relaymsg.Tunnels](f.p); fmt.Sprint(got.Names) != "[a b]" {
			t.Fatalf("tunnels %v, want [a b]: each once, and not default, which has no session", got.Names)
		}
	})
}

func TestUnknownTunnelIs404AtOnce(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		start := time.Now()
		out := outcome(t, f.forward("nobody", "m1"))
		if out.Status != http.StatusNotFound || out.Error != `unknown tunnel "nobody"` || time.Since(start) != 0 {
			t.Fatalf("outcome %+v after %v, want 404 at once", out, time.Since(start))
		}
		if v := value(t, f.held.WithLabelValues("nobody")); v != 0 {
			t.Fatalf("held %v", v)
		}
	})
}

func TestSessionsOfTwoSupervisorsServeSideBySide(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		one := f.replica("a", "instance-1", 0)
		two := f.replica("a", "instance-2", 0)
		if v := value(t, f.sessions.WithLabelValues("a")); v != 2 {
			t.Fatalf("sessions gauge %v, want 2", v)
		}
		for i := range 4 {
			f.forward("a", fmt.Sprintf("m%d", i))
		}
		// Idle sessions take turns.
		dispatchedTo(t, one, "m0")
		dispatchedTo(t, two, "m1")
		dispatchedTo(t, one, "m2")
		dispatchedTo(t, two, "m3")
		// Neither is told to close.
		one.ExpectNoMsg(30 * time.Second)
		two.ExpectNoMsg(time.Second)
	})
}

func TestNewerSessionOfTheSameConnectionReplacesTheOlder(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		instance1, instance2 string
		index1, index2       int
		replaced             bool
	}{
		{"same instance and index", "i1", "i1", 1, 1, true},
		{"no instance: the supervisor before HA", "", "", 0, 0, true},
		{"no instance, whatever the index", "", "", 0, 2, true},
		{"same instance, other index", "i1", "i1", 0, 1, false},
		{"other instance, same index", "i1", "i2", 0, 0, false},
		{"no instance beside one", "", "i1", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				f := newFixture(t, system, nil)
				older := f.replica("a", tc.instance1, tc.index1)
				newer := f.replica("a", tc.instance2, tc.index2)
				want := 2.0
				if tc.replaced {
					want = 1
					c, _ := probe.Expect[*relaymsg.CloseSession](older)
					if c.Code != wire.CloseNormal || c.Reason != "replaced by a newer session" {
						t.Fatalf("close %+v", c)
					}
					// The older session's end leaves the newer one in place.
					f.down(older, "a")
				} else {
					older.ExpectNoMsg(time.Minute)
				}
				if v := value(t, f.sessions.WithLabelValues("a")); v != want {
					t.Fatalf("sessions gauge %v, want %v", v, want)
				}
				f.forward("a", "m1")
				f.forward("a", "m2")
				if tc.replaced {
					dispatchedTo(t, newer, "m1")
					dispatchedTo(t, newer, "m2")
				} else {
					dispatchedTo(t, older, "m1")
					dispatchedTo(t, newer, "m2")
				}
			})
		})
	}
}

func TestTunnelAtItsSessionLimitRefusesOneMore(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, func(c *router.Config) { c.MaxSessionsPerTunnel = 2 })
		one := f.replica("a", "i1", 0)
		f.replica("a", "i2", 0)
		third := probe.New(t, system)
		third.Wait = time.Hour
		if r := f.up(third, "a", "i3", 0); !r.Refused || r.Reason != "tunnel at its session limit" {
			t.Fatalf("third session: %+v, want refused at the tunnel's limit", r)
		}
		// Another tunnel has its own limit; a replacement needs no room.
		f.replica("b", "i3", 0)
		f.replica("a", "i1", 0)
		probe.Expect[*relaymsg.CloseSession](one)
		f.down(one, "a")
		if v := value(t, f.sessions.WithLabelValues("a")); v != 2 {
			t.Fatalf("sessions gauge %v, want 2", v)
		}
		// A refused session never registered: its end changes nothing.
		f.down(third, "a")
		if r := f.up(third, "a", "i3", 0); !r.Refused {
			t.Fatalf("still at the limit: %+v", r)
		}
	})
}

func TestRequestsGoToTheSessionWithTheFewestInFlight(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		one := f.replica("a", "i1", 0)
		two := f.replica("a", "i2", 0)
		f.forward("a", "m1")
		dispatchedTo(t, one, "m1")
		ex2 := f.forward("a", "m2")
		dispatchedTo(t, two, "m2")
		// m2 is done: two has nothing in flight, one has m1.
		f.respond("m2")
		outcome(t, ex2)
		f.done("m2")
		f.forward("a", "m3")
		dispatchedTo(t, two, "m3")
		// One each in flight: a tie, which goes round.
		f.forward("a", "m4")
		dispatchedTo(t, one, "m4")
		// A request that failed counts no more either.
		f.system.Root.Send(f.router, &relaymsg.Failed{MessageID: "m4", Error: "x"})
		f.system.Root.Send(f.router, &relaymsg.Failed{MessageID: "m1", Error: "x"})
		f.forward("a", "m5")
		dispatchedTo(t, one, "m5")
	})
}

func TestRequestNeverWrittenGoesThroughAnotherSession(t *testing.T) {
	for _, tc := range []struct {
		name     string
		method   string
		streamed bool
	}{
		{"GET", http.MethodGet, false},
		{"POST", http.MethodPost, false},
		{"streamed POST", http.MethodPost, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				f := newFixture(t, system, nil)
				one := f.replica("a", "i1", 0)
				two := f.replica("a", "i2", 0)
				ex := f.request("a", "m1", tc.method, []byte("body"), tc.streamed)
				dispatchedTo(t, one, "m1")
				f.forward("a", "m2")
				dispatchedTo(t, two, "m2")
				// one ends with m1 still queued: two takes it, whatever its
				// method or body.
				f.down(one, "a")
				d, _ := probe.Expect[*relaymsg.Dispatch](two)
				if d.Exchange != ex {
					t.Fatalf("dispatched %q, want the same exchange m1", d.Exchange.ID())
				}
				if v := value(t, f.retries.WithLabelValues(router.ReasonUnwritten)); v != 1 {
					t.Fatalf("retries{unwritten} %v, want 1", v)
				}
				f.respond("m1")
				if out := outcome(t, ex); out.Response == nil {
					t.Fatalf("outcome %+v", out)
				}
			})
		})
	}
}

func TestWrittenRequestWhenItsSessionEnds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		method   string
		streamed bool
		noRetry  bool
		retried  bool
	}{
		{"GET is sent again", http.MethodGet, false, false, true},
		{"HEAD is sent again", http.MethodHead, false, false, true},
		{"OPTIONS is sent again", http.MethodOptions, false, false, true},
		{"PUT is sent again", http.MethodPut, false, false, true},
		{"DELETE is sent again", http.MethodDelete, false, false, true},
		{"POST is 502", http.MethodPost, false, false, false},
		{"PATCH is 502", http.MethodPatch, false, false, false},
		{"streamed PUT is 502", http.MethodPut, true, false, false},
		{"GET with RetryIdempotent off is 502", http.MethodGet, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				f := newFixture(t, system, func(c *router.Config) { c.RetryIdempotent = !tc.noRetry })
				one := f.replica("a", "i1", 0)
				two := f.replica("a", "i2", 0)
				ex := f.request("a", "m1", tc.method, nil, tc.streamed)
				dispatchedTo(t, one, "m1")
				f.down(one, "a", "m1")
				if !tc.retried {
					if out := outcome(t, ex); out.Status != http.StatusBadGateway || out.Error != "tunnel lost before the response" {
						t.Fatalf("outcome %+v, want 502", out)
					}
					two.ExpectNoMsg(time.Minute)
					return
				}
				dispatchedTo(t, two, "m1")
				if v := value(t, f.retries.WithLabelValues(router.ReasonIdempotent)); v != 1 {
					t.Fatalf("retries{idempotent} %v, want 1", v)
				}
				// Once only: lost again, it is 502 though a session is left.
				f.replica("a", "i3", 0)
				f.down(two, "a", "m1")
				if out := outcome(t, ex); out.Status != http.StatusBadGateway {
					t.Fatalf("outcome %+v, want 502 on the second loss", out)
				}
			})
		})
	}
}

// A request lost with the last session waits for the next one, as a new
// request would; if none comes, one that may have reached a supervisor is
// 502, one that never left is 503.
func TestLostRequestWaitsForTheNextSession(t *testing.T) {
	for _, tc := range []struct {
		name    string
		written bool
		comes   bool
		status  int
	}{
		{"written GET, a session comes", true, true, 0},
		{"unwritten GET, a session comes", false, true, 0},
		{"written GET, none comes", true, false, http.StatusBadGateway},
		{"unwritten GET, none comes", false, false, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				f := newFixture(t, system, nil)
				f.register("a", nil)
				ex := f.forward("a", "m1")
				f.dispatched("m1")
				var written []string
				if tc.written {
					written = []string{"m1"}
				}
				f.down(f.p, "a", written...)
				start := time.Now()
				noOutcome(t, ex, 5*time.Second)
				if v := value(t, f.held.WithLabelValues("a")); v != 1 {
					t.Fatalf("held %v, want 1", v)
				}
				if !tc.comes {
					out := outcome(t, ex)
					if out.Status != tc.status || time.Since(start) != router.DefaultHoldTimeout {
						t.Fatalf("outcome %+v after %v, want %d after the hold timeout", out, time.Since(start), tc.status)
					}
					return
				}
				next := f.replica("a", "", 0)
				dispatchedTo(t, next, "m1")
				if v := value(t, f.held.WithLabelValues("a")); v != 0 {
					t.Fatalf("held %v, want 0", v)
				}
			})
		})
	}
}

func TestHeldRequestIsDispatchedWhenASessionComesUp(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		ex := f.forward("a", "m1")
		noOutcome(t, ex, 10*time.Second)
		if v := value(t, f.held.WithLabelValues("a")); v != 1 {
			t.Fatalf("held %v, want 1", v)
		}
		f.register("a", nil)
		up := time.Now()
		f.dispatched("m1")
		if v := value(t, f.held.WithLabelValues("a")); v != 0 {
			t.Fatalf("held %v, want 0 once dispatched", v)
		}
		// The hold timer is gone; the request timeout runs from the dispatch.
		out := outcome(t, ex)
		if out.Status != http.StatusGatewayTimeout || time.Since(up) != router.DefaultRequestTimeout {
			t.Fatalf("outcome %+v after %v, want 504 a request timeout after the dispatch", out, time.Since(up))
		}
	})
}

func TestHeldRequestIs503AfterExactlyTheHoldTimeout(t *testing.T) {
	for _, hold := range []time.Duration{router.DefaultHoldTimeout, 7 * time.Second} {
		t.Run(hold.String(), func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				f := newFixture(t, system, func(c *router.Config) { c.HoldTimeout = hold })
				start := time.Now()
				out := outcome(t, f.forward("a", "m1"))
				if took := time.Since(start); took != hold {
					t.Fatalf("503 after %v, want exactly %v", took, hold)
				}
				if out.Status != http.StatusServiceUnavailable || out.Error != `no tunnel "a" connected` {
					t.Fatalf("outcome %+v", out)
				}
				if v := value(t, f.held.WithLabelValues("a")); v != 0 {
					t.Fatalf("held %v after the timeout", v)
				}
				// A session that comes later gets nothing of it.
				f.register("a", nil)
				f.p.ExpectNoMsg(time.Minute)
			})
		})
	}
}

func TestHoldTimeoutZeroIs503AtOnce(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, func(c *router.Config) { c.HoldTimeout = 0 })
		start := time.Now()
		out := outcome(t, f.forward("a", "m1"))
		if out.Status != http.StatusServiceUnavailable || out.Error != `no tunnel "a" connected` || time.Since(start) != 0 {
			t.Fatalf("outcome %+v after %v, want 503 at once", out, time.Since(start))
		}
	})
}

func TestHoldIsBoundedInCountAndBytes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxHeld  int
		maxBytes int64
		bodies   []int // inline body sizes; -1 streams
		refused  int   // the index of the one refused at once
		error    string
	}{
		{"count", 2, 1 << 20, []int{0, 10, 0}, 2, "holds 2 requests already"},
		{"bytes", 10, 10, []int{6, 0, -1, 6}, 3, "would exceed 10 bytes"},
		{"bytes up to the bound", 10, 10, []int{6, 4, 1}, 2, "would exceed 10 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				f := newFixture(t, system, func(c *router.Config) { c.MaxHeld, c.MaxHeldBytes = tc.maxHeld, tc.maxBytes })
				var exs []*relaymsg.Exchange
				for i, size := range tc.bodies {
					body := []byte(strings.Repeat("x", max(size, 0)))
					exs = append(exs, f.request("a", fmt.Sprintf("m%d", i), http.MethodPut, body, size < 0))
				}
				start := time.Now()
				out := outcome(t, exs[tc.refused])
				if out.Status != http.StatusServiceUnavailable || !strings.Contains(out.Error, tc.error) || time.Since(start) != 0 {
					t.Fatalf("outcome %+v after %v, want 503 %q at once", out, time.Since(start), tc.error)
				}
				if v := value(t, f.held.WithLabelValues("a")); v != float64(len(tc.bodies)-1) {
					t.Fatalf("held %v, want %d", v, len(tc.bodies)-1)
				}
				f.register("a", nil)
				for i := range tc.bodies {
					if i != tc.refused {
						f.dispatched(fmt.Sprintf("m%d", i))
					}
				}
			})
		})
	}
}

func TestDoneForgetsAHeldRequest(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, func(c *router.Config) { c.MaxHeld, c.MaxHeldBytes = 1, 4 })
		ex := f.request("a", "m1", http.MethodPost, []byte("1234"), false)
		noOutcome(t, ex, time.Second)
		// The client goes away: the front says Done.
		f.system.Root.Send(f.router, &relaymsg.Done{MessageID: "m1", Cancel: true})
		// Its place and its bytes are free at once.
		ex2 := f.request("a", "m2", http.MethodPost, []byte("5678"), false)
		noOutcome(t, ex2, time.Second)
		if v := value(t, f.held.WithLabelValues("a")); v != 1 {
			t.Fatalf("held %v, want 1", v)
		}
		f.register("a", nil)
		f.dispatched("m2")
		f.p.ExpectNoMsg(time.Minute)
		select {
		case out := <-ex.Outcome:
			t.Fatalf("outcome %+v for a request the front gave up", out)
		default:
		}
	})
}

// The requests of a replaced session stay with it until it ends; then they
// go through the session that replaced it.
func TestReplacedSessionsRequestsMoveToTheNewerOne(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		f.register("a", nil)
		f.forward("a", "m1")
		f.dispatched("m1")
		f.request("a", "m2", http.MethodPost, nil, false)
		f.dispatched("m2")
		newer := f.replica("a", "", 0)
		probe.Expect[*relaymsg.CloseSession](f.p)
		f.down(f.p, "a", "m1")
		dispatchedTo(t, newer, "m1") // written, idempotent
		dispatchedTo(t, newer, "m2") // never written
	})
}

func TestSessionDownFailsWaitingRequestsWith502(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, func(c *router.Config) { c.HoldTimeout = 0 })
		f.register("a", nil)
		ex := f.request("a", "m1", http.MethodPost, nil, false)
		f.dispatched("m1")
		f.down(f.p, "a", "m1")
		if out := outcome(t, ex); out.Status != http.StatusBadGateway {
			t.Fatalf("outcome %+v", out)
		}
		if out := outcome(t, f.forward("a", "m2")); out.Status != http.StatusServiceUnavailable {
			t.Fatalf("after the session left: %+v", out)
		}
	})
}

// Once the relay closes, no session can come: what is held is answered at
// once, nothing more is held, and a tunnel with a session still serves.
func TestDrainAnswersTheHeldRequests(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, nil)
		held := f.forward("a", "m1")
		noOutcome(t, held, time.Second)
		f.register("b", nil)
		start := time.Now()
		f.system.Root.Send(f.router, &relaymsg.Drain{})
		if out := outcome(t, held); out.Status != http.StatusServiceUnavailable || out.Error != "relay shutting down" || time.Since(start) != 0 {
			t.Fatalf("held request: %+v after %v, want 503 at once", out, time.Since(start))
		}
		if out := outcome(t, f.forward("a", "m2")); out.Status != http.StatusServiceUnavailable || time.Since(start) != 0 {
			t.Fatalf("new request: %+v after %v, want 503 at once", out, time.Since(start))
		}
		f.forward("b", "m3")
		f.dispatched("m3")
	})
}

// A session's SessionDown comes straight to the router, its SessionUp
// through the relay's root: the end of a session that died at once can come
// first. Its late SessionUp is then refused, and no request goes to it.
func TestSessionUpAfterItsSessionDownIsRefused(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f := newFixture(t, system, func(c *router.Config) { c.HoldTimeout = 0 })
		f.down(f.p, "a")
		if r := f.up(f.p, "a", "", 0); !r.Refused {
			t.Fatalf("SessionUp after its SessionDown: %+v, want refused", r)
		}
		if out := outcome(t, f.forward("a", "m1")); out.Status != http.StatusServiceUnavailable {
			t.Fatalf("a request for the tunnel: %+v, want 503 (no session)", out)
		}
	})
}
