package stress

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/enhanced-tunnel/tunnel/internal/faultproxy"
)

// The kinds of fault, injected in rounds: every round has each kind once,
// in an order the seed shuffles, so that every kind comes as often.
const (
	faultLatency = iota
	faultBandwidth
	faultReset
	faultBlackhole
	faultHalfClose
	faultRelayRestart
	numFaults
)

var faultNames = [numFaults]string{"latency", "bandwidth", "reset", "blackhole", "half_close", "relay_restart"}

// recoveryWait bounds the wait for the tunnel to be AUTHENTICATED again
// before the next fault; a tunnel that takes longer is reported.
const recoveryWait = 30 * time.Second

// blackhole is what became of one blackhole.
type blackhole struct {
	start    time.Time
	armed    bool          // the tunnel was AUTHENTICATED when it began: the heartbeat has something to catch
	detected bool          // a stale connection was caught while it lasted
	after    time.Duration // from its start to the stale connection
}

// injector breaks the network between the supervisor and the relay, one
// fault at a time, with quiet time between faults and every connection back
// up before each. With several paths (one fault proxy per connection) each
// fault hits one path, drawn by the seed, so that the tunnel always keeps a
// path that works; the relay restart, which would cut them all, is left out.
type injector struct {
	cfg     Config
	rng     *rand.Rand
	proxies []*faultproxy.Proxy // one per path
	relay   *relayHost
	mon     *monitor
	gate    *sync.RWMutex // held for writing while the relay is down
	trace   io.Writer     // hears of each fault; nil for none
	began   time.Time

	mu         sync.Mutex
	counts     [numFaults]int
	pathCounts []int // faults per path; a relay restart hits none alone
	blackholes []blackhole
	notBack    []string // faults after which the tunnel did not come back in time
}

// run injects faults until ctx ends, then lifts the fault in progress.
// Only a relay that cannot be started again stops it early, with an error.
func (in *injector) run(ctx context.Context) error {
	for {
		for _, kind := range in.rng.Perm(numFaults) {
			if kind == faultRelayRestart && len(in.proxies) > 1 {
				// With several paths the faults are on one path at a time:
				// a relay restart cuts every path at once, and which of them
				// the tunnel has does not matter then (the two-relay
				// integration test covers losing a relay).
				continue
			}
			if !in.waitUp(ctx) {
				return nil
			}
			lo, hi := in.cfg.Failures.quiet()
			if !sleep(ctx, in.between(lo, hi)) {
				return nil
			}
			if err := in.inject(ctx, kind); err != nil {
				return err
			}
		}
	}
}

// waitUp waits for every connection to be AUTHENTICATED; false when ctx
// ended first.
func (in *injector) waitUp(ctx context.Context) bool {
	select {
	case <-in.mon.upSignal():
		return true
	case <-ctx.Done():
		return false
	case <-time.After(recoveryWait):
		in.mu.Lock()
		in.notBack = append(in.notBack, fmt.Sprintf("connections %s, not all AUTHENTICATED %v after the last fault", in.mon.current(), recoveryWait))
		in.mu.Unlock()
		return ctx.Err() == nil
	}
}

func (in *injector) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(in.rng.Int64N(int64(hi-lo)+1))
}

// inject applies one fault and lifts it. A fault that lasts is held for a
// while, cut short (but still lifted) when ctx ends.
func (in *injector) inject(ctx context.Context, kind int) error {
	path := in.pathFor(kind)
	in.mu.Lock()
	in.counts[kind]++
	if path != allPaths {
		in.pathCounts[path]++
	}
	in.mu.Unlock()
	hold := in.between(time.Second, 3*time.Second)
	switch kind {
	case faultLatency:
		latency := in.between(20*time.Millisecond, 100*time.Millisecond)
		in.note(kind, path, "%v each way for %v", latency.Round(time.Millisecond), hold.Round(time.Millisecond))
		if err := in.proxies[path].AddLatency(latency); err != nil {
			return err
		}
		sleep(ctx, hold)
		in.proxies[path].Clear()
	case faultBandwidth:
		rate := 256_000 + in.rng.Int64N(768_000)
		in.note(kind, path, "%d KB/s each way for %v", rate/1000, hold.Round(time.Millisecond))
		if err := in.proxies[path].LimitBandwidth(rate); err != nil {
			return err
		}
		sleep(ctx, hold)
		in.proxies[path].Clear()
	case faultReset:
		in.note(kind, path, "")
		in.proxies[path].ResetConnections()
	case faultHalfClose:
		dir := faultproxy.Direction(in.rng.IntN(2))
		in.note(kind, path, "%s", dir)
		in.proxies[path].HalfClose(dir)
	case faultBlackhole:
		return in.blackhole(ctx, path)
	case faultRelayRestart:
		return in.restartRelay(ctx)
	}
	return nil
}

