package fleet_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay/fleet"
)

const internal = "10.0.0.1:7000"

var errUnavailable = errors.New("directory unavailable")

// registration is one Register call the fake engine saw.
type registration struct {
	tunnel string
	fleet.Registration
	at     time.Time
	failed bool
}

// fakeEngine is an Engine in memory: a directory map that answers like the
// directory grain, a member list of one, and knobs for what can go wrong.
// Every call is recorded with its (fake) time.
type fakeEngine struct {
	topology chan struct{}

	mu          sync.Mutex
	base        string // self without its incarnation
	self        string
	joined      bool
	dir         map[string]map[string]fleet.Route
	regs        []registration
	failNext    int // Register calls to fail from now on
	lookups     int
	lookupErr   error
	rejoins     []time.Time
	rejoinJoins bool  // a Rejoin makes the node a member again
	rejoinErr   error // what Rejoin returns
	closeErr    error
	closed      int
	events      []string // registrations that went through, and Close, in order
}

var _ fleet.Engine = (*fakeEngine)(nil)

func newEngine(self string) *fakeEngine {
	return &fakeEngine{
		topology:    make(chan struct{}, 1),
		base:        self,
		self:        self,
		joined:      true,
		rejoinJoins: true,
		dir:         make(map[string]map[string]fleet.Route),
	}
}

func (e *fakeEngine) Self() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.self
}

func (e *fakeEngine) Joined() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.joined
}

func (e *fakeEngine) Members() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.joined {
		return nil
	}
	return []string{e.self}
}

func (e *fakeEngine) Topology() <-chan struct{} { return e.topology }

func (e *fakeEngine) Rejoin() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rejoins = append(e.rejoins, time.Now())
	if e.rejoinErr != nil {
		return e.rejoinErr
	}
	e.self = fmt.Sprintf("%s-%d", e.base, len(e.rejoins))
	e.joined = e.rejoinJoins
	return nil
}

func (e *fakeEngine) Register(ctx context.Context, tunnel string, r fleet.Registration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	reg := registration{tunnel: tunnel, Registration: r, at: time.Now()}
	if e.failNext > 0 {
		e.failNext--
		reg.failed = true
		e.regs = append(e.regs, reg)
		return errUnavailable
	}
	e.regs = append(e.regs, reg)
	e.events = append(e.events, fmt.Sprintf("register %s %d", tunnel, r.Sessions))
	if r.Sessions <= 0 {
		delete(e.dir[tunnel], r.Node)
		return nil
	}
	e.putLocked(tunnel, fleet.Route{Node: r.Node, Internal: r.Internal, Sessions: r.Sessions})
	return nil
}

func (e *fakeEngine) Lookup(_ context.Context, tunnel string) ([]fleet.Route, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lookups++
	if e.lookupErr != nil {
		return nil, e.lookupErr
	}
	var routes []fleet.Route
	for _, r := range e.dir[tunnel] {
		routes = append(routes, r)
	}
	// As the directory grain answers: most sessions first, ties by node.
	slices.SortFunc(routes, func(a, b fleet.Route) int {
		return cmp.Or(cmp.Compare(b.Sessions, a.Sessions), cmp.Compare(a.Node, b.Node))
	})
	return routes, nil
}

func (e *fakeEngine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed++
	e.events = append(e.events, "close")
	return e.closeErr
}

// put writes routes into the directory as other nodes would.
func (e *fakeEngine) put(tunnel string, routes ...fleet.Route) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range routes {
		e.putLocked(tunnel, r)
	}
}

func (e *fakeEngine) putLocked(tunnel string, r fleet.Route) {
	if e.dir[tunnel] == nil {
		e.dir[tunnel] = make(map[string]fleet.Route)
	}
	e.dir[tunnel][r.Node] = r
}

func (e *fakeEngine) set(f func(e *fakeEngine)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e)
}

func (e *fakeEngine) lookupCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lookups
}

// take returns the Register calls since the last take as "tunnel node
// sessions +offset", offset from start, " failed" appended to a failed
// one; in time order, then by tunnel, since a Fleet registers the tunnels
// of one round in parallel.
func (e *fakeEngine) take(start time.Time) []string {
	e.mu.Lock()
	regs := e.regs
	e.regs = nil
	e.mu.Unlock()
	slices.SortStableFunc(regs, func(a, b registration) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.tunnel, b.tunnel))
	})
	out := []string{}
	for _, r := range regs {
		s := fmt.Sprintf("%s %s %d +%v", r.tunnel, r.Node, r.Sessions, r.at.Sub(start))
		if r.failed {
			s += " failed"
		}
		out = append(out, s)
	}
	return out
}

