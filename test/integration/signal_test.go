package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// process is a running binary of binDir, its output collected.
type process struct {
	cmd    *exec.Cmd
	logs   *harness.LogBuffer
	exited chan struct{} // closed once the process is waited for
	err    error         // Wait's result, once exited is closed
}

// startBinary runs a binary with the environment of the test minus the
// tunnel's own variables, plus env. The clean-up kills it if it still runs.
func startBinary(t *testing.T, name string, args, env []string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(filepath.Join(binDir, name), args...), logs: &harness.LogBuffer{}, exited: make(chan struct{})}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TUNNEL_") && !strings.HasPrefix(kv, "RELAY_") && !strings.HasPrefix(kv, "AUTH_TOKEN=") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s's output:\n%s", name, lastLines(p.logs.String(), 100))
		}
		if strings.Contains(p.logs.String(), testKey) {
			t.Errorf("the key appears in the output of %s", name)
		}
	})
	return p
}

// logField waits for the JSON log line whose msg is msg and returns its
// field named field.
func (p *process) logField(t *testing.T, msg, field string) string {
	t.Helper()
	var value string
	harness.Eventually(t, patience, fmt.Sprintf("the log line %q", msg), func() bool {
		sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
				value, _ = line[field].(string)
				return true
			}
		}
		return false
	})
	return value
}

// stop sends sig and waits for the exit; the exit status must be 0.
func (p *process) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal: %v", err)
	}
	p.waitExit(t)
}

func (p *process) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(patience):
		t.Fatalf("%s did not exit", p.cmd.Path)
	}
	if p.err != nil {
		t.Errorf("%s: %v, want exit status 0", filepath.Base(p.cmd.Path), p.err)
	}
}

func TestSIGTERMLetsRequestsInFlightFinish(t *testing.T) {
	const inFlight = 5
	var held atomic.Int32
	release := make(chan struct{})
	w := newWorld(t)
	up := w.startUpstream(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		held.Add(1)
		select {
		case <-release:
			fmt.Fprintf(rw, "done %s", r.URL.Query().Get("n"))
		case <-r.Context().Done():
		}
	}))
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	relayProc := startBinary(t, "tunnel-relay",
		[]string{"-listen", "127.0.0.1:0", "-log-format", "json", "-log-level", "trace"},
		[]string{"AUTH_TOKEN=" + testKey})
	relayAddr := relayProc.logField(t, "Relay listening", "addr")
	sup := startBinary(t, "tunnel-supervisor",
		[]string{"-relay-url", "ws://" + relayAddr + "/tunnel", "-forward", up.URL, "-listen", "127.0.0.1:0",
			"-heartbeat-interval", "200ms", "-retry-delay", "200ms", "-drain-timeout", "20s",
			"-log-format", "json", "-log-level", "trace"},
		[]string{"TUNNEL_API_KEY=" + testKey})
	supAddr := sup.logField(t, "Supervisor started", "listen")
	harness.Eventually(t, patience, "the supervisor's /health to say connected", func() bool {
		code, _ := w.get("http://" + supAddr + "/health")
		return code == http.StatusOK
	})

	type answer struct {
		n    int
		code int
		body string
		err  error
	}
	answers := make(chan answer, inFlight)
	for n := range inFlight {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v1/tts?n=%d", relayAddr, n), nil)
			resp, body, err := w.do(req)
			a := answer{n: n, body: string(body), err: err}
			if err == nil {
				a.code = resp.StatusCode
			}
			answers <- a
		}()
	}
	harness.Eventually(t, patience, "the upstream to hold every request", func() bool { return held.Load() == inFlight })

	if err := sup.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sup.logField(t, "Draining: refusing new requests", "msg")
	code, body := w.get("http://" + relayAddr + "/v1/tts?n=late")
	if code != http.StatusServiceUnavailable || errorOf(t, body) != "draining" {
		t.Errorf("request after SIGTERM: %d %q, want 503 draining", code, body)
	}
	select {
	case a := <-answers:
		t.Fatalf("request %d ended before the upstream answered: %d %q %v", a.n, a.code, a.body, a.err)
	default:
	}

	close(release)
	for range inFlight {
		select {
		case a := <-answers:
			if want := fmt.Sprintf("done %d", a.n); a.err != nil || a.code != http.StatusOK || a.body != want {
				t.Errorf("request %d in flight at SIGTERM: %d %q %v, want 200 %q", a.n, a.code, a.body, a.err, want)
			}
		case <-time.After(patience):
			t.Fatal("requests in flight at SIGTERM did not finish")
		}
	}
	sup.waitExit(t)
	relayProc.stop(t, syscall.SIGTERM)
}
