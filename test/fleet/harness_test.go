package fleet_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// startTimeout bounds the start of a process and its readiness.
	startTimeout = 30 * time.Second
	// stopTimeout bounds a graceful stop.
	stopTimeout = 20 * time.Second
	// settleTimeout bounds how long a fleet may take to reach a state
	// after a fault: far beyond what it needs, so only a real failure
	// reaches it.
	settleTimeout = 60 * time.Second
	// poll is the period of the waits for a state.
	poll = 100 * time.Millisecond
)

// requireTools fails instead of skipping when a tool is missing (CI).
func requireTools() bool { return os.Getenv("TUNNEL_REQUIRE_TOOLS") != "" }

// secret is a random key of 192 bits.
func secret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// freeAddr is a loopback address nobody listens on now, for the processes
// that must be told their address up front (etcd, automanaged peers).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a child process whose log is kept in a file and scanned.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited

	mu    sync.Mutex
	lines []map[string]any // JSON log lines
}

func startProc(t testing.TB, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logFile.Write(append(line, '\n'))
			var fields map[string]any
			if json.Unmarshal(line, &fields) == nil {
				p.mu.Lock()
				p.lines = append(p.lines, fields)
				p.mu.Unlock()
			}
		}
	}()
	go func() {
		<-scanned
		_ = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("--- %s log (last 40 lines):\n%s", name, tail(string(b), 40))
			}
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// line waits for a JSON log line whose msg is msg.
func (p *proc) line(msg string) map[string]any {
	p.t.Helper()
	var found map[string]any
	waitFor(p.t, startTimeout, p.name+" to log "+msg, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.lines {
			if l["msg"] == msg {
				found = l
				return nil
			}
		}
		select {
		case <-p.done:
			return errStop{fmt.Errorf("%s exited", p.name)}
		default:
		}
		return errors.New("not yet")
	})
	return found
}

// logged counts the JSON log lines whose msg is msg.
func (p *proc) logged(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

// stop ends the process with SIGTERM, then SIGKILL past stopTimeout.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.t.Errorf("%s did not stop within %v; killing it", p.name, stopTimeout)
		p.kill()
	}
}

// kill ends the process with SIGKILL and waits for it.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatalf("signal %v to %s: %v", s, p.name, err)
	}
}

// errStop ends a waitFor early.
type errStop struct{ error }

// waitFor calls check every poll until it returns nil, and fails the test
// with the last error past timeout or on an errStop.
func waitFor(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		var stop errStop
		if errors.As(err, &stop) || time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		<-tick.C
	}
}

// etcd is a single-member etcd server on loopback.
type etcd struct {
	*proc
	endpoint string
}

func startEtcd(t testing.TB) *etcd {
	t.Helper()
	path, err := exec.LookPath("etcd")
	if err != nil {
		if requireTools() {
			t.Fatal("etcd is not installed (Debian package etcd-server), and TUNNEL_REQUIRE_TOOLS is set")
		}
		t.Skip("etcd is not installed (Debian package etcd-server); skipping the etcd-backed fleet test")
	}
	client, peer := freeAddr(t), freeAddr(t)
	p := startProc(t, "etcd", nil, path,
		"--name", "test", "--data-dir", filepath.Join(t.TempDir(), "etcd"),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "test=http://"+peer, "--logger", "zap", "--log-outputs", "stderr")
	e := &etcd{proc: p, endpoint: client}
	waitFor(t, startTimeout, "etcd to be healthy", func() error {
		select {
		case <-p.done:
			return errStop{errors.New("etcd exited")}
		default:
		}
		res, err := http.Get("http://" + client + "/health")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if !strings.Contains(string(body), `"true"`) {
			return fmt.Errorf("health: %s", body)
		}
		return nil
	})
	return e
}

// node is one tunnel-relay process of a fleet.
type node struct {
	*proc
	name                      string
	args                      []string
	env                       []string
	addr, admin, internal, id string
}

// fleetSpec is what the nodes of one fleet share.
type fleetSpec struct {
	provider string
	etcd     *etcd
	key      string // the tunnel "default"'s key
	secret   string
	// internals are the automanaged nodes' internal addresses, chosen up
	// front since each node lists them all.
	internals []string
}

func newFleet(t testing.TB, provider string, size int) *fleetSpec {
	t.Helper()
	f := &fleetSpec{provider: provider, key: secret(t), secret: secret(t)}
	if provider == "etcd" {
		f.etcd = startEtcd(t)
	}
	for range size {
		f.internals = append(f.internals, freeAddr(t))
	}
	return f
}

