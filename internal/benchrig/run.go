package benchrig

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The targets of every workload.
const (
	targetDirect = "direct" // the upstream itself
	targetTunnel = "tunnel" // the relay's public URL, through the supervisor
	targetRaw    = "raw"    // the bare WebSocket echo server
)

var targets = []string{targetDirect, targetTunnel, targetRaw}

// The processes whose usage is read, by role.
const (
	roleUpstream   = "upstream"
	roleRelay      = "relay"
	roleSupervisor = "supervisor"
	roleEcho       = "wsecho"
)

// The workloads.
const (
	wlSmall1    = "small@1"
	wlSmall32   = "small@32"
	wlBytes4    = "1MiB@4"
	wlProgress1 = "ttfb@1"
)

// workload is a path requested over conns connections.
type workload struct {
	name  string
	path  string
	conns int
	// rawMsg is the message the raw target gets instead, answered with
	// rawWant bytes; empty for no raw run.
	rawMsg  string
	rawWant int64
}

var workloads = []workload{
	{name: wlSmall1, path: "/small", conns: 1, rawMsg: smallBody, rawWant: int64(len(smallBody))},
	{name: wlSmall32, path: "/small", conns: 32, rawMsg: smallBody, rawWant: int64(len(smallBody))},
	{name: wlBytes4, path: "/bytes?n=1048576", conns: 4, rawMsg: "n=1048576", rawWant: 1 << 20},
	// The raw target's first answer byte is measured by small@1 already:
	// a small answer comes in one piece.
	{name: wlProgress1, path: "/progressive", conns: 1},
}

// benchTunnel is the tunnel of the rounds.
const benchTunnel = "bench"

// RunResult is one run: a workload against a target in a round.
type RunResult struct {
	Round    int // from 0
	Workload string
	Target   string
	Conns    int
	Elapsed  time.Duration
	// Requests answered whole and right, Errors (a transport error, a
	// status other than 200, a short answer) and the body bytes read.
	Requests, Errors, Bytes int64
	FirstError              string
	// P50 is the median latency, TTFBP50 the median time to the first
	// byte of the body.
	P50, TTFBP50 time.Duration
	// CPU and write system calls of each process involved, by role
	// ("upstream", "relay", "supervisor", "wsecho"), over the timed run.
	CPU    map[string]time.Duration
	Writes map[string]int64
}

// Machine says where the run was made.
type Machine struct {
	CPUs      int
	GoVersion string
	Commit    string // "" outside a git work tree
	Date      time.Time
	// OpenFiles is the soft RLIMIT_NOFILE the processes ran with.
	OpenFiles uint64
	// LoadStart and LoadEnd are the 1-minute load averages before and
	// after the run: well above the rig's own few processes, other work
	// shared the machine.
	LoadStart, LoadEnd float64
}

// rig holds the processes of the rounds.
type rig struct {
	cfg          Config
	procs        *procs
	bin          string // the directory of the binaries
	openFiles    uint64 // the soft RLIMIT_NOFILE, raised
	byRole       map[string]*child
	upstreamAddr string
	echoAddr     string
	relayAddr    string
}

// Run builds the binaries unless cfg.BinDir has them, runs the rounds and
// the idle phase, writes the table to out and returns the report. Every
// process it started is gone when it returns; on an error the logs are
// kept and their directory named in the error.
func Run(ctx context.Context, cfg Config, out io.Writer) (rep *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, bin, openFiles, err := workspace(ctx, cfg, "tunnel-bench-")
	if p != nil {
		defer p.finish(&err)
	}
	if err != nil {
		return nil, err
	}
	rep = &Report{Config: cfg, Machine: machine(ctx)}
	rep.Machine.OpenFiles = openFiles
	r := &rig{cfg: cfg, procs: p, bin: bin, openFiles: rep.Machine.OpenFiles, byRole: map[string]*child{}}
	if err := r.startRounds(ctx); err != nil {
		return nil, err
	}
	for round := range cfg.Rounds {
		// Rotating the order spreads drift over every target alike.
		k := round % len(targets)
		order := slices.Concat(targets[k:], targets[:k])
		for _, w := range workloads {
			for _, t := range order {
				if t == targetRaw && w.rawMsg == "" {
					continue
				}
				res, err := r.run(ctx, round, w, t)
				if err != nil {
					return nil, fmt.Errorf("round %d, %s %s: %w", round+1, w.name, t, err)
				}
				progress(cfg, "round %d/%d %-8s %-6s %7d requests %4d errors  p50 %v", round+1, cfg.Rounds, w.name, t, res.Requests, res.Errors, res.P50)
				rep.Runs = append(rep.Runs, *res)
			}
		}
	}
	// The idle phase wants a relay of its own: the rounds' relay has
	// grown with their load.
	p.stop(r.byRole[roleRelay])
	p.stop(r.byRole[roleSupervisor])
	if rep.Idle, err = r.idle(ctx); err != nil {
		return nil, fmt.Errorf("idle tunnels: %w", err)
	}
	rep.Machine.LoadEnd = loadAverage()
	rep.build()
	return rep, rep.Write(out)
}

