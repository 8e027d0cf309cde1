package benchrig

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LossResult is the loss phase: node A (Killed) killed with SIGKILL under
// a steady load over every tunnel at every node.
type LossResult struct {
	Tunnels int
	Nodes   []LossNode
	Killed  int // the index in Nodes of the killed node: 0, A
	// BeforeElapsed is the load before the kill, AfterElapsed after it
	// (from the kill to the last answer).
	BeforeElapsed, AfterElapsed time.Duration
	// FailedBefore are the requests that failed and ended before the kill,
	// at any node: none should.
	FailedBefore int64
	// KilledInFlight are the requests at the killed node in flight when
	// it was killed; KilledAfter those sent to it after. Both must fail at
	// the TCP level.
	KilledInFlight, KilledAfter LossCount
	// Survivors are the requests at the surviving nodes that ended after
	// the kill: each must be answered, with its body or an explicit JSON
	// error (502, 503, 504).
	Survivors LossCount
	// FirstFailure and LastFailure are, from the kill, the ends of the
	// first and the last failed request at a surviving node; -1 for none.
	FirstFailure, LastFailure time.Duration
	// P50, P99 and Max are the latencies of the requests at the
	// survivors after the kill; Slow is how many took over a second.
	P50, P99, Max time.Duration
	Slow          int64
	// SlowOnes are the first few of them, the slowest first.
	SlowOnes []SlowRequest
	// MembersForgot, RoutesForgot and RoutesComplete are, from the kill,
	// when every survivor's /fleet first showed the killed node out of its
	// members, out of every tunnel's routes, and every tunnel's routes as
	// exactly the surviving sessions; -1 if not within SettleTimeout.
	MembersForgot, RoutesForgot, RoutesComplete time.Duration
	// Poll is the period of the /fleet watch; WatchReads the views it
	// read, WatchFailed those answered with an error (WatchError the
	// first), WatchSlowest the longest a read took.
	Poll                              time.Duration
	WatchReads, WatchFailed, WatchCut int
	WatchSlowest                      time.Duration
	WatchError                        string
}

// SlowRequest is a request at a survivor that took over a second.
type SlowRequest struct {
	Node, Tunnel string
	Sent, Took   time.Duration // Sent: from the kill
	Status       int           // 0 for a transport error
}

// maxSlowOnes bounds LossResult.SlowOnes.
const maxSlowOnes = 5

// LossNode is one node of the loss phase.
type LossNode struct {
	Label, ID string
	Killed    bool
	// ExpectedTunnels are the tunnels configured with a session at the
	// node (home i%N or the next one).
	ExpectedTunnels int
	// TunnelsBefore and SessionsBefore are from its /fleet just before
	// the kill; TunnelsAfter and SessionsAfter at the end (survivors).
	TunnelsBefore, SessionsBefore, TunnelsAfter, SessionsAfter int
	// TunnelNames are the tunnels with a session at the node before the
	// kill.
	TunnelNames []string
	// Requests at the node ended before the kill (OK, failed), and ended
	// after it (sent, OK, failed).
	OKBefore, FailedBefore          int64
	SentAfter, OKAfter, FailedAfter int64
}

// LossCount sorts requests by how they ended.
type LossCount struct {
	Requests int64
	OK       int64            // 200 with the right body
	BadBody  int64            // 200 with another body
	Status   map[int]int64    // answers other than 200, by status
	Explicit int64            // of those, 502/503/504 with a JSON {"error":...} body
	Errors   map[string]int64 // transport errors by kind, hung ones (timeout) included
	// FirstError is the text of the first transport error of a kind
	// "other".
	FirstError string
}

// Failed is every request not answered 200 with the right body.
func (c LossCount) Failed() int64 { return c.Requests - c.OK }

// Answered is every request answered with an HTTP status.
func (c LossCount) Answered() int64 {
	n := c.OK + c.BadBody
	for _, k := range c.Status {
		n += k
	}
	return n
}

// Hung is the requests without an answer within the per-request timeout.
func (c LossCount) Hung() int64 { return c.Errors[errTimeout] }