func (e *fakeEngine) wantRegs(t *testing.T, start time.Time, want ...string) {
	t.Helper()
	synctest.Wait()
	if want == nil {
		want = []string{}
	}
	if got := e.take(start); !slices.Equal(got, want) {
		t.Fatalf("registrations\n got %q\nwant %q", got, want)
	}
}

// bubble runs body in a synctest bubble with a Fleet on a fake engine
// whose node is "n0" at internal, so every delay is fake time and asserted
// exactly. The Fleet is closed at the end unless body closed it; the
// bubble then fails if the Fleet left a goroutine behind.
func bubble(t *testing.T, cfg fleet.Config, body func(t *testing.T, f *fleet.Fleet, e *fakeEngine)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		e := newEngine("n0")
		if cfg.Internal == "" {
			cfg.Internal = internal
		}
		f, err := fleet.New(e, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := f.Close(context.Background()); err != nil && !errors.Is(err, fleet.ErrClosed) {
				t.Errorf("Close: %v", err)
			}
		})
		body(t, f, e)
	})
}

// sleepUntil sleeps, in the bubble's fake time, until start+d.
func sleepUntil(start time.Time, d time.Duration) {
	time.Sleep(time.Until(start.Add(d)))
}

func TestValidate(t *testing.T) {
	good := fleet.DefaultConfig()
	good.Internal = internal
	with := func(change func(c *fleet.Config)) fleet.Config {
		c := good
		change(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  fleet.Config
		want string // in the error; "" for none
	}{
		{name: "defaults", cfg: good},
		{name: "zero durations take defaults", cfg: fleet.Config{Internal: internal}},
		{name: "host name", cfg: with(func(c *fleet.Config) { c.Internal = "relay-1.internal:7000" })},
		{name: "IPv6", cfg: with(func(c *fleet.Config) { c.Internal = "[fd00::1]:7000" })},
		{name: "missing Internal", cfg: with(func(c *fleet.Config) { c.Internal = "" }), want: "internal address"},
		{name: "no port", cfg: with(func(c *fleet.Config) { c.Internal = "10.0.0.1" }), want: "missing port"},
		{name: "no host", cfg: with(func(c *fleet.Config) { c.Internal = ":1" }), want: "unspecified"},
		{name: "unspecified IPv4", cfg: with(func(c *fleet.Config) { c.Internal = "0.0.0.0:1" }), want: "unspecified"},
		{name: "unspecified IPv6", cfg: with(func(c *fleet.Config) { c.Internal = "[::]:1" }), want: "unspecified"},
		{name: "negative RegisterPeriod", cfg: with(func(c *fleet.Config) { c.RegisterPeriod = -1 }), want: "RegisterPeriod must not be negative"},
		{name: "negative EntryTTL", cfg: with(func(c *fleet.Config) { c.EntryTTL = -time.Second }), want: "EntryTTL must not be negative"},
		{name: "negative RouteCache", cfg: with(func(c *fleet.Config) { c.RouteCache = -1 }), want: "RouteCache must not be negative"},
		{name: "negative FailedFor", cfg: with(func(c *fleet.Config) { c.FailedFor = -1 }), want: "FailedFor must not be negative"},
		{name: "negative WatchPeriod", cfg: with(func(c *fleet.Config) { c.WatchPeriod = -1 }), want: "WatchPeriod must not be negative"},
		{name: "negative RejoinAfter", cfg: with(func(c *fleet.Config) { c.RejoinAfter = -1 }), want: "RejoinAfter must not be negative"},
		{
			name: "EntryTTL equal to RegisterPeriod",
			cfg:  with(func(c *fleet.Config) { c.EntryTTL, c.RegisterPeriod = 10*time.Second, 10*time.Second }),
			want: "EntryTTL (10s) must exceed RegisterPeriod (10s)",
		},
		{
			name: "EntryTTL below RegisterPeriod",
			cfg:  with(func(c *fleet.Config) { c.EntryTTL, c.RegisterPeriod = 5*time.Second, 10*time.Second }),
			want: "must exceed RegisterPeriod",
		},
		{
			name: "EntryTTL just above RegisterPeriod",
			cfg:  with(func(c *fleet.Config) { c.EntryTTL, c.RegisterPeriod = 10*time.Second+1, 10*time.Second }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate: nil, want an error with %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate: %q, want it to contain %q", err, tt.want)
			}
			if tt.want == "" {
				return
			}
			e := newEngine("n0")
			if f, err := fleet.New(e, tt.cfg); err == nil || f != nil {
				t.Fatalf("New = %v, %v; want the Validate error", f, err)
			}
		})
	}
}

