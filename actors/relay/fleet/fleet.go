package fleet

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages/fleetmsg"

	"github.com/sirupsen/logrus"
)

// Defaults of Config, declared once.
const (
	// DefaultRegisterPeriod is how often a node registers all its tunnels
	// again: 10 s.
	DefaultRegisterPeriod = 10 * time.Second
	// DefaultEntryTTL is how long a directory entry lasts unless registered
	// again: 30 s, three periods, so one lost registration loses nothing.
	DefaultEntryTTL = 30 * time.Second
	// DefaultRouteCache is how long a front node reuses a tunnel's routes:
	// 1 s.
	DefaultRouteCache = time.Second
	// DefaultFailedFor is how long a node a hop failed to reach is left out
	// of routes: 5 s, longer than the provider takes to drop a dead member.
	DefaultFailedFor = 5 * time.Second
	// DefaultWatchPeriod is how often the watchdog looks for the node in
	// its own member list: 1 s.
	DefaultWatchPeriod = time.Second
	// DefaultRejoinAfter is how long a node may miss from its own member
	// list before it joins again as a new member: 10 s.
	DefaultRejoinAfter = 10 * time.Second
	// registerParallel bounds the directory registrations in flight.
	registerParallel = 16
	// lookupTimeout bounds a background lookup of routes.
	lookupTimeout = 2 * time.Second
	// retryAfter is when a failed registration is tried again.
	retryAfter = time.Second
)

// The engine's side of the fleet, declared in messages/fleetmsg so that an
// engine (protoengine) and the Fleet meet through it alone.
type (
	Route        = fleetmsg.Route
	Registration = fleetmsg.Registration
	Membership   = fleetmsg.Membership
	Directory    = fleetmsg.Directory
	Engine       = fleetmsg.Engine
)

// ErrClosed is returned by Close after the first call, and by an engine
// after its Close.
var ErrClosed = fleetmsg.ErrClosed

// Config configures a Fleet. Zero durations take their defaults.
type Config struct {
	// Internal is this node's internal HTTP address, host:port, as other
	// nodes reach it (required; not an unspecified address).
	Internal string
	// RegisterPeriod, default DefaultRegisterPeriod (10 s).
	RegisterPeriod time.Duration
	// EntryTTL, default DefaultEntryTTL (30 s).
	EntryTTL time.Duration
	// RouteCache, default DefaultRouteCache (1 s).
	RouteCache time.Duration
	// FailedFor, default DefaultFailedFor (5 s).
	FailedFor time.Duration
	// WatchPeriod, default DefaultWatchPeriod (1 s).
	WatchPeriod time.Duration
	// RejoinAfter, default DefaultRejoinAfter (10 s).
	RejoinAfter time.Duration
	// Logger; nil discards.
	Logger *logrus.Logger
}

// DefaultConfig is a Config with every default.
func DefaultConfig() Config {
	return Config{
		RegisterPeriod: DefaultRegisterPeriod,
		EntryTTL:       DefaultEntryTTL,
		RouteCache:     DefaultRouteCache,
		FailedFor:      DefaultFailedFor,
		WatchPeriod:    DefaultWatchPeriod,
		RejoinAfter:    DefaultRejoinAfter,
	}
}