// start starts node i of the fleet on free ports (its automanaged
// internal address is the one chosen up front).
func (f *fleetSpec) start(t testing.TB, i int) *node {
	t.Helper()
	n := &node{name: string(rune('A' + i))}
	n.args = []string{
		"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-log-format", "json", "-log-level", "info",
		"-cluster", "test", "-cluster-provider", f.provider, "-cluster-listen", "127.0.0.1:0",
		"-shutdown-timeout", "5s",
	}
	if f.provider == "etcd" {
		n.args = append(n.args, "-etcd-endpoints", f.etcd.endpoint, "-internal-listen", "127.0.0.1:0")
	} else {
		n.args = append(n.args, "-cluster-peers", strings.Join(f.internals, ","), "-internal-listen", f.internals[i])
	}
	n.env = []string{"AUTH_TOKEN=" + f.key, "RELAY_CLUSTER_SECRET=" + f.secret}
	n.launch(t)
	return n
}

// launch runs the node's process and reads its addresses from its log.
func (n *node) launch(t testing.TB) {
	t.Helper()
	n.proc = startProc(t, "relay-"+n.name, n.env, filepath.Join(bin, "tunnel-relay"), n.args...)
	l := n.line("Relay listening")
	n.addr, n.admin = l["addr"].(string), l["admin_addr"].(string)
	n.internal, n.id = l["internal_addr"].(string), l["node"].(string)
}

// restart starts the node again on the same addresses.
func (n *node) restart(t testing.TB) {
	t.Helper()
	for i, a := range n.args {
		switch {
		case i > 0 && n.args[i-1] == "-listen":
			n.args[i] = n.addr
		case i > 0 && n.args[i-1] == "-admin-listen":
			n.args[i] = n.admin
		case i > 0 && n.args[i-1] == "-internal-listen":
			n.args[i] = n.internal
		}
		_ = a
	}
	n.launch(t)
}

// view is a node's GET /fleet.
type view struct {
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

func (n *node) view(tunnel string) (view, error) {
	var v view
	url := "http://" + n.admin + "/fleet"
	if tunnel != "" {
		url += "?tunnel=" + tunnel
	}
	res, err := http.Get(url)
	if err != nil {
		return v, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return v, fmt.Errorf("/fleet: %d %s", res.StatusCode, b)
	}
	return v, json.NewDecoder(res.Body).Decode(&v)
}

// waitMembers waits until every node is joined and sees want members.
func waitMembers(t testing.TB, nodes []*node, want int) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, settleTimeout, fmt.Sprintf("node %s to see %d members", n.name, want), func() error {
			v, err := n.view("")
			switch {
			case err != nil:
				return err
			case !v.Joined || len(v.Members) != want:
				return fmt.Errorf("joined %v, members %v", v.Joined, v.Members)
			}
			return nil
		})
	}
}

// startFleet starts size nodes and waits until they see one another.
func startFleet(t testing.TB, provider string, size int) (*fleetSpec, []*node) {
	t.Helper()
	f := newFleet(t, provider, size)
	nodes := make([]*node, size)
	for i := range nodes {
		nodes[i] = f.start(t, i)
	}
	waitMembers(t, nodes, size)
	return f, nodes
}

// startSupervisor runs a tunnel-supervisor for the tunnel "default" with
// connections to the given nodes.
func startSupervisor(t testing.TB, f *fleetSpec, upstream string, nodes ...*node) *proc {
	t.Helper()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, "ws://"+n.addr+"/tunnel")
	}
	return startProc(t, "supervisor", []string{"TUNNEL_API_KEY=" + f.key}, filepath.Join(bin, "tunnel-supervisor"),
		"-relay-url", strings.Join(urls, ","), "-forward", upstream, "-listen", "127.0.0.1:0",
		"-retry-delay", "500ms", "-log-format", "json")
}

// waitSession waits until the node holds a session of "default".
func waitSession(t testing.TB, n *node) {
	t.Helper()
	waitFor(t, settleTimeout, "a session at node "+n.name, func() error {
		v, err := n.view("")
		if err != nil {
			return err
		}
		if v.Sessions["default"] == 0 {
			return fmt.Errorf("sessions %v", v.Sessions)
		}
		return nil
	})
}

// get sends a GET to the tunnel through node n.
func get(ctx context.Context, client *http.Client, n *node, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, body, err
}

// metric reads one unlabelled metric of a node.
func (n *node) metric(name string) (float64, error) {
	res, err := http.Get("http://" + n.admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		var v float64
		if _, err := fmt.Sscanf(sc.Text(), name+" %g", &v); err == nil {
			return v, nil
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}