// TestValidateComparesEffectiveDurations: EntryTTL and RegisterPeriod are
// compared as they will run, so that a config leaving one to its default
// cannot make entries expire between two periods.
func TestValidateComparesEffectiveDurations(t *testing.T) {
	for _, cfg := range []fleet.Config{
		{Internal: internal, EntryTTL: 5 * time.Second},        // period defaults to 10 s
		{Internal: internal, RegisterPeriod: 45 * time.Second}, // TTL defaults to 30 s
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(EntryTTL %v, RegisterPeriod %v) = nil, want an error: with the defaults, entries expire before they are registered again",
				cfg.EntryTTL, cfg.RegisterPeriod)
		}
	}
}

func TestMembershipPassesThrough(t *testing.T) {
	bubble(t, fleet.Config{}, func(t *testing.T, f *fleet.Fleet, e *fakeEngine) {
		if f.Self() != "n0" || !f.Joined() || !slices.Equal(f.Members(), []string{"n0"}) {
			t.Fatalf("Self %q Joined %v Members %q, want the engine's n0 true [n0]", f.Self(), f.Joined(), f.Members())
		}
		e.set(func(e *fakeEngine) { e.joined = false })
		if f.Joined() || len(f.Members()) != 0 {
			t.Fatalf("Joined %v Members %q once the engine is not, want false []", f.Joined(), f.Members())
		}
	})
}

func TestSetSessionsRegisters(t *testing.T) {
	cfg := fleet.Config{EntryTTL: 42 * time.Second}
	bubble(t, cfg, func(t *testing.T, f *fleet.Fleet, e *fakeEngine) {
		start := time.Now()
		f.SetSessions("a", 2)
		synctest.Wait()
		e.mu.Lock()
		first := e.regs[0]
		e.mu.Unlock()
		if first.Internal != internal || first.TTL != cfg.EntryTTL {
			t.Fatalf("registration %+v, want Internal %s and TTL %v", first.Registration, internal, cfg.EntryTTL)
		}
		e.wantRegs(t, start, "a n0 2 +0s")
		if got := f.Local("a"); got != 2 {
			t.Fatalf("Local(a) = %d, want 2", got)
		}

		time.Sleep(time.Second / 2)
		f.SetSessions("a", 5)
		e.wantRegs(t, start, "a n0 5 +500ms")

		// 0, or less, is the node having none any more: registered so that
		// the directory drops it at once rather than at its TTL.
		f.SetSessions("a", 0)
		f.SetSessions("b", 1)
		e.wantRegs(t, start, "a n0 0 +500ms", "b n0 1 +500ms")
		f.SetSessions("b", -1)
		e.wantRegs(t, start, "b n0 0 +500ms")
		if f.Local("a") != 0 || f.Local("b") != 0 {
			t.Fatalf("Local(a), Local(b) = %d, %d; want 0, 0", f.Local("a"), f.Local("b"))
		}
	})
}