// Validate says what is wrong with c, if anything.
func (c Config) Validate() error {
	host, _, err := net.SplitHostPort(c.Internal)
	if err != nil {
		return fmt.Errorf("fleet: internal address %q: %w", c.Internal, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("fleet: internal address %q must name this node as other nodes reach it, not an unspecified address", c.Internal)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"RegisterPeriod", c.RegisterPeriod}, {"EntryTTL", c.EntryTTL}, {"RouteCache", c.RouteCache},
		{"FailedFor", c.FailedFor}, {"WatchPeriod", c.WatchPeriod}, {"RejoinAfter", c.RejoinAfter}} {
		if d.v < 0 {
			return fmt.Errorf("fleet: %s must not be negative, got %v", d.name, d.v)
		}
	}
	// Compared as they will run, defaults included.
	if d := c.withDefaults(); d.EntryTTL <= d.RegisterPeriod {
		return fmt.Errorf("fleet: EntryTTL (%v) must exceed RegisterPeriod (%v)", d.EntryTTL, d.RegisterPeriod)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.RegisterPeriod = cmp.Or(c.RegisterPeriod, d.RegisterPeriod)
	c.EntryTTL = cmp.Or(c.EntryTTL, d.EntryTTL)
	c.RouteCache = cmp.Or(c.RouteCache, d.RouteCache)
	c.FailedFor = cmp.Or(c.FailedFor, d.FailedFor)
	c.WatchPeriod = cmp.Or(c.WatchPeriod, d.WatchPeriod)
	c.RejoinAfter = cmp.Or(c.RejoinAfter, d.RejoinAfter)
	return c
}

type cached struct {
	routes  []Route
	expires time.Time
}

// Fleet is one node's part of a fleet. Create it with New, end it with
// Close. Its methods are safe for concurrent use.
type Fleet struct {
	cfg    Config
	engine Engine
	log    *logrus.Entry

	mu     sync.Mutex
	local  map[string]int       // live sessions per tunnel on this node
	dirty  map[string]bool      // tunnels to register
	cache  map[string]cached    // routes per tunnel
	failed map[string]time.Time // node -> left out until
	hops   map[string]int       // hops in flight per node
	epoch  uint64               // bumped when the cache is dropped: a lookup begun before stores nothing
	// refreshing holds the tunnels whose routes are being looked up again
	// in the background; refreshes counts those lookups, for Close.
	refreshing map[string]bool
	refreshes  sync.WaitGroup
	closed     bool          // Close was called
	changed    chan struct{} // a tunnel became dirty

	stop chan struct{}
	done chan struct{}
}

// New starts a Fleet on engine, which it owns from then on (Close closes
// it).
func New(engine Engine, cfg Config) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log := logrus.New()
	log.SetOutput(discard{})
	if cfg.Logger != nil {
		log = cfg.Logger
	}
	f := &Fleet{
		cfg:        cfg,
		engine:     engine,
		log:        log.WithField("actor", "fleet"),
		local:      make(map[string]int),
		dirty:      make(map[string]bool),
		cache:      make(map[string]cached),
		failed:     make(map[string]time.Time),
		hops:       make(map[string]int),
		refreshing: make(map[string]bool),
		changed:    make(chan struct{}, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	go f.loop()
	return f, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// SetSessions records that this node holds n live sessions of tunnel. It
// never blocks: the relay's router calls it from its actor.
func (f *Fleet) SetSessions(tunnel string, n int) {
	f.mu.Lock()
	if n > 0 {
		f.local[tunnel] = n
	} else {
		delete(f.local, tunnel)
	}
	f.dirty[tunnel] = true
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// Local is the number of live sessions of tunnel on this node.
func (f *Fleet) Local(tunnel string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.local[tunnel]
}

// Joined says whether this node is in its own member list.
func (f *Fleet) Joined() bool { return f.engine.Joined() }

// Self is this node's member id.
func (f *Fleet) Self() string { return f.engine.Self() }

// Members are the member ids of the fleet.
func (f *Fleet) Members() []string { return f.engine.Members() }

// Routes are the other nodes with live sessions of tunnel, the least
// loaded first: the fewest hops from this node in flight, then the most
// sessions. They come from the cache: once expired, they are still
// answered while a lookup in the background refreshes them (see refresh).
// Only a tunnel with no routes cached waits for the directory.
func (f *Fleet) Routes(ctx context.Context, tunnel string) ([]Route, error) {
	now := time.Now()
	f.mu.Lock()
	c, ok := f.cache[tunnel]
	epoch := f.epoch
	stale := ok && now.After(c.expires)
	if stale && !f.refreshing[tunnel] && !f.closed {
		f.refreshing[tunnel] = true
		f.refreshes.Add(1)
		go f.refresh(tunnel, epoch)
	}
	f.mu.Unlock()
	if !ok {
		routes, err := f.engine.Lookup(ctx, tunnel)
		if err != nil {
			return nil, err
		}
		c = cached{routes: routes, expires: now.Add(f.cfg.RouteCache)}
		f.store(tunnel, c, epoch)
	}
	self := f.engine.Self()
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Route, 0, len(c.routes))
	for _, r := range c.routes {
		if r.Node == self || r.Internal == f.cfg.Internal || now.Before(f.failed[r.Node]) {
			continue
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b Route) int {
		if c := cmp.Compare(f.hops[a.Node], f.hops[b.Node]); c != 0 {
			return c
		}
		return cmp.Compare(b.Sessions, a.Sessions)
	})
	return out, nil
}

// refresh looks tunnel's routes up again, in the background of Routes,
// which meanwhile answers the expired ones: when a grain's member has just
// died, its lookups wait for the grain to be placed again, and a request
// should not. A route gone stale costs a hop that fails fast (the node is
// gone, or says it has no session any more) and is tried elsewhere.
func (f *Fleet) refresh(tunnel string, epoch uint64) {
	defer f.refreshes.Done()
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	routes, err := f.engine.Lookup(ctx, tunnel)
	f.mu.Lock()
	delete(f.refreshing, tunnel)
	f.mu.Unlock()
	if err != nil {
		f.log.WithError(err).WithField("tunnel", tunnel).Debug("Fleet route refresh failed")
		return
	}
	f.store(tunnel, cached{routes: routes, expires: time.Now().Add(f.cfg.RouteCache)}, epoch)
}

// store caches c unless the cache was dropped since the lookup began.
func (f *Fleet) store(tunnel string, c cached, epoch uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.epoch == epoch {
		f.cache[tunnel] = c
	}
}

// Lookup asks the directory for tunnel's routes, this node's included,
// past the cache.
func (f *Fleet) Lookup(ctx context.Context, tunnel string) ([]Route, error) {
	return f.engine.Lookup(ctx, tunnel)
}

// Sessions are this node's live sessions per tunnel.
func (f *Fleet) Sessions() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.local)
}

// Failed leaves node out of routes for Config.FailedFor: a hop to it
// failed, or it said it has no session of the tunnel any more.
func (f *Fleet) Failed(node string) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	// Member ids change on every re-join: the expired ones go.
	for n, until := range f.failed {
		if !now.Before(until) {
			delete(f.failed, n)
		}
	}
	f.failed[node] = now.Add(f.cfg.FailedFor)
}

