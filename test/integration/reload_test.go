package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// The keys of the reload tests.
const (
	alphaKey    = "itest-alpha-key-0b7e3c9a5f1d2468"
	alphaKeyNew = "itest-alpha-key-new-6c2f8a0e4b1d9357"
	betaKey     = "itest-beta-key-3d9a1f7c5e0b2864"
	gammaKey    = "itest-gamma-key-8f4b2d6a0c1e3579"
	betaBearer  = "itest-beta-bearer-5a1c7e3f9b2d4086"
)

// reloadWorld is a relay with a keys file of alpha and beta, each with a
// supervisor, and an upstream whose /slow says on reached that it has a
// request and answers once release is closed.
type reloadWorld struct {
	*world
	r        *relay.Relay
	keysFile string
	upstream string
	alpha    *tunnel
	beta     *tunnel
	reached  chan struct{}
	release  chan struct{}
}

func startReloadWorld(t *testing.T) *reloadWorld {
	t.Helper()
	w := newWorld(t)
	w.secrets = append(w.secrets, alphaKey, alphaKeyNew, betaKey, gammaKey, betaBearer)
	rw := &reloadWorld{world: w, keysFile: filepath.Join(t.TempDir(), "keys"), reached: make(chan struct{}, 8), release: make(chan struct{})}
	rw.writeKeys("alpha " + alphaKey + "\nbeta " + betaKey + "\n")
	rw.r = w.startRelay("127.0.0.1:0", func(c *relay.Config) {
		c.KeysFile = rw.keysFile
		c.HoldTimeout = 200 * time.Millisecond
	})
	up := w.startUpstream(http.HandlerFunc(func(resp http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/slow" {
			rw.reached <- struct{}{}
			<-rw.release
		}
		_, _ = io.WriteString(resp, "served "+req.URL.Path)
	}))
	rw.upstream = up.URL
	rw.alpha = rw.startSupervisor("alpha", alphaKey)
	rw.beta = rw.startSupervisor("beta", betaKey)
	rw.waitServed("alpha")
	rw.waitServed("beta")
	return rw
}

func (rw *reloadWorld) writeKeys(text string) {
	rw.t.Helper()
	if err := os.WriteFile(rw.keysFile, []byte(text), 0o600); err != nil {
		rw.t.Fatal(err)
	}
}

func (rw *reloadWorld) startSupervisor(name, key string) *tunnel {
	return rw.startTunnel(harness.TunnelURL(rw.r), rw.upstream, func(c *supervisor.Config) {
		c.Tunnel, c.APIKey = name, key
		// Retried soon after an auth failure, so that the test sees one.
		c.AuthRetryDelay = 200 * time.Millisecond
		c.BreakerThreshold = 1000
	})
}

// status is the code of a public GET of /t/name/x.
func (rw *reloadWorld) status(name string) int {
	code, _ := rw.get(publicURL(rw.r, "/t/"+name+"/x"))
	return code
}

func (rw *reloadWorld) waitServed(name string) {
	rw.t.Helper()
	harness.Eventually(rw.t, patience, name+" served", func() bool { return rw.status(name) == http.StatusOK })
}

// authFailures is how many auth failures tn's status counts.
func authFailures(tn *tunnel) int {
	return tn.Status().Health.FailureTypes[messages.AuthFailure.String()]
}

