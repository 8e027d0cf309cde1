package benchrig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The fleet mode (tunnel-bench -fleet N, `make bench-fleet`) runs N
// tunnel-relay processes as one fleet with the automanaged provider (no
// etcd), on 127.0.0.1, and measures two things:
//
//  1. the hop cost: one supervisor connected to node A only; the
//     workloads small@1, small@32, 1MiB@4 and ttfb@1 of the main bench against the
//     direct upstream, the tunnel via A (its local session) and the tunnel
//     via B (one hop: B -> A over the internal listener -> supervisor), in
//     Config.Rounds rounds of Config.Duration runs, the target order
//     rotated per round as the main bench does;
//  2. the loss of a node: FleetConfig.Tunnels tunnels, each with its own
//     key and its own supervisor connected to two nodes (its home node
//     i%N and the next one), a steady closed-loop load over every tunnel
//     at every node, then node A killed with SIGKILL and the load kept on
//     for FleetConfig.AfterKill: who failed how, and how long the fleet
//     took to stop failing and to forget the node.

// Defaults of FleetConfig.
const (
	DefaultFleetNodes   = 3
	DefaultFleetTunnels = 12
	// DefaultLossConns is the loss phase's load connections per node.
	DefaultLossConns = 2
	// DefaultBeforeKill is the steady load before the kill.
	DefaultBeforeKill = 5 * time.Second
	// DefaultAfterKill is the load kept on after the kill.
	DefaultAfterKill = 10 * time.Second
	// DefaultSettleTimeout bounds, from the kill, the watch of the
	// survivors' /fleet views for the killed node to be forgotten: twice
	// the directory entries' 30 s lifetime, so only a fleet that never
	// forgets reaches it.
	DefaultSettleTimeout = 60 * time.Second
)

// The smoke run of the fleet mode (-fleet with -smoke, and the test).
const (
	SmokeBeforeKill = time.Second
	SmokeAfterKill  = 3 * time.Second
)

const (
	// fleetCluster is the -cluster name of the rig's fleets.
	fleetCluster = "bench"
	// lossRequestTimeout bounds one request of the loss phase: beyond the
	// relay's 15 s hold of a request for a tunnel connected nowhere, so
	// that a request running into it is an answer (503), not a hang.
	lossRequestTimeout = 20 * time.Second
	// lossBackoff is a load connection's pause after a transport error, as
	// a client backs off, so that the killed node's connection-refused
	// answers do not spin the loop.
	lossBackoff = 100 * time.Millisecond
	// watchPoll is how often the survivors' /fleet views are read after
	// the kill, and the setup's states looked for.
	watchPoll = 100 * time.Millisecond
	// adminTimeout bounds a /fleet request: beyond the relay's 5 s
	// directory lookup.
	adminTimeout = 8 * time.Second
)

// The hop-cost targets.
const (
	targetLocal = "local" // the tunnel via A, which holds the session
	targetHop   = "hop"   // the tunnel via B, one hop to A
)

var fleetTargets = []string{targetDirect, targetLocal, targetHop}

// The hop-cost processes whose usage is read, by role; roleUpstream and
// roleSupervisor as in the main bench.
const (
	roleRelayA = "relay A"
	roleRelayB = "relay B"
)

var fleetRoles = []string{roleUpstream, roleRelayA, roleRelayB, roleSupervisor}

// fleetWorkloads are the main bench's workloads the hop cost runs.
var fleetWorkloads = func() []workload {
	var ws []workload
	for _, w := range workloads {
		if slices.Contains([]string{wlSmall1, wlSmall32, wlBytes4, wlProgress1}, w.name) {
			ws = append(ws, w)
		}
	}
	return ws
}()

// FleetConfig configures a fleet run (RunFleet). Start with
// DefaultFleetConfig or SmokeFleetConfig.
type FleetConfig struct {
	// Config gives BinDir, Rounds and Duration (of the hop-cost runs),
	// ReadyTimeout and Progress; its idle settings are not used.
	Config
	// Nodes of the fleet, at least 2: DefaultFleetNodes.
	Nodes int
	// Tunnels of the loss phase, each with a key and a supervisor of its
	// own: DefaultFleetTunnels.
	Tunnels int
	// LossConns are the loss phase's load connections per node:
	// DefaultLossConns.
	LossConns int
	// BeforeKill and AfterKill are the loss phase's load before and after
	// node A is killed: DefaultBeforeKill, DefaultAfterKill.
	BeforeKill, AfterKill time.Duration
	// SettleTimeout bounds, from the kill, the wait for every survivor's
	// view to forget the killed node: DefaultSettleTimeout.
	SettleTimeout time.Duration
}

