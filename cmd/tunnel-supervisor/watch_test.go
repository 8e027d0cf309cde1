package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor/agent"
	"github.com/enhanced-tunnel/tunnel/supervisor/httpapi"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// lockedBuffer is a bytes.Buffer safe to read while the watch writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// switchable answers /status with the status it holds, or 503 while down.
type switchable struct {
	mu     sync.Mutex
	status messages.Status
	down   bool
}

func (s *switchable) Status() messages.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	httpapi.NewHandler(httpapi.Config{Status: s}).ServeHTTP(w, req)
}

// The watch draws each frame from the top left corner over the last one,
// every line clearing its rest, and an error line when the status cannot
// be read; it ends with the cursor shown again.
func TestWatchStatusFrames(t *testing.T) {
	src := &switchable{status: messages.Status{State: messages.Authenticated, Connected: true, Tunnel: "tts", ReadyConnections: 1,
		Connections: []messages.ConnectionStatus{{Index: 0, RelayURL: "ws://relay-a/tunnel", State: messages.Authenticated, Connected: true}}}}
	srv := httptest.NewServer(src)
	defer srv.Close()
	out := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchStatus(ctx, srv.URL+"/status", 50*time.Millisecond, out, func() (int, int, bool) { return 120, 30, true })
	}()
	harness.Eventually(t, 5*time.Second, "two frames of the table", func() bool {
		return strings.Count(out.String(), "AUTHENTICATED") >= 4
	})
	src.mu.Lock()
	src.down = true
	src.mu.Unlock()
	harness.Eventually(t, 5*time.Second, "an error frame", func() bool {
		return strings.Contains(out.String(), "error: GET "+srv.URL+"/status: 503 Service Unavailable")
	})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end with its context")
	}
	got := out.String()
	if !strings.HasPrefix(got, ansiHideCursor+ansiClear+ansiHome) || !strings.HasSuffix(got, ansiShowCursor+"\n") {
		t.Errorf("watch output does not hide the cursor first and show it last: %q...%q", got[:20], got[len(got)-20:])
	}
	// The start clears the screen and goes home; every frame goes home
	// again.
	frames := strings.Split(strings.TrimSuffix(got, ansiShowCursor+"\n"), ansiHome)[2:]
	for i, f := range frames {
		if !strings.HasSuffix(f, ansiClearLine+ansiClearBelow) {
			t.Errorf("frame %d does not end clearing what is below: %q", i, f)
		}
		for _, line := range strings.Split(strings.TrimSuffix(f, ansiClearBelow), "\r\n") {
			text := strings.TrimSuffix(line, ansiClearLine)
			if len([]rune(text)) > 119 {
				t.Errorf("frame %d: line longer than the terminal: %q", i, text)
			}
		}
	}
	if len(frames) < 3 || strings.Contains(frames[len(frames)-1], "INDEX") {
		t.Errorf("%d frames; the last still shows the table: %q", len(frames), frames[len(frames)-1])
	}
}

func TestDrawFrameFitsTheTerminal(t *testing.T) {
	text := strings.Repeat("0123456789\n", 10)
	got := drawFrame(text, 5, 4, true)
	want := ansiHome + "0123" + ansiClearLine + "\r\n0123" + ansiClearLine + "\r\n0123" + ansiClearLine + ansiClearBelow
	if got != want {
		t.Errorf("drawFrame = %q, want %q", got, want)
	}
	if got := drawFrame("a\nb\n", 0, 0, false); got != ansiHome+"a"+ansiClearLine+"\r\nb"+ansiClearLine+ansiClearBelow {
		t.Errorf("drawFrame of an unknown size = %q", got)
	}
}

// requireTools fails instead of skipping when a tool is missing (CI).
func requireTools() bool { return os.Getenv("TUNNEL_REQUIRE_TOOLS") != "" }

// tmuxSession is a detached tmux session on a server of its own.
type tmuxSession struct {
	t      *testing.T
	socket string
}

