package directory_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/enhanced-tunnel/tunnel/actors/relay/fleet/protoengine/directory"
	fleetv1 "github.com/enhanced-tunnel/tunnel/messages/fleet/v1"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

// askTimeout bounds each request; it is fake time in the bubble, so a grain
// that does not answer fails the test at no cost.
const askTimeout = time.Minute

// clock is an injected Config.Now that only moves when told, so that TTLs
// are asserted to the nanosecond whatever the scheduler does.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// members is an injected Config.IsMember whose fleet the test changes.
type members struct {
	mu  sync.Mutex
	ids map[string]bool
}

func newMembers(ids ...string) *members {
	m := &members{ids: make(map[string]bool)}
	for _, id := range ids {
		m.ids[id] = true
	}
	return m
}

func (m *members) IsMember(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ids[id]
}

func (m *members) Set(id string, in bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids[id] = in
}

// grainFixture is one directory grain in an actor system of its own.
type grainFixture struct {
	t      *testing.T
	system *actor.ActorSystem
	pid    *actor.PID
}

func spawn(t *testing.T, system *actor.ActorSystem, cfg directory.Config) *grainFixture {
	t.Helper()
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return directory.New(cfg) }))
	// Stopping an already stopped grain is harmless; stopping a live one
	// keeps its receive timeout timer from outliving the test.
	t.Cleanup(func() { _ = system.Root.StopFuture(pid).Wait() })
	return &grainFixture{t: t, system: system, pid: pid}
}

func (g *grainFixture) ask(msg any) any {
	g.t.Helper()
	res, err := g.system.Root.RequestFuture(g.pid, msg, askTimeout).Result()
	if err != nil {
		g.t.Fatalf("%T: %v", msg, err)
	}
	return res
}

func (g *grainFixture) register(node, internal string, sessions int32, ttl time.Duration) {
	g.t.Helper()
	res := g.ask(&fleetv1.Register{Node: node, Internal: internal, Sessions: sessions, TtlMs: ttl.Milliseconds()})
	if _, ok := res.(*fleetv1.Registered); !ok {
		g.t.Fatalf("Register answered %T %v, want *Registered", res, res)
	}
}

// lookup returns the routes as "node internal sessions", in the grain's
// order, which is part of what is asserted.
func (g *grainFixture) lookup() []string {
	g.t.Helper()
	res := g.ask(&fleetv1.Lookup{})
	routes, ok := res.(*fleetv1.Routes)
	if !ok {
		g.t.Fatalf("Lookup answered %T %v, want *Routes", res, res)
	}
	out := []string{}
	for _, r := range routes.GetRoutes() {
		out = append(out, fmt.Sprintf("%s %s %d", r.GetNode(), r.GetInternal(), r.GetSessions()))
	}
	return out
}

func (g *grainFixture) wantRoutes(want ...string) {
	g.t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := g.lookup(); !slices.Equal(got, want) {
		g.t.Fatalf("routes %q, want %q", got, want)
	}
}

const ttl = 30 * time.Second

func TestRegisterThenLookup(t *testing.T) {
	type reg struct {
		node     string
		sessions int32
	}
	tests := []struct {
		name string
		regs []reg
		want []string
	}{
		{name: "no registration", want: nil},
		{name: "one node", regs: []reg{{"n1", 2}}, want: []string{"n1 n1:7000 2"}},
		{
			name: "most sessions first",
			regs: []reg{{"n1", 1}, {"n2", 5}, {"n3", 3}},
			want: []string{"n2 n2:7000 5", "n3 n3:7000 3", "n1 n1:7000 1"},
		},
		{
			name: "ties by node id",
			regs: []reg{{"n3", 2}, {"n1", 2}, {"n4", 7}, {"n2", 2}},
			want: []string{"n4 n4:7000 7", "n1 n1:7000 2", "n2 n2:7000 2", "n3 n3:7000 2"},
		},
		{
			name: "registering again replaces the count",
			regs: []reg{{"n1", 5}, {"n2", 3}, {"n1", 1}},
			want: []string{"n2 n2:7000 3", "n1 n1:7000 1"},
		},
		{
			name: "sessions 0 removes the node",
			regs: []reg{{"n1", 5}, {"n2", 3}, {"n1", 0}},
			want: []string{"n2 n2:7000 3"},
		},
		{
			name: "sessions 0 of an unknown node changes nothing",
			regs: []reg{{"n2", 3}, {"n9", 0}},
			want: []string{"n2 n2:7000 3"},
		},
		{
			name: "last node removed",
			regs: []reg{{"n1", 5}, {"n1", 0}},
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				g := spawn(t, system, directory.Config{Now: newClock().Now})
				for _, r := range tt.regs {
					g.register(r.node, r.node+":7000", r.sessions, ttl)
				}
				g.wantRoutes(tt.want...)
			})
		})
	}
}

func TestEntriesExpireExactlyAfterTTL(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		c := newClock()
		start := c.Now()
		g := spawn(t, system, directory.Config{Now: c.Now})
		g.register("n1", "n1:7000", 1, ttl)
		g.register("n2", "n2:7000", 2, 2*ttl)

		c.Set(start.Add(ttl))
		g.wantRoutes("n2 n2:7000 2", "n1 n1:7000 1")
		c.Set(start.Add(ttl + time.Nanosecond))
		g.wantRoutes("n2 n2:7000 2")

		// A registration restarts the entry's TTL from its own time.
		c.Set(start.Add(ttl + time.Second))
		g.register("n2", "n2:7000", 2, ttl)
		c.Set(start.Add(2*ttl + time.Second))
		g.wantRoutes("n2 n2:7000 2")
		c.Set(start.Add(2*ttl + time.Second + time.Nanosecond))
		g.wantRoutes()
	})
}