// DefaultFleetConfig returns the full run of `make bench-fleet`.
func DefaultFleetConfig() FleetConfig {
	return FleetConfig{
		Config:        DefaultConfig(),
		Nodes:         DefaultFleetNodes,
		Tunnels:       DefaultFleetTunnels,
		LossConns:     DefaultLossConns,
		BeforeKill:    DefaultBeforeKill,
		AfterKill:     DefaultAfterKill,
		SettleTimeout: DefaultSettleTimeout,
	}
}

// SmokeFleetConfig returns a run of seconds that fills every figure.
func SmokeFleetConfig() FleetConfig {
	c := DefaultFleetConfig()
	c.Config = SmokeConfig()
	c.BeforeKill, c.AfterKill = SmokeBeforeKill, SmokeAfterKill
	return c
}

// Validate reports the first setting that cannot work.
func (c FleetConfig) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	switch {
	case c.Nodes < 2:
		return fmt.Errorf("benchrig: a fleet needs at least 2 nodes, got %d", c.Nodes)
	case c.Nodes > 26:
		return fmt.Errorf("benchrig: at most 26 nodes (A to Z), got %d", c.Nodes)
	case c.Tunnels < 1:
		return fmt.Errorf("benchrig: Tunnels must be at least 1, got %d", c.Tunnels)
	case c.Tunnels > 100:
		return fmt.Errorf("benchrig: at most 100 tunnels (a supervisor process each), got %d", c.Tunnels)
	case c.LossConns < 1:
		return fmt.Errorf("benchrig: LossConns must be at least 1, got %d", c.LossConns)
	case c.BeforeKill <= 0 || c.AfterKill <= 0:
		return errors.New("benchrig: BeforeKill and AfterKill must be positive")
	case c.SettleTimeout < c.AfterKill:
		return fmt.Errorf("benchrig: SettleTimeout (%v) must be at least AfterKill (%v)", c.SettleTimeout, c.AfterKill)
	}
	return nil
}

// FleetReport is what a fleet run measured.
type FleetReport struct {
	Config  FleetConfig
	Machine Machine
	// Runs are the hop-cost runs, Target "direct", "local" (via A) or
	// "hop" (via B); CPU by role: "upstream", "relay A", "relay B",
	// "supervisor", read in every run.
	Runs []RunResult
	// P99 of each run, in the order of Runs.
	P99 []time.Duration
	// Rows of the hop-cost table.
	Rows []FleetRow
	// Loss is the loss phase.
	Loss *LossResult
}

// RunFleet builds the binaries unless cfg.BinDir has them, runs the hop
// cost and the loss of a node, writes the report to out and returns it.
// Every process it started is gone when it returns; on an error the logs
// are kept and their directory named in the error.
func RunFleet(ctx context.Context, cfg FleetConfig, out io.Writer) (rep *FleetReport, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, bin, openFiles, err := workspace(ctx, cfg.Config, "tunnel-bench-fleet-")
	if p != nil {
		defer p.finish(&err)
	}
	if err != nil {
		return nil, err
	}
	rep = &FleetReport{Config: cfg, Machine: machine(ctx)}
	rep.Machine.OpenFiles = openFiles
	fr := &fleetRig{cfg: cfg, procs: p, bin: bin, admin: &http.Client{
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
		Timeout:   adminTimeout,
	}}
	defer fr.admin.CloseIdleConnections()
	fr.upstream, fr.upstreamAddr, err = p.start(roleUpstream, filepath.Join(bin, "tunnel-bench"),
		[]string{"upstream", "-listen", "127.0.0.1:0"}, childEnv(), true, cfg.ReadyTimeout)
	if err != nil {
		return nil, err
	}
	if err := fr.hopCost(ctx, rep); err != nil {
		return nil, fmt.Errorf("hop cost: %w", err)
	}
	if rep.Loss, err = fr.loss(ctx); err != nil {
		return nil, fmt.Errorf("losing a node: %w", err)
	}
	rep.Machine.LoadEnd = loadAverage()
	rep.build()
	return rep, rep.Write(out)
}

// fleetRig runs the fleets of a fleet run.
type fleetRig struct {
	cfg          FleetConfig
	procs        *procs
	bin          string
	admin        *http.Client // for the nodes' admin /fleet
	upstream     *child
	upstreamAddr string
}

// benchNode is one tunnel-relay process of a fleet.
type benchNode struct {
	label string // A, B, C...
	c     *child
	// addr is the public address; admin, internal and cluster the
	// others; id the member id.
	addr, admin, internal, cluster, id string
}

// fleetView is a node's GET /fleet.
type fleetView struct {
	Node     string         `json:"node"`
	Joined   bool           `json:"joined"`
	Members  []string       `json:"members"`
	Sessions map[string]int `json:"sessions"`
	Routes   []struct {
		Node     string `json:"node"`
		Internal string `json:"internal"`
		Sessions int    `json:"sessions"`
	} `json:"routes"`
}