// TestReloadRevokesOneTunnel removes alpha's line and adds gamma's: alpha's
// session is closed 1008 and its supervisor's next auth fails; beta's
// session stays, and a request in flight through it completes; gamma, 404
// before, is known at once and served once its supervisor connects.
func TestReloadRevokesOneTunnel(t *testing.T) {
	rw := startReloadWorld(t)
	betaAttempts := rw.beta.Status().Health.TotalAttempts
	if got := rw.status("gamma"); got != http.StatusNotFound {
		t.Fatalf("gamma before the reload: %d, want 404", got)
	}
	// A request in flight through beta while the keys change.
	slow := make(chan int, 1)
	go func() {
		resp, err := rw.client.Get(publicURL(rw.r, "/t/beta/slow"))
		if err != nil {
			slow <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-rw.reached // in flight: at the upstream

	rw.writeKeys("beta " + betaKey + "\ngamma " + gammaKey + "\n")
	if err := rw.r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	harness.Eventually(t, patience, "alpha's supervisor to fail its auth", func() bool { return authFailures(rw.alpha) > 0 })
	if logs := rw.logs.String(); !strings.Contains(logs, "Session closed: its key was revoked") || !strings.Contains(logs, "failure_type=KEY_REVOKED") {
		t.Error("no log line tells of the session closed for its revoked key (KEY_REVOKED)")
	}
	if got := rw.status("alpha"); got != http.StatusNotFound {
		t.Errorf("alpha after the reload: %d, want 404", got)
	}
	// gamma is known: held for a session (503 after the hold timeout), not 404.
	if got := rw.status("gamma"); got != http.StatusServiceUnavailable {
		t.Errorf("gamma after the reload, no supervisor: %d, want 503", got)
	}
	rw.startSupervisor("gamma", gammaKey)
	rw.waitServed("gamma")

	close(rw.release)
	if code := <-slow; code != http.StatusOK {
		t.Errorf("the request in flight through beta: %d, want 200", code)
	}
	if got := rw.status("beta"); got != http.StatusOK {
		t.Errorf("beta after the reload: %d, want 200", got)
	}
	s := rw.beta.Status()
	if s.Health.TotalAttempts != betaAttempts || s.Health.Drops != 0 || !s.Connected {
		t.Errorf("beta's session was touched: attempts %d (was %d), drops %d, connected %v",
			s.Health.TotalAttempts, betaAttempts, s.Health.Drops, s.Connected)
	}
	metrics := rw.metrics()
	if !strings.Contains(metrics, `tunnel_relay_reloads_total{result="ok"} 1`) {
		t.Errorf("reloads metric:\n%s", grepLines(metrics, "tunnel_relay_reloads_total"))
	}
}

// TestReloadChangedKey gives alpha a new key: the session of the old one
// is closed and its supervisor fails its auth; a supervisor with the new
// key is served; beta is untouched.
func TestReloadChangedKey(t *testing.T) {
	rw := startReloadWorld(t)
	betaAttempts := rw.beta.Status().Health.TotalAttempts
	rw.writeKeys("alpha " + alphaKeyNew + "\nbeta " + betaKey + "\n")
	if err := rw.r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	harness.Eventually(t, patience, "the old alpha supervisor to fail its auth", func() bool { return authFailures(rw.alpha) > 0 })
	if err := rw.alpha.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	rw.startSupervisor("alpha", alphaKeyNew)
	rw.waitServed("alpha")
	s := rw.beta.Status()
	if s.Health.TotalAttempts != betaAttempts || !s.Connected || rw.status("beta") != http.StatusOK {
		t.Errorf("beta was touched: attempts %d (was %d), connected %v", s.Health.TotalAttempts, betaAttempts, s.Connected)
	}
}

// TestReloadAccessOptions adds a bearer token to beta: it takes effect for
// the next requests, and beta's session stays.
func TestReloadAccessOptions(t *testing.T) {
	rw := startReloadWorld(t)
	betaAttempts := rw.beta.Status().Health.TotalAttempts
	rw.writeKeys(fmt.Sprintf("alpha %s\nbeta %s bearer=%s\n", alphaKey, betaKey, betaBearer))
	if err := rw.r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := rw.status("beta"); got != http.StatusUnauthorized {
		t.Errorf("beta without its token: %d, want 401", got)
	}
	req, _ := http.NewRequest(http.MethodGet, publicURL(rw.r, "/t/beta/x"), nil)
	req.Header.Set("Authorization", "Bearer "+betaBearer)
	resp, _, err := rw.do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("beta with its token: %v %v, want 200", resp, err)
	}
	if got := rw.status("alpha"); got != http.StatusOK {
		t.Errorf("alpha: %d, want 200", got)
	}
	if s := rw.beta.Status(); s.Health.TotalAttempts != betaAttempts || !s.Connected {
		t.Errorf("beta's session was touched: attempts %d (was %d)", s.Health.TotalAttempts, betaAttempts)
	}
}

// TestReloadBrokenFileKeepsOldSettings: a file that does not parse changes
// nothing; the error names the line, never a key, and is logged at error
// level; the metric counts it.
func TestReloadBrokenFileKeepsOldSettings(t *testing.T) {
	rw := startReloadWorld(t)
	rw.writeKeys("alpha " + alphaKeyNew + "\nbeta " + betaKey + " bogus\n")
	err := rw.r.Reload()
	if err == nil {
		t.Fatal("Reload of a broken file: no error")
	}
	if !strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), alphaKeyNew) || strings.Contains(err.Error(), betaKey) {
		t.Errorf("error %q: want the line named and no key", err)
	}
	if !strings.Contains(rw.logs.String(), "level=error msg=\"Reload failed") {
		t.Error("no error line for the failed reload")
	}
	for _, name := range []string{"alpha", "beta"} {
		if got := rw.status(name); got != http.StatusOK {
			t.Errorf("%s after a failed reload: %d, want 200", name, got)
		}
	}
	if authFailures(rw.alpha) != 0 {
		t.Error("alpha's supervisor failed an auth")
	}
	metrics := rw.metrics()
	if !strings.Contains(metrics, `tunnel_relay_reloads_total{result="error"} 1`) {
		t.Errorf("reloads metric:\n%s", grepLines(metrics, "tunnel_relay_reloads_total"))
	}
}

func (rw *reloadWorld) metrics() string {
	_, body := rw.get(harness.AdminURL(rw.r) + "/metrics")
	return string(body)
}

func grepLines(text, s string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
