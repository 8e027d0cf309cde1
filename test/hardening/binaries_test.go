package hardening_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// proc is a running binary whose stderr (JSON logs) the test reads.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	logs *harness.LogBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, once done

	mu    sync.Mutex
	lines []map[string]any
}

// startProc runs bin with args and exactly the environment env, so that
// nothing of the test's own environment (a TUNNEL_ or RELAY_ variable)
// reaches it.
func startProc(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: exec.Command(bin, args...), logs: &harness.LogBuffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			_, _ = p.logs.Write(append(sc.Bytes(), '\n'))
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.mu.Lock()
				p.lines = append(p.lines, line)
				p.mu.Unlock()
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// awaitLog returns the first log line whose message is msg, waiting for it.
func (p *proc) awaitLog(msg string) map[string]any {
	p.t.Helper()
	var found map[string]any
	harness.Eventually(p.t, wait, p.name+" logging "+msg, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, line := range p.lines {
			if line["msg"] == msg {
				found = line
				return true
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.err, msg, p.logs)
		default:
		}
		return false
	})
	return found
}

// stop sends SIGTERM and expects a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(wait):
		p.t.Fatalf("%s still running %v after SIGTERM", p.name, wait)
	}
	if p.err != nil {
		p.t.Errorf("%s exited with %v:\n%s", p.name, p.err, p.logs)
	}
}

// binaryStatus is the part of a supervisor binary's /status these tests
// read. (messages.Status does not decode: its states only marshal.)
type binaryStatus struct {
	State     string `json:"state"`
	Connected bool   `json:"connected"`
	Health    struct {
		TotalAttempts   int    `json:"total_attempts"`
		LastError       string `json:"last_error"`
		LastFailureType string `json:"last_failure_type"`
	} `json:"health"`
}

// statusOf reads a supervisor binary's /status.
func statusOf(t *testing.T, c *http.Client, addr string) binaryStatus {
	t.Helper()
	_, body := get(t, c, "http://"+addr+"/status")
	var st binaryStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status %q: %v", body, err)
	}
	return st
}

// The binaries over wss://: tunnel-relay with -tls-cert and -tls-key,
// tunnel-supervisor with -ca-file, a request through them; a supervisor
// without the CA fails each attempt with a classified failure. Every log
// line (at debug level), status and metrics text of the three processes is
// free of keys, which they got from the environment.
func TestBinariesOverWSSKeepKeysToThemselves(t *testing.T) {
	certFile, keyFile, roots := harness.SelfSigned(t)
	up := upstream(t, hello)
	logFlags := []string{"-log-format", "json", "-log-level", "debug"}

	relayProc := startProc(t, "tunnel-relay", relayBin, []string{"AUTH_TOKEN=" + defaultKey},
		append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile}, logFlags...)...)
	listening := relayProc.awaitLog("Relay listening")
	addr, _ := listening["addr"].(string)
	admin, _ := listening["admin_addr"].(string)
	if addr == "" || admin == "" {
		t.Fatalf("no address in the relay's log:\n%s", relayProc.logs)
	}
	trusted := startProc(t, "tunnel-supervisor", supervisorBin, []string{"TUNNEL_API_KEY=" + defaultKey},
		append([]string{"-relay-url", "wss://" + addr + "/tunnel", "-ca-file", certFile, "-forward", up, "-listen", "127.0.0.1:0"}, logFlags...)...)
	trustedAddr, _ := trusted.awaitLog("Supervisor started")["listen"].(string)
	trusted.awaitLog("Tunnel authenticated")

	if status, body := get(t, httpsClient(t, roots), "https://"+addr+"/v1/tts"); status != http.StatusOK || body != "hello" {
		t.Fatalf("through the binaries: %d %q", status, body)
	}

	untrusted := startProc(t, "untrusted tunnel-supervisor", supervisorBin, []string{"TUNNEL_API_KEY=" + wrongKey},
		append([]string{"-relay-url", "wss://" + addr + "/tunnel", "-tunnel", "b", "-retry-delay", "50ms", "-listen", "127.0.0.1:0"}, logFlags...)...)
	untrustedAddr, _ := untrusted.awaitLog("Supervisor started")["listen"].(string)
	c := httpClient(t)
	harness.Eventually(t, wait, "a failed attempt of the untrusted supervisor", func() bool {
		return statusOf(t, c, untrustedAddr).Health.LastFailureType != ""
	})
	st := statusOf(t, c, untrustedAddr)
	if st.Connected || st.Health.LastFailureType != messages.Unknown.String() || !strings.Contains(st.Health.LastError, "certificate signed by unknown authority") {
		t.Fatalf("untrusted supervisor: connected %v, failure %s: %q; want UNKNOWN for the certificate",
			st.Connected, st.Health.LastFailureType, st.Health.LastError)
	}
	if trustedSt := statusOf(t, c, trustedAddr); trustedSt.State != messages.Authenticated.String() {
		t.Fatalf("trusted supervisor %s", trustedSt.State)
	}

	texts := map[string]string{}
	for _, a := range []string{trustedAddr, untrustedAddr} {
		for _, path := range []string{"/status", "/metrics", "/health"} {
			_, texts["supervisor "+a+path] = get(t, c, "http://"+a+path)
		}
	}
	for _, path := range []string{"/metrics", "/health"} {
		_, texts["relay"+path] = get(t, c, "http://"+admin+path)
	}
	untrusted.stop()
	trusted.stop()
	relayProc.stop()
	for _, p := range []*proc{relayProc, trusted, untrusted} {
		texts[p.name+" log"] = p.logs.String()
	}
	// The logs must show what happened, or the search proves nothing.
	for _, want := range []struct {
		p   *proc
		msg string
	}{{relayProc, "Supervisor authenticated"}, {trusted, "Request forwarded"}, {untrusted, "Connection failed"}} {
		if want.p.logs.Count(`"msg":"`+want.msg+`"`) == 0 {
			t.Errorf("the %s log has no %q", want.p.name, want.msg)
		}
	}
	for name, text := range texts {
		for _, key := range []string{defaultKey, wrongKey} {
			if strings.Contains(text, key) {
				t.Errorf("%s holds a key", name)
			}
		}
	}
}