// view reads n's GET /fleet, with tunnel's routes unless tunnel is "".
func (fr *fleetRig) view(ctx context.Context, n *benchNode, tunnel string) (fleetView, error) {
	var v fleetView
	u := "http://" + n.admin + "/fleet"
	if tunnel != "" {
		u += "?tunnel=" + url.QueryEscape(tunnel)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return v, err
	}
	res, err := fr.admin.Do(req)
	if err != nil {
		return v, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return v, err
	}
	if res.StatusCode != http.StatusOK {
		return v, fmt.Errorf("node %s /fleet: %d %s", n.label, res.StatusCode, strings.TrimSpace(string(body)))
	}
	return v, json.Unmarshal(body, &v)
}

// nodeLabel names node i: A, B, C...
func nodeLabel(i int) string { return string(rune('A' + i)) }

// freeAddrs returns n loopback addresses nobody listens on now, for the
// automanaged peers, which each node must be told up front.
func freeAddrs(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// startFleet starts n relays named prefix-A, prefix-B... as one fleet with
// the tunnels of keysFile, and waits until each is joined and sees all.
func (fr *fleetRig) startFleet(ctx context.Context, prefix string, n int, keysFile string) ([]*benchNode, error) {
	internals, err := freeAddrs(n)
	if err != nil {
		return nil, err
	}
	secret, err := newKey()
	if err != nil {
		return nil, err
	}
	nodes := make([]*benchNode, n)
	for i := range nodes {
		nd := &benchNode{label: nodeLabel(i)}
		args := []string{
			"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-keys-file", keysFile,
			// Info, for the "Relay listening" line; nothing is logged per
			// request at info.
			"-log-format", "json", "-log-level", "info",
			"-cluster", fleetCluster, "-cluster-provider", "automanaged",
			"-cluster-peers", strings.Join(internals, ","),
			"-cluster-listen", "127.0.0.1:0", "-internal-listen", internals[i],
		}
		nd.c, _, err = fr.procs.start(prefix+"-relay-"+nd.label, filepath.Join(fr.bin, "tunnel-relay"), args,
			childEnv("RELAY_CLUSTER_SECRET="+secret), false, fr.cfg.ReadyTimeout)
		if err != nil {
			return nil, err
		}
		nodes[i] = nd
	}
	for _, nd := range nodes {
		f, err := waitListening(ctx, nd.c, fr.cfg.ReadyTimeout)
		if err != nil {
			return nil, err
		}
		nd.addr, nd.admin, nd.internal, nd.cluster, nd.id = f.Addr, f.Admin, f.Internal, f.Cluster, f.Node
		if nd.addr == "" || nd.admin == "" || nd.id == "" {
			return nil, fmt.Errorf("%s logged \"Relay listening\" without addr, admin_addr or node; its log: %s", nd.c.name, nd.c.logPath)
		}
	}
	for _, nd := range nodes {
		err := fr.wait(ctx, nodeChildren(nodes), fr.cfg.ReadyTimeout, fmt.Sprintf("node %s to see %d members", nd.label, n),
			func(ctx context.Context) error {
				v, err := fr.view(ctx, nd, "")
				switch {
				case err != nil:
					return err
				case !v.Joined || len(v.Members) != n:
					return fmt.Errorf("joined %v, members %v", v.Joined, v.Members)
				}
				return nil
			})
		if err != nil {
			return nil, err
		}
	}
	return nodes, nil
}

func nodeChildren(nodes []*benchNode) []*child {
	var cs []*child
	for _, n := range nodes {
		cs = append(cs, n.c)
	}
	return cs
}

// listening is the relay's "Relay listening" log line.
type listening struct {
	Msg      string `json:"msg"`
	Addr     string `json:"addr"`
	Admin    string `json:"admin_addr"`
	Internal string `json:"internal_addr"`
	Cluster  string `json:"cluster_addr"`
	Node     string `json:"node"`
}

// waitListening reads the "Relay listening" line of c's JSON log.
func waitListening(ctx context.Context, c *child, timeout time.Duration) (listening, error) {
	var found listening
	err := waitUntil(ctx, c, timeout, `the log line "Relay listening"`, func(context.Context) error {
		b, err := os.ReadFile(c.logPath)
		if err != nil {
			return err
		}
		for line := range strings.Lines(string(b)) {
			var l listening
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "Relay listening" && l.Addr != "" {
				found = l
				return nil
			}
		}
		return errors.New("not logged yet")
	})
	return found, err
}

// wait calls check every watchPoll until it returns nil, and fails past
// timeout, when ctx ends or when one of watched exits.
func (fr *fleetRig) wait(ctx context.Context, watched []*child, timeout time.Duration, what string, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		attemptCtx, cancel := context.WithDeadline(ctx, deadline)
		err := check(attemptCtx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: not within %v: %v", what, timeout, err)
		}
		for _, c := range watched {
			select {
			case <-c.done:
				return fmt.Errorf("waiting for %s: %w", what, c.exitError())
			default:
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(watchPoll):
		}
	}
}

// getOK sends a GET to u and wants 200.
func getOK(ctx context.Context, client *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", u, res.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// hopCost runs the hop-cost rounds on a fleet of its own, which it stops
// at the end.
func (fr *fleetRig) hopCost(ctx context.Context, rep *FleetReport) error {
	cfg := fr.cfg
	key, err := newKey()
	if err != nil {
		return err
	}
	keysFile := filepath.Join(fr.procs.dir, "hop-keys")
	if err := os.WriteFile(keysFile, []byte(benchTunnel+" "+key+"\n"), 0o600); err != nil {
		return err
	}
	nodes, err := fr.startFleet(ctx, "hop", cfg.Nodes, keysFile)
	if err != nil {
		return err
	}
	a, b := nodes[0], nodes[1]
	// The main bench's supervisor, on A alone.
	r := &rig{cfg: cfg.Config, procs: fr.procs, bin: fr.bin, byRole: map[string]*child{}, upstreamAddr: fr.upstreamAddr}
	sup, err := r.startSupervisor(ctx, "hop-supervisor", "ws://"+a.addr+"/tunnel", benchTunnel, key, a.addr)
	if err != nil {
		return err
	}
	client := newHTTPClient(1)
	viaB := "http://" + b.addr + "/t/" + benchTunnel + "/small"
	err = fr.wait(ctx, append(nodeChildren(nodes), sup), cfg.ReadyTimeout, "a request via B", func(ctx context.Context) error {
		return getOK(ctx, client, viaB)
	})
	client.CloseIdleConnections()
	if err != nil {
		return err
	}
	progress(cfg.Config, "hop cost: %d nodes %v, upstream %s, supervisor at A %s: tunnel %q served via A and via B",
		cfg.Nodes, nodeAddrs(nodes), fr.upstreamAddr, a.addr, benchTunnel)
	pids := map[string]int{roleUpstream: fr.upstream.pid(), roleRelayA: a.c.pid(), roleRelayB: b.c.pid(), roleSupervisor: sup.pid()}
	urls := map[string]string{
		targetDirect: "http://" + fr.upstreamAddr,
		targetLocal:  "http://" + a.addr + "/t/" + benchTunnel,
		targetHop:    "http://" + b.addr + "/t/" + benchTunnel,
	}
	for round := range cfg.Rounds {
		k := round % len(fleetTargets)
		order := slices.Concat(fleetTargets[k:], fleetTargets[:k])
		for _, w := range fleetWorkloads {
			for _, t := range order {
				res, p99, err := fleetRun(ctx, cfg.Duration, round, w, t, urls[t]+w.path, pids)
				if err != nil {
					return fmt.Errorf("round %d, %s %s: %w", round+1, w.name, t, err)
				}
				progress(cfg.Config, "round %d/%d %-8s %-6s %7d requests %4d errors  p50 %v  p99 %v",
					round+1, cfg.Rounds, w.name, t, res.Requests, res.Errors, res.P50, p99)
				rep.Runs = append(rep.Runs, *res)
				rep.P99 = append(rep.P99, p99)
			}
		}
	}
	fr.procs.stop(sup)
	for _, n := range nodes {
		fr.procs.stop(n.c)
	}
	return nil
}

func nodeAddrs(nodes []*benchNode) []string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.label+"="+n.addr)
	}
	return s
}

