package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestFlagsOverEnvironmentOverDefaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*options) bool
		err   string
	}{
		{"defaults", nil, nil, func(o *options) bool {
			c := o.relay
			return c.Listen == "127.0.0.1:8080" && c.RequestTimeout == 60*time.Second && c.AuthTimeout == 10*time.Second &&
				c.HeartbeatTimeout == 30*time.Second && c.MaxSessions == 10000 && c.MaxConcurrent == 1024 &&
				c.MaxBody == 1<<30 && o.logLevel == "info" && o.logFormat == "text"
		}, ""},
		{"environment", nil, map[string]string{"AUTH_TOKEN": "k", "RELAY_LISTEN": ":9", "RELAY_REQUEST_TIMEOUT": "2m", "RELAY_MAX_BODY": "10", "RELAY_LOG_FORMAT": "json"},
			func(o *options) bool {
				return o.relay.AuthToken == "k" && o.relay.Listen == ":9" && o.relay.RequestTimeout == 2*time.Minute && o.relay.MaxBody == 10 && o.logFormat == "json"
			}, ""},
		{"flag beats environment", []string{"-listen", ":7", "-auth-token", "f"}, map[string]string{"AUTH_TOKEN": "e", "RELAY_LISTEN": ":9"},
			func(o *options) bool { return o.relay.Listen == ":7" && o.relay.AuthToken == "f" }, ""},
		{"all flags", []string{"-keys-file", "k.txt", "-auth-timeout", "1s", "-heartbeat-timeout", "2s", "-max-sessions", "3", "-max-concurrent", "4",
			"-tls-cert", "c.pem", "-tls-key", "k.pem", "-log-level", "debug", "-shutdown-timeout", "5s"}, nil,
			func(o *options) bool {
				c := o.relay
				return c.KeysFile == "k.txt" && c.AuthTimeout == time.Second && c.HeartbeatTimeout == 2*time.Second && c.MaxSessions == 3 &&
					c.MaxConcurrent == 4 && c.TLSCertFile == "c.pem" && c.TLSKeyFile == "k.pem" && o.logLevel == "debug" && o.shutdownTimeout == 5*time.Second
			}, ""},
		{"bad duration in the environment", nil, map[string]string{"RELAY_AUTH_TIMEOUT": "ten"}, nil, "RELAY_AUTH_TIMEOUT"},
		{"bad duration flag", []string{"-request-timeout", "60"}, nil, nil, "request-timeout"},
		{"bad log format", []string{"-log-format", "xml"}, nil, nil, "text or json"},
		{"bad log level", []string{"-log-level", "loud"}, nil, nil, "log-level"},
		{"stray argument", []string{"extra"}, nil, nil, "unexpected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parse(tc.args, env(tc.env), io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || !tc.check(o) {
				t.Fatalf("options %+v, %v", o, err)
			}
		})
	}
}

func TestHelpListsEveryFlagWithItsEnvironmentVariableAndDefault(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, env(map[string]string{"AUTH_TOKEN": "secret"}), &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"-listen", "env RELAY_LISTEN, default 127.0.0.1:8080",
		"-auth-token", "env AUTH_TOKEN, default \"\"",
		"-keys-file", "env RELAY_KEYS_FILE",
		"-request-timeout", "env RELAY_REQUEST_TIMEOUT, default 1m0s",
		"-auth-timeout", "env RELAY_AUTH_TIMEOUT, default 10s",
		"-heartbeat-timeout", "env RELAY_HEARTBEAT_TIMEOUT, default 30s",
		"-max-sessions", "env RELAY_MAX_SESSIONS, default 10000",
		"-max-concurrent", "env RELAY_MAX_CONCURRENT, default 1024",
		"-max-body", "env RELAY_MAX_BODY, default 1073741824",
		"-tls-cert", "env RELAY_TLS_CERT", "-tls-key", "env RELAY_TLS_KEY",
		"-log-level", "env RELAY_LOG_LEVEL, default info",
		"-log-format", "env RELAY_LOG_FORMAT, default text",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "secret") {
		t.Error("help shows the key from the environment")
	}
}

func TestRunServesUntilCancelledThenExitsZero(t *testing.T) {
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"-listen", "127.0.0.1:0", "-log-format", "json"}, env(map[string]string{"AUTH_TOKEN": "the-secret-key"}), pw)
		pw.Close()
	}()
	var logs bytes.Buffer
	lines := bufio.NewScanner(pr)
	var addr string
	for addr == "" && lines.Scan() {
		logs.Write(append(lines.Bytes(), '\n'))
		var entry map[string]any
		if err := json.Unmarshal(lines.Bytes(), &entry); err != nil {
			t.Fatalf("log line is not JSON: %s", lines.Bytes())
		}
		if entry["msg"] == "Relay listening" {
			addr, _ = entry["addr"].(string)
		}
	}
	if addr == "" {
		t.Fatalf("no listening address in the logs:\n%s", logs.String())
	}
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %d", resp.StatusCode)
	}
	cancel()
	rest, _ := io.ReadAll(pr)
	logs.Write(rest)
	if code := <-exit; code != 0 {
		t.Fatalf("exit %d\n%s", code, logs.String())
	}
	if strings.Contains(logs.String(), "the-secret-key") {
		t.Fatalf("the key reached the log:\n%s", logs.String())
	}
}

func TestRunRefusesAnInvalidConfiguration(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-listen", "127.0.0.1:0"}, env(nil), &out); code != 1 {
		t.Fatalf("exit %d, want 1 (no key)", code)
	}
	if !strings.Contains(out.String(), "no API keys") {
		t.Fatalf("output %q", out.String())
	}
}