func TestEntriesOfNodesThatLeftAreDropped(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		m := newMembers("n1", "n2", "n3")
		g := spawn(t, system, directory.Config{Now: newClock().Now, IsMember: m.IsMember})
		g.register("n1", "n1:7000", 1, ttl)
		g.register("n2", "n2:7000", 2, ttl)
		g.register("n3", "n3:7000", 3, ttl)

		m.Set("n2", false)
		g.wantRoutes("n3 n3:7000 3", "n1 n1:7000 1")

		// Dropped, not hidden: a node that comes back (a new incarnation
		// would have a new id anyway) is routed to again only once it
		// registers again.
		m.Set("n2", true)
		g.wantRoutes("n3 n3:7000 3", "n1 n1:7000 1")
		g.register("n2", "n2:7000", 2, ttl)
		g.wantRoutes("n3 n3:7000 3", "n2 n2:7000 2", "n1 n1:7000 1")

		// A Register prunes too, so a departed node's entry is not kept
		// until the next Lookup.
		m.Set("n3", false)
		g.register("n1", "n1:7000", 4, ttl)
		m.Set("n3", true)
		g.wantRoutes("n1 n1:7000 4", "n2 n2:7000 2")
	})
}

func TestNilIsMemberCountsEveryNode(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		g := spawn(t, system, directory.Config{})
		g.register("anyone", "anyone:7000", 1, ttl)
		g.wantRoutes("anyone anyone:7000 1")
	})
}

// watcher reports when the watched actor stops.
type watcher struct {
	target  *actor.PID
	stopped chan time.Time
}

func (w *watcher) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		ctx.Watch(w.target)
	case *actor.Terminated:
		select {
		case w.stopped <- time.Now():
		default:
		}
	}
}

// watch returns a channel that receives the time pid stopped.
func watch(t *testing.T, system *actor.ActorSystem, pid *actor.PID) <-chan time.Time {
	stopped := make(chan time.Time, 1)
	w := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &watcher{target: pid, stopped: stopped} }))
	t.Cleanup(func() { _ = system.Root.StopFuture(w).Wait() })
	return stopped
}

// TestIdleGrainStops runs the grain's receive timeout in fake time: each
// case either stops the grain at an exact instant or asserts that it is
// still there an hour on.
func TestIdleGrainStops(t *testing.T) {
	const idle = time.Minute
	tests := []struct {
		name string
		// act runs right after the grain starts, at time start.
		act func(g *grainFixture)
		// wantStop is when the grain stops, after start; 0: it does not.
		wantStop time.Duration
	}{
		{
			name:     "no message",
			act:      func(*grainFixture) {},
			wantStop: idle,
		},
		{
			name: "each message restarts the wait",
			act: func(g *grainFixture) {
				time.Sleep(idle / 2)
				g.lookup()
			},
			wantStop: idle/2 + idle,
		},
		{
			name: "last node removed",
			act: func(g *grainFixture) {
				g.register("n1", "n1:7000", 1, time.Hour)
				time.Sleep(idle / 2)
				g.register("n1", "n1:7000", 0, time.Hour)
			},
			wantStop: idle/2 + idle,
		},
		{
			name: "entries expired before the wait ends",
			act: func(g *grainFixture) {
				g.register("n1", "n1:7000", 1, idle/2)
			},
			wantStop: idle,
		},
		{
			name: "entries of nodes that left",
			act: func(g *grainFixture) {
				g.register("gone", "gone:7000", 1, time.Hour)
			},
			wantStop: idle,
		},
		{
			name: "live entry",
			act: func(g *grainFixture) {
				g.register("n1", "n1:7000", 1, 2*time.Hour)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				m := newMembers("n1")
				start := time.Now()
				// The grain's TTLs and the bubble's fake clock are one
				// clock here, so that Idle and TTL can be compared.
				g := spawn(t, system, directory.Config{Idle: idle, IsMember: m.IsMember})
				stopped := watch(t, system, g.pid)
				tt.act(g)
				if tt.wantStop == 0 {
					time.Sleep(time.Hour)
					synctest.Wait()
					select {
					case at := <-stopped:
						t.Fatalf("grain with a live entry stopped after %v", at.Sub(start))
					default:
					}
					g.wantRoutes("n1 n1:7000 1")
					return
				}
				select {
				case at := <-stopped:
					if got := at.Sub(start); got != tt.wantStop {
						t.Fatalf("grain stopped after %v, want exactly %v", got, tt.wantStop)
					}
				case <-time.After(time.Hour):
					t.Fatalf("grain still running an hour on, want it stopped after %v", tt.wantStop)
				}
			})
		})
	}
}

// TestGrainStopsOnceItsEntriesExpire: a grain that still had an entry
// when it was first idle for Idle stops once that entry has expired and it
// has been idle for Idle again (protoactor-go cancels the timeout when it
// fires; the grain sets it again).
func TestGrainStopsOnceItsEntriesExpire(t *testing.T) {
	const idle = time.Minute
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		start := time.Now()
		g := spawn(t, system, directory.Config{Idle: idle})
		stopped := watch(t, system, g.pid)
		g.register("n1", "n1:7000", 1, idle+idle/2)
		select {
		case at := <-stopped:
			if got, want := at.Sub(start), 2*idle; got != want {
				t.Fatalf("grain stopped after %v, want exactly %v (the second idle timeout)", got, want)
			}
		case <-time.After(time.Hour):
			t.Fatal("grain still running an hour after its only entry expired")
		}
	})
}