// Stale drops the cached routes of tunnel: a node said it has no session
// of it any more.
func (f *Fleet) Stale(tunnel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.cache, tunnel)
	f.epoch++
}

// Hop counts a hop to node in flight until the returned func is called.
func (f *Fleet) Hop(node string) (done func()) {
	f.mu.Lock()
	f.hops[node]++
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.hops[node]--; f.hops[node] <= 0 {
				delete(f.hops, node)
			}
		})
	}
}

// Close registers what changed last (best effort, within ctx: the relay
// reports its sessions gone as it stops), stops the Fleet and closes its
// engine.
func (f *Fleet) Close(ctx context.Context) error {
	f.mu.Lock()
	closed := f.closed
	f.closed = true
	f.mu.Unlock()
	if closed {
		<-f.done
		return ErrClosed
	}
	close(f.stop)
	<-f.done
	f.refreshes.Wait()
	f.register(ctx, false)
	return f.engine.Close()
}

// loop registers, re-registers and watches until Close.
func (f *Fleet) loop() {
	defer close(f.done)
	period := time.NewTicker(f.cfg.RegisterPeriod)
	defer period.Stop()
	watch := time.NewTicker(f.cfg.WatchPeriod)
	defer watch.Stop()
	var retry <-chan time.Time
	w := watchdog{after: f.cfg.RejoinAfter}
	for {
		all := false
		select {
		case <-f.stop:
			return
		case <-f.changed:
		case <-retry:
			retry = nil
		case <-f.engine.Topology():
			all = true
			f.mu.Lock()
			// Looked up again before use, but kept for when the directory
			// cannot answer: its grains are moving.
			for t, c := range f.cache {
				c.expires = time.Time{}
				f.cache[t] = c
			}
			f.epoch++
			f.mu.Unlock()
		case <-period.C:
			all = true
		case now := <-watch.C:
			if !w.check(f.engine.Joined(), now) {
				continue
			}
			f.log.WithFields(logrus.Fields{"node": f.engine.Self(), "delay": f.cfg.RejoinAfter}).
				Warn("Fleet node missing from its own member list; joining again as a new member")
			if err := f.engine.Rejoin(); err != nil {
				f.log.WithError(err).Error("Fleet re-join failed; trying again")
				w.retry(now)
				continue
			}
			f.log.WithField("node", f.engine.Self()).Info("Fleet node joined again")
			all = true
		}
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.RegisterPeriod)
		ok := f.register(ctx, all)
		cancel()
		if !ok && retry == nil {
			retry = time.After(retryAfter)
		}
	}
}

