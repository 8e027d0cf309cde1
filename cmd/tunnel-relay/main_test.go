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
			return c.Listen == "127.0.0.1:8080" && c.AdminListen == "127.0.0.1:9091" && c.RequestTimeout == 60*time.Second &&
				c.AuthTimeout == 10*time.Second && c.HeartbeatTimeout == 30*time.Second && c.MaxSessions == 10000 &&
				c.MaxPending == 1000 && c.MaxPendingPerAddr == 32 && c.MaxConcurrent == 1024 && c.MaxBody == 1<<30 &&
				c.MaxHeaderBytes == 32<<10 && c.BodyTimeout == time.Minute && c.SendTimeout == time.Minute &&
				c.AuthReadLimit == 4096 && c.MaxReplyQueue == 1<<20 && c.MaxBuffered == 256<<20 && c.UpgradeRate == 10 &&
				c.UpgradeBurst == 50 && c.MaxAuthFailures == 20 && c.AuthFailureWindow == time.Minute &&
				len(c.TrustedProxies) == 0 && !c.ProxyProtocol && c.LogRate == 10 && o.logLevel == "info" && o.logFormat == "text" &&
				c.MaxSessionsPerTunnel == 16 && c.HoldTimeout == 15*time.Second && c.MaxHeld == 256 && c.MaxHeldBytes == 16<<20 &&
				c.RetryIdempotent && c.ResumeTimeout == 15*time.Second && !c.Pprof
		}, ""},
		{"pprof flag", []string{"-pprof"}, nil, func(o *options) bool { return o.relay.Pprof }, ""},
		{"no domain by default", nil, nil, func(o *options) bool { return o.relay.Domain == "" }, ""},
		{"domain flag", []string{"-domain", "relay.example"}, nil, func(o *options) bool { return o.relay.Domain == "relay.example" }, ""},
		{"domain from the environment", nil, map[string]string{"RELAY_DOMAIN": "tunnels.example.org"},
			func(o *options) bool { return o.relay.Domain == "tunnels.example.org" }, ""},
		{"domain flag beats environment", []string{"-domain", "a.example"}, map[string]string{"RELAY_DOMAIN": "b.example"},
			func(o *options) bool { return o.relay.Domain == "a.example" }, ""},
		{"pprof from the environment", nil, map[string]string{"RELAY_PPROF": "true"}, func(o *options) bool { return o.relay.Pprof }, ""},
		{"high availability flags", []string{"-max-sessions-per-tunnel", "4", "-hold-timeout", "0", "-max-held", "8", "-max-held-bytes", "1024", "-retry-idempotent=false", "-resume-timeout", "0"}, nil,
			func(o *options) bool {
				c := o.relay
				return c.MaxSessionsPerTunnel == 4 && c.HoldTimeout == 0 && c.MaxHeld == 8 && c.MaxHeldBytes == 1024 && !c.RetryIdempotent &&
					c.ResumeTimeout == 0
			}, ""},
		{"high availability from the environment", nil, map[string]string{"RELAY_MAX_SESSIONS_PER_TUNNEL": "2", "RELAY_HOLD_TIMEOUT": "3s",
			"RELAY_MAX_HELD": "9", "RELAY_MAX_HELD_BYTES": "99", "RELAY_RETRY_IDEMPOTENT": "false", "RELAY_RESUME_TIMEOUT": "4s"},
			func(o *options) bool {
				c := o.relay
				return c.MaxSessionsPerTunnel == 2 && c.HoldTimeout == 3*time.Second && c.MaxHeld == 9 && c.MaxHeldBytes == 99 && !c.RetryIdempotent &&
					c.ResumeTimeout == 4*time.Second
			}, ""},
		{"bad retry-idempotent in the environment", nil, map[string]string{"RELAY_RETRY_IDEMPOTENT": "maybe"}, nil, "RELAY_RETRY_IDEMPOTENT"},
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
		{"limits", []string{"-admin-listen", "", "-max-pending", "5", "-max-pending-per-addr", "2", "-body-timeout", "3s", "-send-timeout", "4s",
			"-max-header-bytes", "8192", "-auth-read-limit", "1024", "-max-reply-queue", "2048", "-max-buffered", "9", "-upgrade-rate", "0.5",
			"-upgrade-burst", "7", "-max-auth-failures", "6", "-auth-failure-window", "2m", "-read-limit", "65536", "-log-rate", "0",
			"-ping-interval", "5s", "-write-timeout", "6s"}, nil,
			func(o *options) bool {
				c := o.relay
				return c.AdminListen == "" && c.MaxPending == 5 && c.MaxPendingPerAddr == 2 && c.BodyTimeout == 3*time.Second &&
					c.SendTimeout == 4*time.Second && c.MaxHeaderBytes == 8192 && c.AuthReadLimit == 1024 && c.MaxReplyQueue == 2048 &&
					c.MaxBuffered == 9 && c.UpgradeRate == 0.5 && c.UpgradeBurst == 7 && c.MaxAuthFailures == 6 &&
					c.AuthFailureWindow == 2*time.Minute && c.ReadLimit == 65536 && c.LogRate == 0 &&
					c.PingInterval == 5*time.Second && c.WriteTimeout == 6*time.Second
			}, ""},
		{"trusted proxies", []string{"-trusted-proxies", "10.0.0.0/8, 192.0.2.7,2001:db8::/32,::ffff:198.51.100.0/120", "-proxy-protocol"}, nil,
			func(o *options) bool {
				var got []string
				for _, p := range o.relay.TrustedProxies {
					got = append(got, p.String())
				}
				return strings.Join(got, " ") == "10.0.0.0/8 192.0.2.7/32 2001:db8::/32 198.51.100.0/24" && o.relay.ProxyProtocol
			}, ""},
		{"trusted proxies from the environment", nil, map[string]string{"RELAY_TRUSTED_PROXIES": "127.0.0.1"},
			func(o *options) bool {
				return len(o.relay.TrustedProxies) == 1 && o.relay.TrustedProxies[0].String() == "127.0.0.1/32"
			}, ""},
		{"bad trusted proxy", []string{"-trusted-proxies", "10.0.0.0/8,lb.example"}, nil, nil, `"lb.example" is neither`},
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
	if code := run(context.Background(), []string{"-h"}, env(map[string]string{"AUTH_TOKEN": secretKey, "RELAY_CLUSTER_SECRET": secretKey + "-cluster"}), &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"-listen", "env RELAY_LISTEN, default 127.0.0.1:8080",
		"-auth-token", "env AUTH_TOKEN, default \"\"",
		"-keys-file", "env RELAY_KEYS_FILE",
		"-domain", "env RELAY_DOMAIN, default \"\"",
		"-request-timeout", "env RELAY_REQUEST_TIMEOUT, default 1m0s",
		"-auth-timeout", "env RELAY_AUTH_TIMEOUT, default 10s",
		"-heartbeat-timeout", "env RELAY_HEARTBEAT_TIMEOUT, default 30s",
		"-max-sessions", "env RELAY_MAX_SESSIONS, default 10000",
		"-max-concurrent", "env RELAY_MAX_CONCURRENT, default 1024",
		"-max-sessions-per-tunnel", "env RELAY_MAX_SESSIONS_PER_TUNNEL, default 16",
		"-hold-timeout", "env RELAY_HOLD_TIMEOUT, default 15s",
		"-max-held", "env RELAY_MAX_HELD, default 256",
		"-max-held-bytes", "env RELAY_MAX_HELD_BYTES, default 16777216",
		"-retry-idempotent", "env RELAY_RETRY_IDEMPOTENT, default true",
		"-max-body", "env RELAY_MAX_BODY, default 1073741824",
		"-tls-cert", "env RELAY_TLS_CERT", "-tls-key", "env RELAY_TLS_KEY",
		"-log-level", "env RELAY_LOG_LEVEL, default info",
		"-log-format", "env RELAY_LOG_FORMAT, default text",
		"-cluster", "env RELAY_CLUSTER, default \"\"",
		"-cluster-provider", "env RELAY_CLUSTER_PROVIDER, default etcd",
		"-etcd-endpoints", "env RELAY_ETCD_ENDPOINTS, default 127.0.0.1:2379",
		"-cluster-peers", "env RELAY_CLUSTER_PEERS",
		"-cluster-listen", "env RELAY_CLUSTER_LISTEN, default 127.0.0.1:7946",
		"-internal-listen", "env RELAY_INTERNAL_LISTEN, default 127.0.0.1:7947",
		"-cluster-secret", "env RELAY_CLUSTER_SECRET, default \"\"",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if strings.Contains(out.String(), secretKey) {
		t.Error("help shows a key or the cluster secret from the environment")
	}
}