func TestTopologyReregistersEveryTunnel(t *testing.T) {
	bubble(t, fleet.Config{}, func(t *testing.T, f *fleet.Fleet, e *fakeEngine) {
		start := time.Now()
		f.SetSessions("a", 1)
		f.SetSessions("b", 2)
		f.SetSessions("c", 3)
		f.SetSessions("c", 0)
		synctest.Wait()
		e.take(start)
		if _, err := f.Routes(context.Background(), "a"); err != nil {
			t.Fatal(err)
		}

		time.Sleep(3 * time.Second)
		e.topology <- struct{}{}
		// The grain of a tunnel may have died with its member: every local
		// tunnel again, and none this node no longer holds.
		e.wantRegs(t, start, "a n0 1 +3s", "b n0 2 +3s")

		// The routes cached before came from grains that may be gone: they
		// are looked up again (in the background) on their next use.
		if _, err := f.Routes(context.Background(), "a"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := e.lookupCount(); got != 2 {
			t.Fatalf("%d lookups, want 2: a topology change expires the route cache", got)
		}
	})
}

func TestPeriodReregistersEveryTunnel(t *testing.T) {
	for _, period := range []time.Duration{fleet.DefaultRegisterPeriod, 3 * time.Second} {
		t.Run(period.String(), func(t *testing.T) {
			bubble(t, fleet.Config{RegisterPeriod: period}, func(t *testing.T, f *fleet.Fleet, e *fakeEngine) {
				start := time.Now()
				f.SetSessions("a", 1)
				f.SetSessions("b", 2)
				e.wantRegs(t, start, "a n0 1 +0s", "b n0 2 +0s")

				sleepUntil(start, period-time.Nanosecond)
				e.wantRegs(t, start)
				sleepUntil(start, period)
				e.wantRegs(t, start, fmt.Sprintf("a n0 1 +%v", period), fmt.Sprintf("b n0 2 +%v", period))

				sleepUntil(start, period+period/2)
				f.SetSessions("b", 0)
				e.wantRegs(t, start, fmt.Sprintf("b n0 0 +%v", period+period/2))

				sleepUntil(start, 2*period)
				e.wantRegs(t, start, fmt.Sprintf("a n0 1 +%v", 2*period))
			})
		})
	}
}

func TestFailedRegisterIsRetriedAfterOneSecond(t *testing.T) {
	tests := []struct {
		failures int
		want     []string
	}{
		{failures: 1, want: []string{"a n0 1 +0s failed", "a n0 1 +1s"}},
		{failures: 3, want: []string{"a n0 1 +0s failed", "a n0 1 +1s failed", "a n0 1 +2s failed", "a n0 1 +3s"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.failures), func(t *testing.T) {
			// Periods far off, so that only the retry registers again.
			cfg := fleet.Config{RegisterPeriod: time.Hour, EntryTTL: 3 * time.Hour}
			bubble(t, cfg, func(t *testing.T, f *fleet.Fleet, e *fakeEngine) {
				start := time.Now()
				e.set(func(e *fakeEngine) { e.failNext = tt.failures })
				f.SetSessions("a", 1)
				sleepUntil(start, time.Duration(tt.failures)*time.Second-time.Nanosecond)
				e.wantRegs(t, start, tt.want[:len(tt.want)-1]...)
				sleepUntil(start, time.Minute)
				e.wantRegs(t, start, tt.want[len(tt.want)-1])
			})
		})
	}
}

// TestFailedRegisterRetriesWhatFailed: a retry registers what failed, not
// what went through.
func TestFailedRegisterRetriesWhatFailed(t *testing.T) {
	cfg := fleet.Config{RegisterPeriod: time.Hour, EntryTTL: 3 * time.Hour}
	bubble(t, cfg, func(t *testing.T, f *fleet.Fleet, e *fakeEngine) {
		start := time.Now()
		f.SetSessions("a", 1)
		e.wantRegs(t, start, "a n0 1 +0s")
		e.set(func(e *fakeEngine) { e.failNext = 1 })
		f.SetSessions("b", 2)
		e.wantRegs(t, start, "b n0 2 +0s failed")
		sleepUntil(start, time.Minute)
		e.wantRegs(t, start, "b n0 2 +1s")
	})
}

// routesOf formats routes as "node sessions".
func routesOf(routes []fleet.Route) []string {
	out := []string{}
	for _, r := range routes {
		out = append(out, fmt.Sprintf("%s %d", r.Node, r.Sessions))
	}
	return out
}

func wantRoutes(t *testing.T, f *fleet.Fleet, tunnel string, want ...string) {
	t.Helper()
	routes, err := f.Routes(context.Background(), tunnel)
	if err != nil {
		t.Fatalf("Routes(%s): %v", tunnel, err)
	}
	if want == nil {
		want = []string{}
	}
	if got := routesOf(routes); !slices.Equal(got, want) {
		t.Fatalf("Routes(%s) = %q, want %q", tunnel, got, want)
	}
}

// seed is a directory with this node under its id and, as an incarnation
// before a Rejoin, under its address, and three other nodes.
func seed(e *fakeEngine) {
	e.put("t",
		fleet.Route{Node: "n0", Internal: internal, Sessions: 9},
		fleet.Route{Node: "n0-old", Internal: internal, Sessions: 8},
		fleet.Route{Node: "n1", Internal: "10.0.0.11:7000", Sessions: 1},
		fleet.Route{Node: "n2", Internal: "10.0.0.12:7000", Sessions: 5},
		fleet.Route{Node: "n3", Internal: "10.0.0.13:7000", Sessions: 3},
	)
}

func TestRoutesOrder(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fleet.Fleet)
		want  []string
	}{
		{
			name:  "without self, most sessions first",
			setup: func(*fleet.Fleet) {},
			want:  []string{"n2 5", "n3 3", "n1 1"},
		},
		{
			name:  "fewest hops in flight first",
			setup: func(f *fleet.Fleet) { f.Hop("n2") },
			want:  []string{"n3 3", "n1 1", "n2 5"},
		},
		{
			name: "hops, then sessions",
			setup: func(f *fleet.Fleet) {
				f.Hop("n2")
				f.Hop("n3")
			},
			want: []string{"n1 1", "n2 5", "n3 3"},
		},
		{
			name: "more hops last",
			setup: func(f *fleet.Fleet) {
				f.Hop("n1")
				f.Hop("n2")
				f.Hop("n2")
			},
			want: []string{"n3 3", "n1 1", "n2 5"},
		},
		{
			name: "an ended hop counts no more",
			setup: func(f *fleet.Fleet) {
				f.Hop("n2")()
				f.Hop("n3")
			},
			want: []string{"n2 5", "n1 1", "n3 3"},
		},
		{
			name: "ending a hop twice ends it once",
			setup: func(f *fleet.Fleet) {
				done := f.Hop("n2")
				f.Hop("n2")
				done()
				done()
			},
			want: []string{"n3 3", "n1 1", "n2 5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bubble(t, fleet.Config{}, func(t *testing.T, f *fleet.Fleet, e *fakeEngine) {
				seed(e)
				tt.setup(f)
				wantRoutes(t, f, "t", tt.want...)
			})
		})
	}
}