// register registers the dirty tunnels, or all of them, and says whether
// every registration went through. Failed ones stay dirty.
func (f *Fleet) register(ctx context.Context, all bool) bool {
	f.mu.Lock()
	regs := make(map[string]int, len(f.dirty))
	for t := range f.dirty {
		regs[t] = f.local[t]
	}
	if all {
		for t, n := range f.local {
			regs[t] = n
		}
	}
	clear(f.dirty)
	f.mu.Unlock()
	if len(regs) == 0 {
		return true
	}
	self := f.engine.Self()
	tunnels := make([]string, 0, len(regs))
	for t := range regs {
		tunnels = append(tunnels, t)
	}
	failed := f.each(ctx, tunnels, func(ctx context.Context, t string) error {
		return f.engine.Register(ctx, t, Registration{Node: self, Internal: f.cfg.Internal, Sessions: regs[t], TTL: f.cfg.EntryTTL})
	})
	if len(failed) == 0 {
		return true
	}
	f.mu.Lock()
	for _, t := range failed {
		f.dirty[t] = true
	}
	f.mu.Unlock()
	f.log.WithFields(logrus.Fields{"tunnels": len(failed)}).Warn("Fleet directory registration failed; trying again")
	return false
}

// each runs fn on every tunnel, registerParallel at a time, and returns the
// tunnels it failed for.
func (f *Fleet) each(ctx context.Context, tunnels []string, fn func(context.Context, string) error) []string {
	var (
		mu     sync.Mutex
		failed []string
		wg     sync.WaitGroup
		sem    = make(chan struct{}, registerParallel)
	)
	for _, t := range tunnels {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, t); err != nil {
				mu.Lock()
				failed = append(failed, t)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

// watchdog tells when a node that has been a member has missed from its
// own member list for long enough to join again.
type watchdog struct {
	after    time.Duration
	joined   bool      // has been a member
	lastSeen time.Time // last time it was
}

// check takes whether the node is a member now and says whether to rejoin.
func (w *watchdog) check(member bool, now time.Time) bool {
	switch {
	case member:
		w.joined, w.lastSeen = true, now
		return false
	case !w.joined || now.Sub(w.lastSeen) < w.after:
		return false
	}
	w.joined = false
	return true
}

// retry makes the next check ask for a re-join again: the last failed.
func (w *watchdog) retry(now time.Time) {
	w.joined, w.lastSeen = true, now.Add(-w.after)
}