// fleetRun runs workload w against target t at u, reading the usage of
// every process in pids, and returns the run and its p99 latency.
func fleetRun(ctx context.Context, d time.Duration, round int, w workload, t, u string, pids map[string]int) (*RunResult, time.Duration, error) {
	client := newHTTPClient(w.conns)
	defer client.CloseIdleConnections()
	before, used := map[string]usage{}, map[string]usage{}
	marks := 0
	mark := func() error {
		marks++
		for role, pid := range pids {
			u, err := readUsage(pid)
			if err != nil {
				return fmt.Errorf("%s: %w", role, err)
			}
			if marks == 1 {
				before[role] = u
			} else {
				used[role] = usage{cpu: u.cpu - before[role].cpu, writes: u.writes - before[role].writes}
			}
		}
		return nil
	}
	lr, err := closedLoop(ctx, w.conns, d, httpDialer(client, u), false, mark)
	if err != nil {
		return nil, 0, err
	}
	return newRunResult(round, w, t, lr, used), percentile(lr.latencies, 0.99), nil
}

// percentile returns the q-quantile of samples (which it sorts), by the
// nearest rank; 0 for none.
func percentile(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	i := int(math.Ceil(q*float64(len(samples)))) - 1
	return samples[min(max(i, 0), len(samples)-1)]
}
