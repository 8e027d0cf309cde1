package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "supervisor.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFilePrecedence(t *testing.T) {
	path := writeConfig(t, `relays:
  - ws://relay-a:8080/tunnel
  - ws://relay-b:8080/tunnel
connections: 4
heartbeat-interval: 5s
retry-delay: 2s
tunnel: tts
routes:
  - /v1=http://127.0.0.1:8001
  - api.example.com/=http://127.0.0.1:8002,strip
`)
	vars := map[string]string{"TUNNEL_CONFIG": path, "TUNNEL_API_KEY": secret, "TUNNEL_RETRY_DELAY": "3s", "TUNNEL_CONNECTIONS": "3"}
	o, err := parseOptions([]string{"-connections", "5"}, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tc := o.agent.Tunnel
	if strings.Join(tc.URLs(), " ") != "ws://relay-a:8080/tunnel ws://relay-b:8080/tunnel" || tc.Connections != 5 ||
		tc.HeartbeatInterval != 5*time.Second || tc.RetryDelay != 3*time.Second || tc.Tunnel != "tts" || tc.APIKey != secret ||
		len(o.agent.Routes) != 2 || !o.agent.Routes[1].Strip || o.agent.Routes[1].Host != "api.example.com" {
		t.Errorf("got %+v, routes %v", tc, o.agent.Routes)
	}
	// With rules and no forward, there is no catch-all, as with -route.
	if o.agent.Forward != "" {
		t.Errorf("forward %q", o.agent.Forward)
	}
	if o.file != path || o.sources["connections"].String() != "flag" || o.sources["retry-delay"].String() != "env" || o.sources["heartbeat-interval"].String() != "file" {
		t.Errorf("file %q, sources %v", o.file, o.sources)
	}

	// The command line's -route replaces the file's rules.
	o, err = parseOptions([]string{"-config", path, "-route", "/x=http://127.0.0.1:9"}, env(map[string]string{"TUNNEL_API_KEY": secret}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.agent.Routes) != 1 || o.agent.Routes[0].Prefix != "/x" {
		t.Errorf("routes %v", o.agent.Routes)
	}
}

func TestConfigFileKeySources(t *testing.T) {
	keyFile := writeFile(t, "key", "file-key\n")
	path := writeConfig(t, "relay-url: ws://relay:8080/tunnel\napi-key-file: "+keyFile+"\n")
	// The environment's key wins over the file's key file.
	o, err := parseOptions([]string{"-config", path}, env(map[string]string{"TUNNEL_API_KEY": secret}), io.Discard)
	if err != nil || o.agent.Tunnel.APIKey != secret {
		t.Errorf("env over file: %v", err)
	}
	// The file's key file alone.
	o, err = parseOptions([]string{"-config", path}, env(nil), io.Discard)
	if err != nil || o.agent.Tunnel.APIKey != "file-key" {
		t.Errorf("file: %v", err)
	}
	// Both ways in the file: an error.
	both := writeConfig(t, "relay-url: ws://relay:8080/tunnel\napi-key-file: "+keyFile+"\napi-key: "+secret+"\n")
	if _, err := parseOptions([]string{"-config", both}, env(nil), io.Discard); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("both: %v", err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"bad duration", "relays: [ws://r/tunnel]\n\nretry-delay: soon\n", `supervisor.yaml:3: retry-delay: invalid value "soon"`},
		{"unknown key", "relays: [ws://r/tunnel]\nrelay: ws://r/tunnel\n", "supervisor.yaml:2: relay: unknown key (did you mean"},
		{"relays and relay-url", "relays: [ws://r/tunnel]\nrelay-url: ws://r/tunnel\n", "supervisor.yaml:2: relay-url: sets what relays already set"},
		{"list for a scalar", "relays: [ws://r/tunnel]\ntunnel: [a, b]\n", "supervisor.yaml:2: tunnel: want a single value, got a list"},
		{"route object", "relays: [ws://r/tunnel]\nroutes:\n  - {prefix: /v1}\n", "supervisor.yaml:3: routes: want a list of single values"},
		{"bad route", "relays: [ws://r/tunnel]\nroutes: [nope]\n", "-route: invalid route"},
		{"secret wrong type", "relays: [ws://r/tunnel]\napi-key: {k: " + secret + "}\n", "supervisor.yaml:2: api-key: want a single value"},
		{"bad policy", "relays: [ws://r/tunnel]\nreconnect-policy: sometimes\n", "-reconnect-policy must be flat or exponential"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			_, err := parseOptions([]string{"-config", path}, env(map[string]string{"TUNNEL_API_KEY": "env-key-value"}), io.Discard)
			if err == nil {
				t.Fatal("no error")
			}
			msg := strings.ReplaceAll(err.Error(), filepath.Dir(path)+"/", "")
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want %q", msg, tc.want)
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, "env-key-value") {
				t.Errorf("error %q quotes a key", msg)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	good := writeConfig(t, "relays: [wss://user:pw@relay:443/tunnel]\nroutes: [/v1=http://u:pw2@127.0.0.1:8001]\nlisten: 127.0.0.1:0\n")
	var stdout, stderr bytes.Buffer
	code := run([]string{"check-config", "-config", good}, env(map[string]string{"TUNNEL_API_KEY": secret}), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"config OK", "wss://user:xxxxx@relay:443/tunnel", "/v1=http://u:xxxxx@127.0.0.1:8001", "api-key: <set> (env)", "listen: 127.0.0.1:0 (file)"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	for _, s := range []string{secret, ":pw@", ":pw2@"} {
		if strings.Contains(out, s) {
			t.Errorf("summary shows a secret %q:\n%s", s, out)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"no key", []string{"-config", good}, nil, 1, "missing API key"},
		{"bad file", []string{"-config", writeConfig(t, "connections: many\n")}, map[string]string{"TUNNEL_API_KEY": secret}, 1, ":1: connections: invalid value"},
		{"invalid", []string{"-config", good, "-heartbeat-timeout", "1s"}, map[string]string{"TUNNEL_API_KEY": secret}, 1, "HeartbeatTimeout"},
		{"bad listen", []string{"-config", good, "-listen", "nope"}, map[string]string{"TUNNEL_API_KEY": secret}, 1, "-listen"},
		{"unknown flag", []string{"-nope"}, nil, 2, "-nope"},
		{"stray argument", []string{"-config", good, "extra"}, map[string]string{"TUNNEL_API_KEY": secret}, 2, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"check-config"}, tc.args...), env(tc.env), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) || strings.Contains(stdout.String(), "config OK") {
				t.Errorf("exit %d (want %d), stderr %q", code, tc.code, stderr.String())
			}
		})
	}
}