func (c *LossCount) add(o *lossOutcome) {
	c.Requests++
	switch {
	case o.errKind != "":
		if c.Errors == nil {
			c.Errors = map[string]int64{}
		}
		c.Errors[o.errKind]++
		if o.errKind == errOther && c.FirstError == "" {
			c.FirstError = o.errText
		}
	case o.code == http.StatusOK && !o.badBody:
		c.OK++
	case o.code == http.StatusOK:
		c.BadBody++
	default:
		if c.Status == nil {
			c.Status = map[int]int64{}
		}
		c.Status[o.code]++
		if o.explicit {
			c.Explicit++
		}
	}
}

// The kinds of transport errors.
const (
	errTimeout = "timeout (hung)"
	errRefused = "connection refused"
	errReset   = "connection reset"
	errPipe    = "broken pipe"
	errEOF     = "connection closed (EOF)"
	errOther   = "other"
)

func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return errRefused
	case errors.Is(err, syscall.ECONNRESET):
		return errReset
	case errors.Is(err, syscall.EPIPE):
		return errPipe
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errEOF
	}
	return errOther
}

// lossOutcome is one request of the loss phase.
type lossOutcome struct {
	node       int
	tunnel     string
	start, end time.Time
	code       int
	badBody    bool   // 200 with another body
	explicit   bool   // 502/503/504 with a JSON {"error":...} body
	errKind    string // a transport error's kind; "" for an answer
	errText    string
}

func (o *lossOutcome) failed() bool { return o.errKind != "" || o.code != http.StatusOK || o.badBody }

// lossTunnel names tunnel i.
func lossTunnel(i int) string { return fmt.Sprintf("t%02d", i) }

// lossHomes are the two nodes tunnel i has a session at: its home i%n and
// the next.
func lossHomes(i, n int) [2]int { return [2]int{i % n, (i + 1) % n} }