// pathFor is the path a fault of kind hits: allPaths for the relay's
// restart, otherwise one drawn by the seed. One path needs no draw, so that
// a seed plays out as it did before there were several.
func (in *injector) pathFor(kind int) int {
	switch {
	case kind == faultRelayRestart:
		return allPaths
	case len(in.proxies) == 1:
		return 0
	}
	return in.rng.IntN(len(in.proxies))
}

// allPaths marks a fault that is on no single path: the relay's restart.
const allPaths = -1

// note tells the trace of a fault as it begins, and of its path when there
// are several.
func (in *injector) note(kind, path int, format string, args ...any) {
	if in.trace == nil {
		return
	}
	what := strings.TrimSpace(faultNames[kind] + " " + fmt.Sprintf(format, args...))
	if len(in.proxies) > 1 && path != allPaths {
		what += fmt.Sprintf(" on path %d", path)
	}
	fmt.Fprintf(in.trace, "%6.1fs  fault: %s\n", time.Since(in.began).Seconds(), what)
}

// blackhole holds a blackhole on path past the time the heartbeat needs to
// catch it, then lifts it, and records whether and when it was caught.
func (in *injector) blackhole(ctx context.Context, path int) error {
	bound := in.cfg.HeartbeatTimeout + in.cfg.HeartbeatInterval
	hold := bound + in.between(500*time.Millisecond, 2*time.Second)
	in.note(faultBlackhole, path, "for %v", hold.Round(time.Millisecond))
	start := time.Now()
	proxy := in.proxies[path]
	if err := proxy.Blackhole(); err != nil {
		return err
	}
	sleep(ctx, hold)
	end := time.Now()
	proxy.Clear()
	in.mon.reachable(time.Now(), path)

	// Connection i goes through path i.
	b := blackhole{start: start, armed: in.mon.authenticatedAt(path, start)}
	if stale, ok := in.mon.firstStale(start, end); ok {
		b.detected, b.after = true, stale.Sub(start)
	}
	// A blackhole cut short by the end of the run before its bound has
	// passed proves nothing either way.
	if !b.detected && end.Sub(start) < bound {
		b.armed = false
	}
	in.mu.Lock()
	in.blackholes = append(in.blackholes, b)
	in.mu.Unlock()
	return nil
}

// restartRelay closes the relay and starts it again on the same port after
// a while, often long enough for the breaker to open. Every path ends at
// this relay, so it is the one fault that cuts them all. The public front
// goes down with it, and with nobody to answer there is nothing to count:
// the gate lets the requests in flight end first, and holds new ones until
// the relay is back.
func (in *injector) restartRelay(ctx context.Context) error {
	down := in.between(500*time.Millisecond, 3500*time.Millisecond)
	in.gate.Lock()
	defer in.gate.Unlock()
	in.note(faultRelayRestart, allPaths, "down for %v", down.Round(time.Millisecond))
	if err := in.relay.close(); err != nil {
		return err
	}
	sleep(ctx, down)
	if err := in.relay.start(); err != nil {
		return err
	}
	paths := make([]int, len(in.proxies))
	for i := range paths {
		paths[i] = i
	}
	in.mon.reachable(time.Now(), paths...)
	return nil
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// faultsByPath is how many faults each path had, the relay restarts aside.
func (in *injector) faultsByPath() []int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.pathCounts)
}

// faultCounts is how many faults of each kind were injected.
func (in *injector) faultCounts() map[string]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[string]int, numFaults)
	for k, n := range in.counts {
		out[faultNames[k]] = n
	}
	return out
}