var exampleKeyLine = regexp.MustCompile(`^#([a-z][a-z-]*): (.*)$`)

// TestExampleConfig checks deploy/supervisor.yaml: it passes check-config
// (the key from the environment), so does every key it shows commented
// out, and each of those shows the flag's default.
func TestExampleConfig(t *testing.T) {
	const example = "../../deploy/supervisor.yaml"
	vars := map[string]string{"TUNNEL_API_KEY": secret}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check-config", "-config", example}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("check-config %s: exit %d: %s", example, code, stderr.String())
	}
	text, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := parseOptions([]string{"-relay-url", "ws://r/tunnel"}, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var full strings.Builder
	shown := 0
	for line := range strings.Lines(string(text)) {
		m := exampleKeyLine.FindStringSubmatch(strings.TrimRight(line, "\n"))
		switch {
		case m == nil:
			full.WriteString(line)
			continue
		case m[1] == "routes" || m[1] == "api-key" || m[1] == "api-key-file":
			// Examples, or a second way of giving the key.
			full.WriteString(line)
			continue
		}
		shown++
		full.WriteString(line[1:])
		f := defaults.flags.Lookup(m[1])
		if f == nil {
			t.Errorf("%s shows %s, no flag", example, m[1])
			continue
		}
		o, err := parseOptions([]string{"-relay-url", "ws://r/tunnel"}, env(vars), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		v := strings.Trim(m[2], `"`)
		if err := o.flags.Set(m[1], v); err != nil {
			t.Errorf("%s: %v", m[1], err)
		} else if got := o.flags.Lookup(m[1]).Value.String(); got != f.DefValue {
			t.Errorf("%s shows %s: %s, the default is %s", example, m[1], m[2], f.DefValue)
		}
	}
	if shown < 15 {
		t.Errorf("%s shows %d keys commented out; is the pattern broken?", example, shown)
	}
	defaults.flags.VisitAll(func(f *flag.Flag) {
		shownAs := map[string]string{"relay-url": "relays", "route": "routes"}
		name := f.Name
		if alias, ok := shownAs[name]; ok {
			name = alias
		}
		if f.Name != "config" && !regexp.MustCompile(`(?m)^#?`+regexp.QuoteMeta(name)+`:`).MatchString(string(text)) {
			t.Logf("%s does not show -%s", example, f.Name)
		}
	})
	stderr.Reset()
	if code := run([]string{"check-config", "-config", writeConfig(t, full.String())}, env(vars), io.Discard, &stderr); code != 0 {
		t.Errorf("%s with every key set: exit %d: %s", example, code, stderr.String())
	}
}