// Build compiles tunnel-relay, tunnel-supervisor and tunnel-bench into dir
// with the go command; it must run inside this module.
func Build(ctx context.Context, dir string) error {
	const module = "github.com/enhanced-tunnel/tunnel/cmd/"
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		module+"tunnel-relay", module+"tunnel-supervisor", module+"tunnel-bench")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// startRounds starts the upstream, the echo server, a relay and a
// supervisor, and waits until a request goes through the tunnel.
func (r *rig) startRounds(ctx context.Context) error {
	var err error
	self := filepath.Join(r.bin, "tunnel-bench")
	r.byRole[roleUpstream], r.upstreamAddr, err = r.procs.start(roleUpstream, self,
		[]string{"upstream", "-listen", "127.0.0.1:0"}, childEnv(), true, r.cfg.ReadyTimeout)
	if err != nil {
		return err
	}
	r.byRole[roleEcho], r.echoAddr, err = r.procs.start(roleEcho, self,
		[]string{"wsecho", "-listen", "127.0.0.1:0"}, childEnv(), true, r.cfg.ReadyTimeout)
	if err != nil {
		return err
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	keysFile := filepath.Join(r.procs.dir, "keys")
	if err := os.WriteFile(keysFile, []byte(benchTunnel+" "+key+"\n"), 0o600); err != nil {
		return err
	}
	relay, addr, err := r.startRelay(ctx, roleRelay, keysFile)
	if err != nil {
		return err
	}
	r.byRole[roleRelay], r.relayAddr = relay, addr
	sup, err := r.startSupervisor(ctx, roleSupervisor, "ws://"+addr+"/tunnel", benchTunnel, key, addr)
	if err != nil {
		return err
	}
	r.byRole[roleSupervisor] = sup
	progress(r.cfg, "upstream %s, wsecho %s, relay %s: tunnel %q up", r.upstreamAddr, r.echoAddr, r.relayAddr, benchTunnel)
	return nil
}

// startRelay starts a relay on a port of its own with the keys in
// keysFile, and returns it with its public address once it listens.
func (r *rig) startRelay(ctx context.Context, name, keysFile string, extra ...string) (*child, string, error) {
	args := append([]string{
		"-listen", "127.0.0.1:0", "-admin-listen=", "-keys-file", keysFile,
		// Info, for the "Relay listening" line that gives the port; the
		// relay logs nothing per request at info.
		"-log-format", "json", "-log-level", "info",
	}, extra...)
	c, _, err := r.procs.start(name, filepath.Join(r.bin, "tunnel-relay"), args, childEnv(), false, r.cfg.ReadyTimeout)
	if err != nil {
		return nil, "", err
	}
	addr, err := waitRelayAddr(ctx, c, r.cfg.ReadyTimeout)
	return c, addr, err
}

// startSupervisor starts a supervisor of tunnel on relayURL forwarding to
// the upstream, and waits until a request to the relay at relayAddr gets
// through it.
func (r *rig) startSupervisor(ctx context.Context, name, relayURL, tunnel, key, relayAddr string) (*child, error) {
	args := []string{
		"-relay-url", relayURL, "-tunnel", tunnel, "-forward", "http://" + r.upstreamAddr,
		"-connections", "1", "-listen", "127.0.0.1:0", "-log-level", "warn",
	}
	c, _, err := r.procs.start(name, filepath.Join(r.bin, "tunnel-supervisor"), args,
		childEnv("TUNNEL_API_KEY="+key), false, r.cfg.ReadyTimeout)
	if err != nil {
		return nil, err
	}
	url := "http://" + relayAddr + "/t/" + tunnel + "/small"
	client := newHTTPClient(1)
	defer client.CloseIdleConnections()
	err = waitUntil(ctx, c, r.cfg.ReadyTimeout, "GET "+url, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return c, err
}

// run runs workload w against target t.
func (r *rig) run(ctx context.Context, round int, w workload, t string) (*RunResult, error) {
	var roles []string
	var dial dialer
	switch t {
	case targetDirect:
		roles = []string{roleUpstream}
		client := newHTTPClient(w.conns)
		defer client.CloseIdleConnections()
		dial = httpDialer(client, "http://"+r.upstreamAddr+w.path)
	case targetTunnel:
		roles = []string{roleUpstream, roleRelay, roleSupervisor}
		client := newHTTPClient(w.conns)
		defer client.CloseIdleConnections()
		dial = httpDialer(client, "http://"+r.relayAddr+"/t/"+benchTunnel+w.path)
	case targetRaw:
		roles = []string{roleEcho}
		dial = wsDialer("ws://"+r.echoAddr+"/", []byte(w.rawMsg), w.rawWant)
	}
	// The first mark reads before, the second one used.
	before, used := map[string]usage{}, map[string]usage{}
	marks := 0
	mark := func() error {
		marks++
		for _, role := range roles {
			u, err := readUsage(r.byRole[role].pid())
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
	lr, err := closedLoop(ctx, w.conns, r.cfg.Duration, dial, t == targetRaw, mark)
	if err != nil {
		return nil, err
	}
	return newRunResult(round, w, t, lr, used), nil
}

// newRunResult is the result of one run: its load's figures and what each
// process used meanwhile.
func newRunResult(round int, w workload, t string, lr *loopResult, used map[string]usage) *RunResult {
	res := &RunResult{
		Round: round, Workload: w.name, Target: t, Conns: w.conns, Elapsed: lr.elapsed,
		Requests: lr.requests, Errors: lr.errors, Bytes: lr.bytes,
		P50: median(lr.latencies), TTFBP50: median(lr.ttfbs),
		CPU: map[string]time.Duration{}, Writes: map[string]int64{},
	}
	if lr.firstErr != nil {
		res.FirstError = lr.firstErr.Error()
	}
	for role, u := range used {
		res.CPU[role], res.Writes[role] = u.cpu, u.writes
	}
	return res
}

// newKey returns a random API key of 192 bits, which the relay's entropy
// check takes whatever characters it happens to hold.
func newKey() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// raiseFileLimit raises the soft limit of open files to the hard one and
// returns it.
// workspace makes a run's directory (prefix names it), raises the limit of
// open files (ten thousand idle tunnels need as many descriptors, in the
// relay and here; the children inherit it) and finds the binaries in
// cfg.BinDir or builds them. p is not nil once the directory exists: its
// finish ends the run.
func workspace(ctx context.Context, cfg Config, prefix string) (p *procs, bin string, openFiles uint64, err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, "", 0, err
	}
	p = &procs{dir: dir}
	if openFiles, err = raiseFileLimit(); err != nil {
		return p, "", 0, err
	}
	if bin = cfg.BinDir; bin != "" {
		for _, name := range []string{"tunnel-relay", "tunnel-supervisor", "tunnel-bench"} {
			if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
				return p, "", 0, fmt.Errorf("the binaries directory lacks %s: %w", name, err)
			}
		}
		return p, bin, openFiles, nil
	}
	bin = filepath.Join(dir, "bin")
	progress(cfg, "building the binaries into %s", bin)
	return p, bin, openFiles, Build(ctx, bin)
}

// finish stops every process of the run and removes its directory, or,
// when *err says the run failed, keeps the logs and names them in *err.
func (p *procs) finish(err *error) {
	p.stopAll()
	if *err != nil {
		*err = fmt.Errorf("%w (logs kept in %s)", *err, p.dir)
		return
	}
	os.RemoveAll(p.dir)
}

func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// machine describes this machine; what cannot be learnt stays empty.
func machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Date: time.Now(), LoadStart: loadAverage()}
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.GoVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m
}

// loadAverage is the 1-minute load average of /proc/loadavg; 0 if unknown.
func loadAverage() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	var load float64
	_, _ = fmt.Sscan(string(b), &load)
	return load
}

// progress writes a line to cfg.Progress, if set.
func progress(cfg Config, format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, format+"\n", args...)
	}
}