func TestRoutesLeaveFailedNodesOutForFailedFor(t *testing.T) {
	for _, failedFor := range []time.Duration{fleet.DefaultFailedFor, 2 * time.Second} {
		t.Run(failedFor.String(), func(t *testing.T) {
			// A cache longer than the test, so that only FailedFor changes
			// the answer.
			bubble(t, fleet.Config{FailedFor: failedFor, RouteCache: time.Hour}, func(t *testing.T, f *fleet.Fleet, e *fakeEngine) {
				seed(e)
				start := time.Now()
				f.Failed("n2")
				wantRoutes(t, f, "t", "n3 3", "n1 1")
				sleepUntil(start, failedFor-time.Nanosecond)
				wantRoutes(t, f, "t", "n3 3", "n1 1")
				sleepUntil(start, failedFor)
				wantRoutes(t, f, "t", "n2 5", "n3 3", "n1 1")

				// Failing again starts over.
				f.Failed("n2")
				sleepUntil(start, 2*failedFor-time.Nanosecond)
				wantRoutes(t, f, "t", "n3 3", "n1 1")
				sleepUntil(start, 2*failedFor)
				wantRoutes(t, f, "t", "n2 5", "n3 3", "n1 1")
				if got := e.lookupCount(); got != 1 {
					t.Fatalf("%d lookups, want 1", got)
				}
			})
		})
	}
}