// loss runs the loss phase on a fleet of its own.
func (fr *fleetRig) loss(ctx context.Context) (*LossResult, error) {
	cfg := fr.cfg
	n, t := cfg.Nodes, cfg.Tunnels
	tunnels := make([]string, t)
	keys := make([]string, t)
	var keysText strings.Builder
	for i := range tunnels {
		key, err := newKey()
		if err != nil {
			return nil, err
		}
		tunnels[i], keys[i] = lossTunnel(i), key
		fmt.Fprintf(&keysText, "%s %s\n", tunnels[i], key)
	}
	keysFile := filepath.Join(fr.procs.dir, "loss-keys")
	if err := os.WriteFile(keysFile, []byte(keysText.String()), 0o600); err != nil {
		return nil, err
	}
	nodes, err := fr.startFleet(ctx, "loss", n, keysFile)
	if err != nil {
		return nil, err
	}
	watched := nodeChildren(nodes)
	for i, tunnel := range tunnels {
		h := lossHomes(i, n)
		args := []string{
			"-relay-url", "ws://" + nodes[h[0]].addr + "/tunnel,ws://" + nodes[h[1]].addr + "/tunnel",
			"-tunnel", tunnel, "-forward", "http://" + fr.upstreamAddr,
			// One connection to each relay URL.
			"-connections", "2", "-listen", "127.0.0.1:0", "-log-level", "warn",
		}
		sup, _, err := fr.procs.start("loss-supervisor-"+tunnel, filepath.Join(fr.bin, "tunnel-supervisor"), args,
			childEnv("TUNNEL_API_KEY="+keys[i]), false, cfg.ReadyTimeout)
		if err != nil {
			return nil, err
		}
		watched = append(watched, sup)
	}
	res := &LossResult{Tunnels: t, Poll: watchPoll}
	// want[node][tunnel] is the sessions the node should hold.
	want := make([]map[string]int, n)
	for j := range want {
		want[j] = map[string]int{}
	}
	for i, tunnel := range tunnels {
		for _, j := range lossHomes(i, n) {
			want[j][tunnel]++
		}
	}
	for j, nd := range nodes {
		res.Nodes = append(res.Nodes, LossNode{Label: nd.label, ID: nd.id, Killed: j == res.Killed, ExpectedTunnels: len(want[j])})
		err := fr.wait(ctx, watched, cfg.ReadyTimeout, "the sessions at node "+nd.label, func(ctx context.Context) error {
			v, err := fr.view(ctx, nd, "")
			if err != nil {
				return err
			}
			if !maps.Equal(v.Sessions, want[j]) {
				return fmt.Errorf("sessions %v, want %v", v.Sessions, want[j])
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// Every node's directory view lists both nodes of every tunnel, and
	// every tunnel answers at every node.
	err = fr.wait(ctx, watched, cfg.ReadyTimeout, "every tunnel's routes at every node", func(ctx context.Context) error {
		for i, tunnel := range tunnels {
			h := lossHomes(i, n)
			wantIDs := []string{nodes[h[0]].id, nodes[h[1]].id}
			for _, nd := range nodes {
				v, err := fr.view(ctx, nd, tunnel)
				if err != nil {
					return err
				}
				if got := routeIDs(v); !sameSet(got, wantIDs) {
					return fmt.Errorf("node %s: routes of %s %v, want %v", nd.label, tunnel, got, wantIDs)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	client := newHTTPClient(1)
	defer client.CloseIdleConnections()
	err = fr.wait(ctx, watched, cfg.ReadyTimeout, "every tunnel at every node", func(ctx context.Context) error {
		for _, tunnel := range tunnels {
			for _, nd := range nodes {
				if err := getOK(ctx, client, "http://"+nd.addr+"/t/"+tunnel+"/small"); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	progress(cfg.Config, "losing a node: %d nodes %v, %d tunnels with a supervisor each, sessions as configured; loading for %v",
		n, nodeAddrs(nodes), t, cfg.BeforeKill)

	// The load.
	stop := make(chan struct{})
	conns := n * cfg.LossConns
	outcomes := make([][]lossOutcome, conns)
	var wg sync.WaitGroup
	loadStart := time.Now()
	for w := range conns {
		wg.Go(func() {
			outcomes[w] = lossWorker(ctx, w%n, "http://"+nodes[w%n].addr, tunnels, w, stop)
		})
	}
	if err := sleepCtx(ctx, cfg.BeforeKill); err != nil {
		close(stop)
		wg.Wait()
		return nil, err
	}
	for j, nd := range nodes {
		v, err := fr.view(ctx, nd, "")
		if err != nil {
			close(stop)
			wg.Wait()
			return nil, fmt.Errorf("node %s before the kill: %w", nd.label, err)
		}
		res.Nodes[j].TunnelsBefore, res.Nodes[j].SessionsBefore = countSessions(v.Sessions)
		res.Nodes[j].TunnelNames = slices.Sorted(maps.Keys(v.Sessions))
	}
	killed := nodes[res.Killed]
	survivors := slices.Delete(slices.Clone(nodes), res.Killed, res.Killed+1)
	progress(cfg.Config, "killing node %s (SIGKILL); loading %v more", killed.label, cfg.AfterKill)
	killAt := time.Now()
	fr.procs.stop(killed.c)
	watch := make(chan watchResult, 1)
	go func() {
		watch <- fr.watchForget(ctx, killAt, killed.id, survivors, nodes, tunnels)
	}()
	err = sleepCtx(ctx, time.Until(killAt.Add(cfg.AfterKill)))
	close(stop)
	wg.Wait()
	loadEnd := time.Now()
	if err != nil {
		return nil, err
	}
	wr := <-watch
	if wr.err != nil {
		return nil, wr.err
	}
	res.MembersForgot, res.RoutesForgot, res.RoutesComplete = wr.members, wr.routes, wr.complete
	res.WatchReads, res.WatchFailed, res.WatchCut = wr.reads, wr.failed, wr.cut
	res.WatchSlowest, res.WatchError = wr.slowest, wr.firstError
	for j, nd := range nodes {
		if j == res.Killed {
			continue
		}
		v, err := fr.view(ctx, nd, "")
		if err != nil {
			return nil, fmt.Errorf("node %s at the end: %w", nd.label, err)
		}
		res.Nodes[j].TunnelsAfter, res.Nodes[j].SessionsAfter = countSessions(v.Sessions)
	}
	res.BeforeElapsed, res.AfterElapsed = killAt.Sub(loadStart), loadEnd.Sub(killAt)
	res.tally(outcomes, killAt)
	return res, nil
}

// tally sorts the outcomes.
func (res *LossResult) tally(outcomes [][]lossOutcome, killAt time.Time) {
	res.FirstFailure, res.LastFailure = -1, -1
	var latencies []time.Duration
	for _, w := range outcomes {
		for i := range w {
			o := &w[i]
			nd := &res.Nodes[o.node]
			if o.end.Before(killAt) {
				if o.failed() {
					nd.FailedBefore++
					res.FailedBefore++
				} else {
					nd.OKBefore++
				}
				continue
			}
			nd.SentAfter++
			if o.failed() {
				nd.FailedAfter++
			} else {
				nd.OKAfter++
			}
			switch {
			case o.node == res.Killed && o.start.Before(killAt):
				res.KilledInFlight.add(o)
			case o.node == res.Killed:
				res.KilledAfter.add(o)
			default:
				res.Survivors.add(o)
				latencies = append(latencies, o.end.Sub(o.start))
				if took := o.end.Sub(o.start); took > time.Second {
					res.Slow++
					res.SlowOnes = append(res.SlowOnes, SlowRequest{
						Node: nd.Label, Tunnel: o.tunnel, Sent: o.start.Sub(killAt), Took: took, Status: o.code,
					})
				}
				if o.failed() {
					at := o.end.Sub(killAt)
					if res.FirstFailure < 0 || at < res.FirstFailure {
						res.FirstFailure = at
					}
					res.LastFailure = max(res.LastFailure, at)
				}
			}
		}
	}
	res.P50 = percentile(latencies, 0.5)
	res.P99 = percentile(latencies, 0.99)
	if len(latencies) > 0 {
		res.Max = slices.Max(latencies)
	}
	slices.SortFunc(res.SlowOnes, func(a, b SlowRequest) int { return cmp.Compare(b.Took, a.Took) })
	res.SlowOnes = res.SlowOnes[:min(len(res.SlowOnes), maxSlowOnes)]
}

// Problems are what the loss phase must not show: failures before the
// kill, an answer from the killed node after it, a request that hung, a
// failure at a survivor that is not an explicit error, a view that never
// forgot the killed node.
func (res *LossResult) Problems() []string {
	var p []string
	if res.FailedBefore > 0 {
		p = append(p, fmt.Sprintf("%d requests failed before the kill", res.FailedBefore))
	}
	if n := res.KilledAfter.Answered(); n > 0 {
		p = append(p, fmt.Sprintf("%d requests sent to the killed node after the kill were answered", n))
	}
	for _, c := range []struct {
		what string
		n    int64
	}{
		{"requests in flight at the killed node hung", res.KilledInFlight.Hung()},
		{"requests sent to the killed node hung", res.KilledAfter.Hung()},
		{"requests at the surviving nodes hung", res.Survivors.Hung()},
	} {
		if c.n > 0 {
			p = append(p, fmt.Sprintf("%d %s (no answer within %v)", c.n, c.what, lossRequestTimeout))
		}
	}
	s := res.Survivors
	var transport int64
	for kind, k := range s.Errors {
		if kind != errTimeout {
			transport += k
		}
	}
	if transport > 0 {
		p = append(p, fmt.Sprintf("%d requests at the surviving nodes got no answer (a transport error)", transport))
	}
	var statuses int64
	for _, k := range s.Status {
		statuses += k
	}
	if other := statuses - s.Explicit; other > 0 {
		p = append(p, fmt.Sprintf("%d requests at the surviving nodes got an error other than a JSON 502/503/504", other))
	}
	if s.BadBody > 0 {
		p = append(p, fmt.Sprintf("%d requests at the surviving nodes got 200 with a wrong body", s.BadBody))
	}
	for _, c := range []struct {
		what string
		d    time.Duration
	}{
		{"member lists", res.MembersForgot}, {"routes", res.RoutesForgot}, {"routes (complete)", res.RoutesComplete},
	} {
		if c.d < 0 {
			p = append(p, fmt.Sprintf("the surviving nodes' %s did not settle within the watch", c.what))
		}
	}
	return p
}

// lossWorker sends GET /t/TUNNEL/small to base over one keep-alive
// connection, the tunnels in turn from offset, until stop is closed, and
// returns what each request got.
func lossWorker(ctx context.Context, node int, base string, tunnels []string, offset int, stop <-chan struct{}) []lossOutcome {
	client := &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			DisableCompression:  true,
		},
		Timeout: lossRequestTimeout,
	}
	defer client.CloseIdleConnections()
	var out []lossOutcome
	buf := make([]byte, 4<<10)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return out
		default:
		}
		tunnel := tunnels[(offset+i)%len(tunnels)]
		o := lossOutcome{node: node, tunnel: tunnel, start: time.Now()}
		err := func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/t/"+tunnel+"/small", nil)
			if err != nil {
				return err
			}
			res, err := client.Do(req)
			if err != nil {
				return err
			}
			defer res.Body.Close()
			n, err := io.ReadFull(res.Body, buf)
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return err
			}
			// Drain the rest, so that the connection is kept.
			if _, err := io.Copy(io.Discard, res.Body); err != nil {
				return err
			}
			o.code = res.StatusCode
			body := buf[:n]
			switch res.StatusCode {
			case http.StatusOK:
				o.badBody = string(body) != smallBody
			case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				var e struct {
					Error *string `json:"error"`
				}
				o.explicit = json.Unmarshal(body, &e) == nil && e.Error != nil && *e.Error != ""
			}
			return nil
		}()
		o.end = time.Now()
		if ctx.Err() != nil {
			return out
		}
		if err != nil {
			o.errKind, o.errText = errKind(err), err.Error()
		}
		out = append(out, o)
		if err != nil {
			select {
			case <-stop:
			case <-time.After(lossBackoff):
			}
		}
	}
}

// watchResult is what watchForget saw: each condition's time from the
// kill, -1 for not within the watch, and the reads it made.
type watchResult struct {
	members, routes, complete time.Duration
	reads, failed, cut        int
	slowest                   time.Duration
	firstError                string
	err                       error
}

// The conditions watchForget looks for.
const (
	condMembers  = iota // the killed node out of a survivor's members
	condRoutes          // out of a tunnel's routes at a survivor
	condComplete        // a tunnel's routes at a survivor are its surviving sessions
	conds
)

// settledReads is how many reads in a row must show a pair's conditions
// before its polling stops.
const settledReads = 3

// watchRead is one read of a view, its times from the kill.
type watchRead struct {
	start, end time.Duration
	ok         [conds]bool
	err        error
	cut        bool // still unanswered when the watch ended: nothing seen
}

// watchPair is a view polled: a survivor's /fleet, or a tunnel's routes
// there.
type watchPair struct {
	kinds   []int
	observe func(context.Context) ([conds]bool, error)
	mu      sync.Mutex
	reads   []watchRead // in the order they ended
}

// settled says whether the last settledReads reads answered, by the time
// they were sent, showed every condition of the pair.
func (p *watchPair) settled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	var reads []watchRead
	for _, r := range p.reads {
		if !r.cut {
			reads = append(reads, r)
		}
	}
	slices.SortFunc(reads, func(a, b watchRead) int { return cmp.Compare(a.start, b.start) })
	if len(reads) < settledReads {
		return false
	}
	for _, r := range reads[len(reads)-settledReads:] {
		for _, k := range p.kinds {
			if r.err != nil || !r.ok[k] {
				return false
			}
		}
	}
	return true
}

// since is when condition k began to hold at the pair: the end of the
// first read showing it among those sent after the last read that did
// not; -1 if the last read sent did not.
func (p *watchPair) since(k int) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	last := time.Duration(-1) // the start of the last read not showing k
	for _, r := range p.reads {
		if !r.cut && (r.err != nil || !r.ok[k]) && r.start > last {
			last = r.start
		}
	}
	first := time.Duration(-1)
	for _, r := range p.reads {
		if !r.cut && r.err == nil && r.ok[k] && r.start > last && (first < 0 || r.end < first) {
			first = r.end
		}
	}
	return first
}

// watchForget reads, from the kill, every survivor's /fleet and every
// tunnel's routes there: a read of each every watchPoll, sent whether or
// not the one before has answered (a read can wait seconds for a
// directory grain that was on the killed node), until each has shown the
// killed node forgotten (and the routes complete) settledReads times in a
// row and the load is over, or until SettleTimeout from the kill. Each
// condition's time is the latest over the views of when it began to hold
// there (watchPair.since).
func (fr *fleetRig) watchForget(ctx context.Context, killAt time.Time, killedID string, survivors, nodes []*benchNode, tunnels []string) watchResult {
	var pairs []*watchPair
	for _, nd := range survivors {
		pairs = append(pairs, &watchPair{kinds: []int{condMembers}, observe: func(ctx context.Context) ([conds]bool, error) {
			v, err := fr.view(ctx, nd, "")
			return [conds]bool{condMembers: !slices.Contains(v.Members, killedID)}, err
		}})
		for i, tunnel := range tunnels {
			var wantIDs []string
			for _, j := range lossHomes(i, len(nodes)) {
				if nodes[j].id != killedID {
					wantIDs = append(wantIDs, nodes[j].id)
				}
			}
			pairs = append(pairs, &watchPair{kinds: []int{condRoutes, condComplete}, observe: func(ctx context.Context) ([conds]bool, error) {
				v, err := fr.view(ctx, nd, tunnel)
				got := routeIDs(v)
				return [conds]bool{condRoutes: !slices.Contains(got, killedID), condComplete: sameSet(got, wantIDs)}, err
			}})
		}
	}
	// Reads still out when the watch ends are cancelled: counted, but
	// nothing was seen.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	tick := time.NewTicker(watchPoll)
	defer tick.Stop()
	for {
		at := time.Since(killAt)
		settled := true
		for _, p := range pairs {
			if p.settled() {
				continue
			}
			settled = false
			wg.Go(func() {
				ok, err := p.observe(rctx)
				end := time.Since(killAt)
				p.mu.Lock()
				p.reads = append(p.reads, watchRead{start: at, end: end, ok: ok, err: err, cut: rctx.Err() != nil})
				p.mu.Unlock()
			})
		}
		if settled && at >= fr.cfg.AfterKill || at >= fr.cfg.SettleTimeout {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	cancel()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return watchResult{err: err}
	}
	var r watchResult
	var times [conds]time.Duration
	for _, p := range pairs {
		for _, k := range p.kinds {
			if t := p.since(k); t < 0 || times[k] < 0 {
				times[k] = -1
			} else {
				times[k] = max(times[k], t)
			}
		}
		for _, rd := range p.reads {
			r.reads++
			r.slowest = max(r.slowest, rd.end-rd.start)
			switch {
			case rd.cut:
				r.cut++
			case rd.err != nil:
				r.failed++
				if r.firstError == "" {
					r.firstError = rd.err.Error()
				}
			}
		}
	}
	r.members, r.routes, r.complete = times[condMembers], times[condRoutes], times[condComplete]
	return r
}

// routeIDs are the nodes of a view's routes with a session.
func routeIDs(v fleetView) []string {
	var ids []string
	for _, r := range v.Routes {
		if r.Sessions > 0 {
			ids = append(ids, r.Node)
		}
	}
	return ids
}

// sameSet says whether a and b hold the same ids, as many times each.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// countSessions returns the tunnels with a session and the sessions.
func countSessions(m map[string]int) (tunnels, sessions int) {
	for _, k := range m {
		if k > 0 {
			tunnels++
			sessions += k
		}
	}
	return tunnels, sessions
}

// sleepCtx waits d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