func (s *tmuxSession) run(args ...string) (string, error) {
	cmd := exec.Command("tmux", append([]string{"-L", s.socket, "-f", "/dev/null"}, args...)...)
	cmd.Env = append(os.Environ(), "TMUX=", "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// screen is what the pane shows now.
func (s *tmuxSession) screen() string {
	out, err := s.run("capture-pane", "-p", "-t", "watch")
	if err != nil {
		s.t.Fatalf("tmux capture-pane: %v: %s", err, out)
	}
	return out
}

func (s *tmuxSession) waitScreen(what string, cond func(string) bool) string {
	s.t.Helper()
	var last string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if last = s.screen(); cond(last) {
			s.t.Logf("the screen with %s:\n%s", what, last)
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("timed out waiting for %s; the screen:\n%s", what, last)
	return ""
}

// buildSupervisor builds this command into a temporary directory.
func buildSupervisor(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tunnel-supervisor")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var connectionRow = regexp.MustCompile(`(?m)^([01])\s+ws://\S+\s+(\S+)\s+(yes|no)\s`)

// rowsOf are the connection rows on the screen: index -> state and
// whether connected.
func rowsOf(screen string) map[string]string {
	rows := map[string]string{}
	for _, m := range connectionRow.FindAllStringSubmatch(screen, -1) {
		rows[m[1]] = m[2] + " " + m[3]
	}
	return rows
}

// `status -watch` in a real terminal: the table of a real supervisor
// connected to a real relay, redrawn in place as the relay goes away and
// then the supervisor, until Ctrl-C ends it with exit status 0 and the
// cursor shown again.
func TestWatchInTerminal(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		if requireTools() {
			t.Fatal("tmux is not installed (Debian package tmux), and TUNNEL_REQUIRE_TOOLS is set")
		}
		t.Skip("tmux is not installed (Debian package tmux); skipping the terminal test of status -watch")
	}
	bin := buildSupervisor(t)

	const key = "watch-key-VGhpcyBpcyBhIGtleQ"
	r := harness.StartRelay(t, key, nil, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Tunnel.RelayURL = harness.TunnelURL(r)
	cfg.Tunnel.APIKey = key
	cfg.Tunnel.Connections = 2
	cfg.Tunnel.CloseTimeout = 2 * time.Second
	cfg.Tunnel.RetryDelay = 200 * time.Millisecond
	cfg.Forward = "http://127.0.0.1:1"
	cfg.Listener = ln
	a, _ := harness.StartAgent(t, cfg)
	addr := ln.Addr().String()

	s := &tmuxSession{t: t, socket: fmt.Sprintf("tunnel-watch-%d-%d", os.Getpid(), time.Now().UnixNano())}
	t.Cleanup(func() { _, _ = s.run("kill-server") })
	command := fmt.Sprintf("'%s' status -watch -addr %s; echo \"exit status $?\"; sleep 60", bin, addr)
	if out, err := s.run("new-session", "-d", "-s", "watch", "-x", "160", "-y", "40", command); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}

	screen := s.waitScreen("both connections authenticated", func(sc string) bool {
		rows := rowsOf(sc)
		return rows["0"] == "AUTHENTICATED yes" && rows["1"] == "AUTHENTICATED yes"
	})
	if !strings.Contains(screen, "Connections           2 of 2 ready") {
		t.Errorf("no aggregate row of 2 ready connections:\n%s", screen)
	}
	if cursor, _ := s.run("display-message", "-p", "-t", "watch", "#{cursor_flag}"); strings.TrimSpace(cursor) != "0" {
		t.Errorf("cursor flag %q while watching, want 0 (hidden)", cursor)
	}

	// The relay goes: both rows change in place.
	harness.CloseRelay(t, r)
	screen = s.waitScreen("both connections down", func(sc string) bool {
		rows := rowsOf(sc)
		return strings.HasSuffix(rows["0"], " no") && strings.HasSuffix(rows["1"], " no")
	})
	for what, n := range map[string]int{"header": strings.Count(screen, "INDEX  RELAY"), "title": strings.Count(screen, "tunnel-supervisor status"),
		"tunnel row": strings.Count(screen, "\nTunnel ")} {
		if n != 1 {
			t.Errorf("%s %d times on the screen, want once (redrawn in place):\n%s", what, n, screen)
		}
	}
	if !strings.Contains(screen, "Connections           0 of 2 ready") {
		t.Errorf("no aggregate row of 0 ready connections:\n%s", screen)
	}

	// The supervisor goes: an error line instead of the table, and the
	// watch keeps trying.
	ctx, cancel := context.WithTimeout(context.Background(), harness.StopTimeout)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("agent Shutdown: %v", err)
	}
	screen = s.waitScreen("the error line", func(sc string) bool {
		return strings.Contains(sc, "error: Get \"http://"+addr+"/status\"") && strings.Contains(sc, "retrying every 1s")
	})
	if strings.Contains(screen, "INDEX") || strings.Contains(screen, "Tunnel ") {
		t.Errorf("the table is left below the error line:\n%s", screen)
	}

	if out, err := s.run("send-keys", "-t", "watch", "C-c"); err != nil {
		t.Fatalf("tmux send-keys: %v: %s", err, out)
	}
	s.waitScreen("the exit status", func(sc string) bool { return strings.Contains(sc, "exit status 0") })
	if cursor, _ := s.run("display-message", "-p", "-t", "watch", "#{cursor_flag}"); strings.TrimSpace(cursor) != "1" {
		t.Errorf("cursor flag %q after the watch, want 1 (shown)", cursor)
	}
}