func TestRouteCache(t *testing.T) {
	for _, cache := range []time.Duration{fleet.DefaultRouteCache, 250 * time.Millisecond} {
		t.Run(cache.String(), func(t *testing.T) {
			bubble(t, fleet.Config{RouteCache: cache}, func(t *testing.T, f *fleet.Fleet, e *fakeEngine) {
				wantLookups := func(n int) {
					t.Helper()
					if got := e.lookupCount(); got != n {
						t.Fatalf("%d lookups, want %d", got, n)
					}
				}
				start := time.Now()
				e.put("t", fleet.Route{Node: "n1", Internal: "10.0.0.11:7000", Sessions: 1})
				wantRoutes(t, f, "t", "n1 1")
				wantLookups(1)

				e.put("t", fleet.Route{Node: "n2", Internal: "10.0.0.12:7000", Sessions: 2})
				sleepUntil(start, cache)
				wantRoutes(t, f, "t", "n1 1")
				wantLookups(1)
				// Another tunnel has a cache of its own.
				wantRoutes(t, f, "u")
				wantLookups(2)

				// Expired routes are answered while they are looked up again.
				sleepUntil(start, cache+time.Nanosecond)
				wantRoutes(t, f, "t", "n1 1")
				synctest.Wait()
				wantLookups(3)
				wantRoutes(t, f, "t", "n2 2", "n1 1")
				wantLookups(3)

				e.put("t", fleet.Route{Node: "n1", Internal: "10.0.0.11:7000", Sessions: 7})
				f.Stale("t")
				wantRoutes(t, f, "t", "n1 7", "n2 2")
				wantLookups(4)

				// A failed lookup is not cached.
				e.set(func(e *fakeEngine) { e.lookupErr = errUnavailable })
				f.Stale("t")
				if _, err := f.Routes(context.Background(), "t"); !errors.Is(err, errUnavailable) {
					t.Fatalf("Routes: %v, want the engine's error", err)
				}
				e.set(func(e *fakeEngine) { e.lookupErr = nil })
				wantRoutes(t, f, "t", "n1 7", "n2 2")
				wantLookups(6)

				// While the directory cannot answer (a grain moving), the
				// expired routes are still answered.
				e.set(func(e *fakeEngine) { e.lookupErr = errUnavailable })
				sleepUntil(start, 3*cache)
				wantRoutes(t, f, "t", "n1 7", "n2 2")
				synctest.Wait()
				wantLookups(7)
				e.set(func(e *fakeEngine) { e.lookupErr = nil })
			})
		})
	}
}

func TestWatchdog(t *testing.T) {
	type flip struct {
		at     time.Duration
		joined bool
	}
	tests := []struct {
		name        string
		watch       time.Duration // WatchPeriod; 0 is 1 s
		after       time.Duration // RejoinAfter; 0 is 10 s
		joined      bool          // at start
		rejoinJoins bool
		flips       []flip
		want        []time.Duration // when Rejoin is called
	}{
		{
			// Last seen on the tick at 1 s.
			name: "missing for RejoinAfter", joined: true, rejoinJoins: true,
			flips: []flip{{1500 * time.Millisecond, false}},
			want:  []time.Duration{11 * time.Second},
		},
		{
			name: "back just before RejoinAfter", joined: true,
			flips: []flip{{1500 * time.Millisecond, false}, {10500 * time.Millisecond, true}},
		},
		{
			name: "never joined",
		},
		{
			// The new member is not in the list either: it has never been a
			// member, so the watchdog waits for it to be one.
			name: "rejoined member never seen", joined: true,
			flips: []flip{{1500 * time.Millisecond, false}},
			want:  []time.Duration{11 * time.Second},
		},
		{
			name: "missing again after rejoining", joined: true, rejoinJoins: true,
			flips: []flip{{1500 * time.Millisecond, false}, {20500 * time.Millisecond, false}},
			want:  []time.Duration{11 * time.Second, 30 * time.Second},
		},
		{
			name:  "joined late",
			flips: []flip{{3500 * time.Millisecond, true}, {4500 * time.Millisecond, false}},
			want:  []time.Duration{14 * time.Second},
		},
		{
			// The first tick at least RejoinAfter after the last sighting.
			name: "RejoinAfter not a multiple of WatchPeriod", watch: 2 * time.Second, after: 5 * time.Second, joined: true,
			flips: []flip{{2500 * time.Millisecond, false}},
			want:  []time.Duration{8 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEngine("n0")
				e.joined, e.rejoinJoins = tt.joined, tt.rejoinJoins
				start := time.Now()
				f, err := fleet.New(e, fleet.Config{Internal: internal, WatchPeriod: tt.watch, RejoinAfter: tt.after})
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close(context.Background())
				for _, fl := range tt.flips {
					sleepUntil(start, fl.at)
					e.set(func(e *fakeEngine) { e.joined = fl.joined })
				}
				sleepUntil(start, time.Minute)
				synctest.Wait()
				e.mu.Lock()
				var got []time.Duration
				for _, at := range e.rejoins {
					got = append(got, at.Sub(start))
				}
				e.mu.Unlock()
				if !slices.Equal(got, tt.want) {
					t.Fatalf("Rejoin at %v, want %v", got, tt.want)
				}
			})
		})
	}
}

