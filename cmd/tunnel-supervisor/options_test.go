package main

import (
	"bytes"
	"encoding/pem"
	"errors"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/supervisor"
)

const secret = "s3cret-key-value"

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseOptions(t *testing.T) {
	keyFile := writeFile(t, "key", "  file-key\n")
	emptyFile := writeFile(t, "empty", "\n")
	srv := httptest.NewTLSServer(nil)
	srv.Close()
	caFile := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	notPEM := writeFile(t, "bad.pem", "not a certificate")
	base := map[string]string{"TUNNEL_RELAY_URL": "ws://relay:8080/tunnel", "TUNNEL_API_KEY": secret}
	with := func(kv map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range kv {
			m[k] = v
		}
		return m
	}

	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // part of the error; "" for none
		check   func(t *testing.T, o *options)
	}{
		{name: "defaults", env: base, check: func(t *testing.T, o *options) {
			want := supervisor.DefaultConfig()
			want.RelayURL, want.APIKey = "ws://relay:8080/tunnel", secret
			if o.agent.Tunnel.RelayURL != want.RelayURL || o.agent.Tunnel.RelayURLs != nil || o.agent.Tunnel.Connections != 2 ||
				o.agent.Tunnel.APIKey != want.APIKey || o.agent.Tunnel.Tunnel != "default" ||
				o.agent.Tunnel.HeartbeatInterval != 15*time.Second || o.agent.Tunnel.HeartbeatTimeout != 30*time.Second ||
				o.agent.Tunnel.ConnectTimeout != 10*time.Second || o.agent.Tunnel.RetryDelay != 10*time.Second ||
				o.agent.Tunnel.AuthRetryDelay != 30*time.Second || o.agent.Tunnel.BreakerThreshold != 5 ||
				o.agent.Tunnel.BreakerRecovery != 300*time.Second || o.agent.Tunnel.ReconnectPolicy != supervisor.Flat ||
				o.agent.Tunnel.MaxQueue != want.MaxQueue || o.agent.Tunnel.TLSConfig != nil {
				t.Errorf("tunnel config %+v", o.agent.Tunnel)
			}
			if o.agent.Forward != "http://127.0.0.1:8000" || o.listen != "127.0.0.1:9090" || o.agent.DrainTimeout != 30*time.Second ||
				o.logLevel != logrus.InfoLevel || o.jsonLogs {
				t.Errorf("options %+v", o)
			}
		}},
		{name: "env fallback", env: with(map[string]string{
			"TUNNEL_TUNNEL": "tts", "TUNNEL_FORWARD": "http://127.0.0.1:7000", "TUNNEL_LISTEN": "127.0.0.1:0",
			"TUNNEL_HEARTBEAT_INTERVAL": "1s", "TUNNEL_HEARTBEAT_TIMEOUT": "3s", "TUNNEL_CONNECT_TIMEOUT": "2s",
			"TUNNEL_RETRY_DELAY": "500ms", "TUNNEL_AUTH_RETRY_DELAY": "4s", "TUNNEL_BREAKER_THRESHOLD": "3",
			"TUNNEL_BREAKER_RECOVERY": "1m", "TUNNEL_RECONNECT_POLICY": "exponential", "TUNNEL_DRAIN_TIMEOUT": "0s",
			"TUNNEL_LOG_LEVEL": "debug", "TUNNEL_LOG_FORMAT": "json", "TUNNEL_CA_FILE": caFile,
		}), check: func(t *testing.T, o *options) {
			c := o.agent.Tunnel
			if c.Tunnel != "tts" || c.HeartbeatInterval != time.Second || c.HeartbeatTimeout != 3*time.Second ||
				c.ConnectTimeout != 2*time.Second || c.RetryDelay != 500*time.Millisecond || c.AuthRetryDelay != 4*time.Second ||
				c.BreakerThreshold != 3 || c.BreakerRecovery != time.Minute || c.ReconnectPolicy != supervisor.Exponential ||
				c.TLSConfig == nil || c.TLSConfig.RootCAs == nil {
				t.Errorf("tunnel config %+v", c)
			}
			if o.agent.Forward != "http://127.0.0.1:7000" || o.listen != "127.0.0.1:0" || o.agent.DrainTimeout != 0 ||
				o.logLevel != logrus.DebugLevel || !o.jsonLogs {
				t.Errorf("options %+v", o)
			}
		}},
		{name: "flag beats env", args: []string{"-retry-delay", "5s", "-tunnel", "flag", "-relay-url", "wss://other/tunnel"},
			env: with(map[string]string{"TUNNEL_RETRY_DELAY": "3s", "TUNNEL_TUNNEL": "env"}),
			check: func(t *testing.T, o *options) {
				if o.agent.Tunnel.RetryDelay != 5*time.Second || o.agent.Tunnel.Tunnel != "flag" || o.agent.Tunnel.RelayURL != "wss://other/tunnel" {
					t.Errorf("tunnel config %+v", o.agent.Tunnel)
				}
			}},
		{name: "key file by flag beats key in env", args: []string{"-api-key-file", keyFile}, env: base,
			check: func(t *testing.T, o *options) {
				if o.agent.Tunnel.APIKey != "file-key" {
					t.Errorf("APIKey %q, want the file's, trimmed", o.agent.Tunnel.APIKey)
				}
			}},
		{name: "key by flag beats key file in env", args: []string{"-api-key", "flag-key"},
			env: with(map[string]string{"TUNNEL_API_KEY": "", "TUNNEL_API_KEY_FILE": keyFile}),
			check: func(t *testing.T, o *options) {
				if o.agent.Tunnel.APIKey != "flag-key" {
					t.Errorf("APIKey %q", o.agent.Tunnel.APIKey)
				}
			}},
		{name: "key file from env", env: with(map[string]string{"TUNNEL_API_KEY": "", "TUNNEL_API_KEY_FILE": keyFile}),
			check: func(t *testing.T, o *options) {
				if o.agent.Tunnel.APIKey != "file-key" {
					t.Errorf("APIKey %q", o.agent.Tunnel.APIKey)
				}
			}},
		{name: "relay URL list", args: []string{"-relay-url", "wss://a/tunnel, wss://b/tunnel"}, env: base,
			check: func(t *testing.T, o *options) {
				c := o.agent.Tunnel
				if !slices.Equal(c.URLs(), []string{"wss://a/tunnel", "wss://b/tunnel"}) || c.Connections != 2 {
					t.Errorf("URLs %q, %d connections; want both URLs and 2", c.URLs(), c.Connections)
				}
			}},
		{name: "relay URL list from env", env: with(map[string]string{"TUNNEL_RELAY_URL": "wss://a/tunnel,wss://b/tunnel,wss://c/tunnel"}),
			check: func(t *testing.T, o *options) {
				c := o.agent.Tunnel
				if len(c.URLs()) != 3 || c.URLOf(2) != "wss://c/tunnel" || c.Connections != 3 {
					t.Errorf("URLs %q, %d connections; want 3 URLs and, unset, one connection each", c.URLs(), c.Connections)
				}
			}},
		{name: "connections by flag", args: []string{"-connections", "4", "-relay-url", "wss://a/tunnel,wss://b/tunnel,wss://c/tunnel"}, env: base,
			check: func(t *testing.T, o *options) {
				if c := o.agent.Tunnel; c.Connections != 4 || len(c.URLs()) != 3 {
					t.Errorf("%d connections to %q, want 4 to 3 URLs", c.Connections, c.URLs())
				}
			}},
		{name: "connections from env", env: with(map[string]string{"TUNNEL_CONNECTIONS": "1"}),
			check: func(t *testing.T, o *options) {
				if c := o.agent.Tunnel; c.Connections != 1 || c.RelayURL != "ws://relay:8080/tunnel" {
					t.Errorf("%d connections to %q, want 1", c.Connections, c.URLs())
				}
			}},
		{name: "connections set below the URLs", env: with(map[string]string{"TUNNEL_CONNECTIONS": "2", "TUNNEL_RELAY_URL": "ws://a/t,ws://b/t,ws://c/t"}),
			wantErr: "must be at least the number of relay URLs"},
		{name: "too many connections", args: []string{"-connections", "17"}, env: base, wantErr: "between 1 and 16"},
		{name: "zero connections", args: []string{"-connections", "0"}, env: base, wantErr: "between 1 and 16"},
		{name: "bad connections env", env: with(map[string]string{"TUNNEL_CONNECTIONS": "two"}), wantErr: "TUNNEL_CONNECTIONS"},
		{name: "empty URL in the list", args: []string{"-relay-url", "ws://a/t,,ws://b/t"}, env: base, wantErr: "empty URL"},
		{name: "http URL in the list", args: []string{"-relay-url", "ws://a/t,http://b/t"}, env: base, wantErr: "ws:// or wss://"},
		{name: "bad forward URL", args: []string{"-forward", "ftp://127.0.0.1/"}, env: base, wantErr: "http:// or https://"},
		{name: "bad duration flag", args: []string{"-retry-delay", "ten"}, env: base, wantErr: "retry-delay"},
		{name: "bad duration env", env: with(map[string]string{"TUNNEL_HEARTBEAT_TIMEOUT": "soon"}), wantErr: "TUNNEL_HEARTBEAT_TIMEOUT"},
		{name: "bad int env", env: with(map[string]string{"TUNNEL_BREAKER_THRESHOLD": "many"}), wantErr: "TUNNEL_BREAKER_THRESHOLD"},
		{name: "missing api key", env: map[string]string{"TUNNEL_RELAY_URL": "ws://relay/tunnel"}, wantErr: "missing API key"},
		{name: "key twice", args: []string{"-api-key", secret, "-api-key-file", keyFile}, env: base, wantErr: "not both"},
		{name: "empty key file", args: []string{"-api-key-file", emptyFile}, env: base, wantErr: "is empty"},
		{name: "missing key file", args: []string{"-api-key-file", "/nonexistent/key"}, env: base, wantErr: "api-key-file"},
		{name: "missing relay URL", env: map[string]string{"TUNNEL_API_KEY": secret}, wantErr: "RelayURL is empty"},
		{name: "http relay URL", args: []string{"-relay-url", "http://relay/tunnel"}, env: base, wantErr: "ws:// or wss://"},
		{name: "bad policy", args: []string{"-reconnect-policy", "random"}, env: base, wantErr: "flat or exponential"},
		{name: "timeout not above interval", args: []string{"-heartbeat-interval", "30s"}, env: base, wantErr: "HeartbeatTimeout"},
		{name: "zero breaker threshold", args: []string{"-breaker-threshold", "0"}, env: base, wantErr: "BreakerThreshold"},
		{name: "negative drain timeout", args: []string{"-drain-timeout", "-1s"}, env: base, wantErr: "drain-timeout"},
		{name: "bad CA file", args: []string{"-ca-file", notPEM}, env: base, wantErr: "no PEM certificate"},
		{name: "bad log level", args: []string{"-log-level", "loud"}, env: base, wantErr: "log-level"},
		{name: "bad log format", args: []string{"-log-format", "xml"}, env: base, wantErr: "text or json"},
		{name: "stray argument", args: []string{"extra"}, env: base, wantErr: "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, err := parseOptions(tc.args, env(tc.env), &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(stderr.String(), secret) {
					t.Fatalf("the API key leaked into the error: %v %s", err, stderr.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

func TestHelpListsEveryFlagWithItsEnvVarAndDefault(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parseOptions([]string{"-h"}, env(nil), &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	help := stderr.String()
	for _, want := range []string{
		"-relay-url URLs", "TUNNEL_RELAY_URL)", "-connections int", "TUNNEL_CONNECTIONS; default 2", "-api-key string", "TUNNEL_API_KEY)", "-api-key-file string",
		"TUNNEL_API_KEY_FILE", `TUNNEL_TUNNEL; default "default"`, `TUNNEL_FORWARD; default "http://127.0.0.1:8000"`,
		`TUNNEL_LISTEN; default "127.0.0.1:9090"`, "TUNNEL_HEARTBEAT_INTERVAL; default 15s",
		"TUNNEL_HEARTBEAT_TIMEOUT; default 30s", "TUNNEL_CONNECT_TIMEOUT; default 10s", "TUNNEL_RETRY_DELAY; default 10s",
		"TUNNEL_AUTH_RETRY_DELAY; default 30s", "TUNNEL_BREAKER_THRESHOLD; default 5", "TUNNEL_BREAKER_RECOVERY; default 5m0s",
		`TUNNEL_RECONNECT_POLICY; default "flat"`, "-ca-file string", "TUNNEL_CA_FILE", "TUNNEL_DRAIN_TIMEOUT; default 30s",
		`TUNNEL_LOG_LEVEL; default "info"`, `TUNNEL_LOG_FORMAT; default "text"`, "tunnel-supervisor status",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, env(nil), &stdout, &stderr); code != 0 {
		t.Errorf("-h exits %d, want 0", code)
	}
	stderr.Reset()
	if code := run([]string{"-relay-url", "ws://relay/tunnel"}, env(nil), &stdout, &stderr); code != 2 {
		t.Errorf("missing key exits %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "missing API key") {
		t.Errorf("stderr %q", stderr.String())
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRouteOptions(t *testing.T) {
	base := map[string]string{"TUNNEL_RELAY_URL": "ws://relay:8080/tunnel", "TUNNEL_API_KEY": secret}
	with := func(kv map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range kv {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name        string
		args        []string
		env         map[string]string
		wantRoutes  []string // each rule's String, in order
		wantForward string
		wantErr     string
	}{
		{name: "no route", env: base, wantForward: "http://127.0.0.1:8000"},
		{name: "repeated flag, no catch-all", env: base,
			args:       []string{"-route", "/v1/tts=http://127.0.0.1:8000", "-route", "/ws=ws://127.0.0.1:8001", "-route", "api.example.com/=unix:/run/api.sock"},
			wantRoutes: []string{"/v1/tts=http://127.0.0.1:8000", "/ws=ws://127.0.0.1:8001", "api.example.com/=unix:/run/api.sock"}},
		{name: "options, and -forward as the catch-all", env: base,
			args:       []string{"-route", "/v1=https://127.0.0.1:8443,insecure,strip", "-forward", "http://127.0.0.1:7000"},
			wantRoutes: []string{"/v1=https://127.0.0.1:8443,strip,insecure"}, wantForward: "http://127.0.0.1:7000"},
		{name: "env, separated by spaces and semicolons", env: with(map[string]string{
			"TUNNEL_ROUTE": "/a=http://127.0.0.1:1;/b=http://127.0.0.1:2,strip\n  *.example.com/=unix:/run/x.sock"}),
			wantRoutes: []string{"/a=http://127.0.0.1:1", "/b=http://127.0.0.1:2,strip", "*.example.com/=unix:/run/x.sock"}},
		{name: "env catch-all", env: with(map[string]string{"TUNNEL_ROUTE": "/a=http://127.0.0.1:1", "TUNNEL_FORWARD": "http://127.0.0.1:9"}),
			wantRoutes: []string{"/a=http://127.0.0.1:1"}, wantForward: "http://127.0.0.1:9"},
		{name: "flag beats env", args: []string{"-route", "/f=http://127.0.0.1:1"}, env: with(map[string]string{"TUNNEL_ROUTE": "/e=http://127.0.0.1:2"}),
			wantRoutes: []string{"/f=http://127.0.0.1:1"}},
		{name: "blank env", env: with(map[string]string{"TUNNEL_ROUTE": " ; "}), wantForward: "http://127.0.0.1:8000"},
		{name: "bad rule named", args: []string{"-route", "/a=http://127.0.0.1:1", "-route", "/b=ftp://127.0.0.1:2"}, env: base,
			wantErr: `-route: invalid route "/b=ftp://127.0.0.1:2"`},
		{name: "bad rule in env", env: with(map[string]string{"TUNNEL_ROUTE": "/a=http://127.0.0.1:1 nothing"}),
			wantErr: `invalid route "nothing"`},
		{name: "unknown option", args: []string{"-route", "/a=http://127.0.0.1:1,fast"}, env: base, wantErr: `unknown option "fast"`},
		{name: "password not repeated", args: []string{"-route", "/a=http://u:" + secret + "@127.0.0.1:1,fast"}, env: base,
			wantErr: `"/a=http://u:xxxxx@127.0.0.1:1,fast"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, err := parseOptions(tc.args, env(tc.env), &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(stderr.String(), secret) {
					t.Fatalf("a secret leaked into the error: %v %s", err, stderr.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range o.agent.Routes {
				got = append(got, r.String())
			}
			if !slices.Equal(got, tc.wantRoutes) || o.agent.Forward != tc.wantForward {
				t.Errorf("routes %q forward %q, want %q and %q", got, o.agent.Forward, tc.wantRoutes, tc.wantForward)
			}
		})
	}
}

func TestProxyOptions(t *testing.T) {
	base := map[string]string{"TUNNEL_RELAY_URL": "wss://relay.example:443/tunnel,ws://relay.example:80/tunnel", "TUNNEL_API_KEY": secret}
	with := func(kv map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range kv {
			m[k] = v
		}
		return m
	}
	corp := map[string]string{"HTTPS_PROXY": "http://s-proxy:3128", "HTTP_PROXY": "http://h-proxy:3128"}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantWSS   string // the proxy for the wss:// relay; "" for direct
		wantWS    string // for the ws:// relay
		wantErr   string
		relayURLs string // replaces TUNNEL_RELAY_URL when set
	}{
		{name: "no proxy", env: base},
		{name: "HTTPS_PROXY and HTTP_PROXY", env: with(corp), wantWSS: "http://s-proxy:3128", wantWS: "http://h-proxy:3128"},
		{name: "lower case names", env: with(map[string]string{"https_proxy": "http://lower:1"}), wantWSS: "http://lower:1"},
		{name: "upper case first", env: with(map[string]string{"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1"}), wantWSS: "http://upper:1"},
		{name: "scheme-less proxy is http", env: with(map[string]string{"HTTPS_PROXY": "s-proxy:3128"}), wantWSS: "http://s-proxy:3128"},
		{name: "NO_PROXY", env: with(map[string]string{"HTTPS_PROXY": "http://s-proxy:3128", "NO_PROXY": "other.example,.example"})},
		{name: "NO_PROXY of another host", env: with(map[string]string{"HTTPS_PROXY": "http://s-proxy:3128", "no_proxy": "other.example"}),
			wantWSS: "http://s-proxy:3128"},
		{name: "loopback relays are direct", env: with(map[string]string{"HTTPS_PROXY": "http://s-proxy:3128", "TUNNEL_RELAY_URL": "wss://127.0.0.1:8443/tunnel,ws://localhost:80/tunnel"})},
		{name: "-proxy wins over the environment", args: []string{"-proxy", "http://user:pw@flag-proxy:8080"},
			env:     with(map[string]string{"HTTPS_PROXY": "http://s-proxy:3128", "NO_PROXY": "relay.example"}),
			wantWSS: "http://user:pw@flag-proxy:8080", wantWS: "http://user:pw@flag-proxy:8080"},
		{name: "TUNNEL_PROXY", env: with(map[string]string{"TUNNEL_PROXY": "socks5://socks:1080", "HTTPS_PROXY": "http://s-proxy:3128"}),
			wantWSS: "socks5://socks:1080", wantWS: "socks5://socks:1080"},
		{name: "-proxy beats TUNNEL_PROXY", args: []string{"-proxy", "http://flag:1"}, env: with(map[string]string{"TUNNEL_PROXY": "http://env:1"}),
			wantWSS: "http://flag:1", wantWS: "http://flag:1"},
		{name: "-proxy direct", args: []string{"-proxy", "direct"}, env: with(corp)},
		{name: "TUNNEL_PROXY none", env: with(map[string]string{"TUNNEL_PROXY": "none", "HTTPS_PROXY": "http://s-proxy:3128"})},
		{name: "https proxy refused", args: []string{"-proxy", "https://u:" + secret + "@p:1"}, env: base,
			wantErr: "-proxy: tunnel: invalid config: proxy https://u:xxxxx@p:1: want http://"},
		{name: "proxy without a scheme refused", args: []string{"-proxy", "p:3128"}, env: base, wantErr: "want http://"},
		{name: "proxy with a path refused", args: []string{"-proxy", "http://p:1/x"}, env: base, wantErr: "only a scheme, host and port"},
		{name: "unparsable proxy", args: []string{"-proxy", "http://u:" + secret + "@[::1"}, env: base, wantErr: "does not parse"},
		{name: "unsupported proxy in the environment", env: with(map[string]string{"HTTPS_PROXY": "https://u:" + secret + "@p:1"}),
			wantErr: "proxy https://u:xxxxx@p:1: only http:// and socks5://"},
		{name: "unparsable proxy in the environment", env: with(map[string]string{"HTTPS_PROXY": "http://u:" + secret + "@p:1\x7f"}),
			wantErr: "the proxy for relay URL 0 is not a valid URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, err := parseOptions(tc.args, env(tc.env), &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(stderr.String(), secret) {
					t.Fatalf("a secret leaked into the error: %v %s", err, stderr.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := o.agent.Tunnel
			for i, want := range []string{tc.wantWSS, tc.wantWS} {
				u, err := c.ProxyFor(c.URLOf(i))
				got := ""
				if u != nil {
					got = u.String()
				}
				if err != nil || got != want {
					t.Errorf("proxy for %s = %q (%v), want %q", c.URLOf(i), got, err, want)
				}
			}
		})
	}
}

func TestHelpListsRouteAndProxy(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parseOptions([]string{"-h"}, env(nil), &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-route rule", "[HOST]/PREFIX=URL[,strip][,insecure]", "TUNNEL_ROUTE)", "-proxy URL", "TUNNEL_PROXY)", "direct or none"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestBadRouteExits2(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-relay-url", "ws://relay/tunnel", "-api-key", "k", "-route", "/v1=http://127.0.0.1:1,insecure"}, env(nil), &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), `invalid route "/v1=http://127.0.0.1:1,insecure"`) {
		t.Errorf("exit %d, stderr %q; want 2 naming the rule", code, stderr.String())
	}
}
