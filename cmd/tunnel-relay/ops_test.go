package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestVersionExitsZeroBeforeAnythingElse(t *testing.T) {
	// No key, no listener: -version reads nothing else.
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-listen", "bad", "-version"}, env(map[string]string{"RELAY_LOG_FORMAT": "nonsense"}), &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	var out bytes.Buffer
	printVersion(&out)
	if !strings.HasPrefix(out.String(), "tunnel-relay ") || !strings.Contains(out.String(), runtime.Version()) ||
		!strings.Contains(out.String(), "revision ") {
		t.Errorf("version output %q", out.String())
	}
}

func TestAccessLogFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want float64
		err  bool
	}{
		{nil, nil, 0, false},
		{[]string{"-access-log", "on"}, nil, 1, false},
		{[]string{"-access-log", "off"}, map[string]string{"RELAY_ACCESS_LOG": "on"}, 0, false},
		{nil, map[string]string{"RELAY_ACCESS_LOG": "0.1"}, 0.1, false},
		{[]string{"-access-log", "1.5"}, nil, 0, true},
		{[]string{"-access-log", "sometimes"}, nil, 0, true},
	} {
		o, err := parse(tc.args, env(tc.env), io.Discard)
		if tc.err {
			if err == nil {
				t.Errorf("%v %v: no error", tc.args, tc.env)
			}
			continue
		}
		if err != nil || o.relay.AccessLog != tc.want {
			t.Errorf("%v %v: %v, %v; want %v", tc.args, tc.env, o, err, tc.want)
		}
	}
}

// TestSIGHUPReloadsTheKeysFile runs the command, adds a tunnel to its keys
// file and sends the process SIGHUP: the new tunnel is known (503 while no
// supervisor is connected, not 404), and the reload is logged.
func TestSIGHUPReloadsTheKeysFile(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	const newKey = "the-new-key-bmV3IGtleSBoZXJl"
	if err := os.WriteFile(keys, []byte("default "+secretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-log-format", "json",
			"-keys-file", keys, "-hold-timeout", "0"}, env(nil), pw)
		pw.Close()
	}()
	var logs bytes.Buffer
	lines := bufio.NewScanner(pr)
	next := func(msg string) map[string]any {
		for lines.Scan() {
			logs.Write(append(lines.Bytes(), '\n'))
			var entry map[string]any
			if err := json.Unmarshal(lines.Bytes(), &entry); err != nil {
				t.Fatalf("log line is not JSON: %s", lines.Bytes())
			}
			if entry["msg"] == msg {
				return entry
			}
		}
		t.Fatalf("no %q in the logs:\n%s", msg, logs.String())
		return nil
	}
	addr, _ := next("Relay listening")["addr"].(string)
	status := func() int {
		resp, err := http.Get("http://" + addr + "/t/fresh/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusNotFound {
		t.Fatalf("before the reload: %d, want 404", got)
	}
	if err := os.WriteFile(keys, []byte("default "+secretKey+"\nfresh "+newKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	next("Keys reloaded")
	if got := status(); got != http.StatusServiceUnavailable {
		t.Errorf("after the reload: %d, want 503 (known, no session)", got)
	}
	cancel()
	done := make(chan struct{})
	go func() {
		rest, _ := io.ReadAll(pr)
		logs.Write(rest)
		close(done)
	}()
	select {
	case code := <-exit:
		<-done
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return")
	}
	for _, key := range []string{secretKey, newKey} {
		if strings.Contains(logs.String(), key) {
			t.Fatalf("a key reached the log:\n%s", logs.String())
		}
	}
}