func TestRejoinReregistersEveryTunnel(t *testing.T) {
	bubble(t, fleet.Config{}, func(t *testing.T, f *fleet.Fleet, e *fakeEngine) {
		start := time.Now()
		f.SetSessions("a", 1)
		f.SetSessions("b", 2)
		e.wantRegs(t, start, "a n0 1 +0s", "b n0 2 +0s")
		sleepUntil(start, 1500*time.Millisecond)
		e.set(func(e *fakeEngine) { e.joined = false })
		// Under its new member id, before the period (10 s, 20 s) would.
		sleepUntil(start, 11*time.Second)
		e.wantRegs(t, start, "a n0 1 +10s", "b n0 2 +10s", "a n0-1 1 +11s", "b n0-1 2 +11s")
	})
}

// TestWatchdogRetriesFailedRejoin: a failed re-join is tried again on the
// next watch, until one succeeds.
func TestWatchdogRetriesFailedRejoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEngine("n0")
		e.rejoinErr = errors.New("etcd unavailable")
		start := time.Now()
		f, err := fleet.New(e, fleet.Config{Internal: internal})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close(context.Background())
		sleepUntil(start, 1500*time.Millisecond)
		e.set(func(e *fakeEngine) { e.joined = false })
		sleepUntil(start, time.Minute)
		synctest.Wait()
		e.mu.Lock()
		n := len(e.rejoins)
		e.mu.Unlock()
		if n < 2 {
			t.Fatalf("Rejoin called %d times in a minute of failures, want it tried again", n)
		}
	})
}

func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEngine("n0")
		f, err := fleet.New(e, fleet.Config{Internal: internal})
		if err != nil {
			t.Fatal(err)
		}
		f.SetSessions("a", 3)
		synctest.Wait()
		// The relay reports its sessions gone as it stops: that must reach
		// the directory, before the engine goes.
		f.SetSessions("a", 0)
		if err := f.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		e.mu.Lock()
		events, closed := slices.Clone(e.events), e.closed
		e.mu.Unlock()
		if want := []string{"register a 3", "register a 0", "close"}; !slices.Equal(events, want) {
			t.Fatalf("engine saw %q, want %q", events, want)
		}
		if err := f.Close(context.Background()); !errors.Is(err, fleet.ErrClosed) {
			t.Fatalf("second Close: %v, want ErrClosed", err)
		}
		e.mu.Lock()
		closedAgain := e.closed
		e.mu.Unlock()
		if closed != 1 || closedAgain != 1 {
			t.Fatalf("engine closed %d times, then %d, want once", closed, closedAgain)
		}
		// No timer of the Fleet fires on a closed engine.
		e.take(time.Now())
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(e.take(time.Now())); n != 0 {
			t.Fatalf("%d registrations after Close", n)
		}
	})
}

func TestCloseReturnsEngineError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEngine("n0")
		e.closeErr = errors.New("cluster shutdown failed")
		f, err := fleet.New(e, fleet.Config{Internal: internal})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Close(context.Background()); !errors.Is(err, e.closeErr) {
			t.Fatalf("Close: %v, want the engine's error", err)
		}
	})
}

// TestCloseWithinContext: the last registrations are best effort; a
// context already done does not keep the engine open.
func TestCloseWithinContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEngine("n0")
		f, err := fleet.New(e, fleet.Config{Internal: internal})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		f.SetSessions("a", 0)
		if err := f.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.closed != 1 {
			t.Fatalf("engine closed %d times, want once", e.closed)
		}
	})
}

// TestConcurrentClose: of two Close calls at once, one closes and the
// other says it is closed; neither panics.
func TestConcurrentClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, err := fleet.New(newEngine("n0"), fleet.Config{Internal: internal})
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 2)
		for range 2 {
			go func() { errs <- f.Close(context.Background()) }()
		}
		first, second := <-errs, <-errs
		if (first == nil) == (second == nil) || !errors.Is(errors.Join(first, second), fleet.ErrClosed) {
			t.Fatalf("Close, Close = %v, %v; want one nil and one ErrClosed", first, second)
		}
	})
}