// secretKey is a key strong enough for the relay, that no log may show.
const secretKey = "the-secret-key-c2VjcmV0IGtleQ"

func TestRunServesUntilCancelledThenExitsZero(t *testing.T) {
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-log-format", "json"}, env(map[string]string{"AUTH_TOKEN": secretKey}), pw)
		pw.Close()
	}()
	var logs bytes.Buffer
	lines := bufio.NewScanner(pr)
	var addr, admin string
	for addr == "" && lines.Scan() {
		logs.Write(append(lines.Bytes(), '\n'))
		var entry map[string]any
		if err := json.Unmarshal(lines.Bytes(), &entry); err != nil {
			t.Fatalf("log line is not JSON: %s", lines.Bytes())
		}
		if entry["msg"] == "Relay listening" {
			addr, _ = entry["addr"].(string)
			admin, _ = entry["admin_addr"].(string)
		}
	}
	if addr == "" || admin == "" {
		t.Fatalf("no listening addresses in the logs:\n%s", logs.String())
	}
	resp, err := http.Get("http://" + admin + "/health")
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
	if strings.Contains(logs.String(), secretKey) {
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

func TestRunRefusesADomainThatIsNotADNSName(t *testing.T) {
	for _, domain := range []string{"relay_example.com", "-relay.example", "relay..example", "192.0.2.1", "relay.example:8080"} {
		var out bytes.Buffer
		code := run(context.Background(), []string{"-listen", "127.0.0.1:0", "-admin-listen", "", "-domain", domain}, env(map[string]string{"AUTH_TOKEN": secretKey}), &out)
		if code != 1 || !strings.Contains(out.String(), "Domain must be a DNS name") {
			t.Errorf("-domain %q: exit %d, output %q; want 1 and the reason", domain, code, out.String())
		}
	}
}
