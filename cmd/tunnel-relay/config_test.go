package main

import (
	"bytes"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Keys and tokens of 128 bits and more (auth.MinKeyBits).
const (
	keyDefault = "Zq8pL2vX9mR4tY7wK1nB3cD6"
	keyAPI     = "Hj5Gf8Ds2Aq9Wk4Lp7Mn1Bv3"
	keyWeb     = "Xr4Tz8Qm2Wn6Vb1Yc5Lk9Jh3"
	tokenAPI   = "Bt7Kp2Xw9Qz4Lm8Nc3Vr6Ys1"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFilePrecedence(t *testing.T) {
	path := writeConfig(t, `listen: 127.0.0.1:0
max-body: 1048576
hold-timeout: 5s
cluster: edge
cluster-provider: automanaged
cluster-peers: [127.0.0.1:7001, 127.0.0.1:7002]
trusted-proxies:
  - 10.0.0.0/8
  - 192.0.2.7
retry-idempotent: false
log-level: debug
`)
	vars := map[string]string{"RELAY_CONFIG": path, "RELAY_MAX_BODY": "2048", "RELAY_HOLD_TIMEOUT": "7s"}
	o, err := parse([]string{"-hold-timeout", "9s"}, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := o.relay
	if c.Listen != "127.0.0.1:0" || c.MaxBody != 2048 || c.HoldTimeout != 9*time.Second || c.Fleet.Name != "edge" ||
		c.Fleet.Provider != "automanaged" || strings.Join(c.Fleet.Peers, ",") != "127.0.0.1:7001,127.0.0.1:7002" ||
		len(c.TrustedProxies) != 2 || c.TrustedProxies[1] != netip.MustParsePrefix("192.0.2.7/32") || c.RetryIdempotent ||
		o.logLevel != "debug" {
		t.Errorf("got %+v", c)
	}
	// Untouched settings keep their defaults.
	if c.MaxSessions != 10000 || c.RequestTimeout != time.Minute {
		t.Errorf("defaults lost: %+v", c)
	}
	if o.file != path || o.sources["listen"].String() != "file" || o.sources["max-body"].String() != "env" || o.sources["hold-timeout"].String() != "flag" {
		t.Errorf("file %q, sources %v", o.file, o.sources)
	}
}

func TestConfigFileTunnels(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, `tunnels:
  api:
    key-env: API_KEY
    bearer: [`+tokenAPI+`]
    basic: ["alice:`+string(hash)+`"]
    allow: [10.0.0.0/8, 192.0.2.7]
    rate: 10/s
    burst: 20
  web:
    key: `+keyWeb+`
`)
	o, err := parse([]string{"-config", path}, env(map[string]string{"API_KEY": keyAPI, "AUTH_TOKEN": keyDefault}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.relay.Validate(); err != nil {
		t.Fatal(err)
	}
	api, web := o.relay.Tunnels["api"], o.relay.Tunnels["web"]
	a := api.Access
	if api.Key != keyAPI || web.Key != keyWeb || web.Access.Restricted() || !a.HasBearer() || !a.HasBasic() ||
		a.Rate != 10 || a.Burst != 20 || len(a.Allow) != 2 || !a.CheckBearer(tokenAPI) || !a.CheckBasic("alice", "password") ||
		!a.AllowsAddr(netip.MustParseAddr("10.1.2.3")) || a.AllowsAddr(netip.MustParseAddr("192.0.2.8")) {
		t.Errorf("api %v, web %v", api, web)
	}

	// A tunnel named in the file and by -auth-token is an error.
	dup := writeConfig(t, "tunnels:\n  default:\n    key: "+keyAPI+"\n")
	o, err = parse([]string{"-config", dup}, env(map[string]string{"AUTH_TOKEN": keyDefault}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.relay.Validate(); err == nil || !strings.Contains(err.Error(), `"default"`) {
		t.Errorf("tunnel named twice: %v", err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	secrets := []string{keyDefault, keyAPI, tokenAPI, "weakkey", "weaktoken", "clustersecretvalue"}
	for _, tc := range []struct {
		name, text, want string
		env              map[string]string
	}{
		{"bad value", "listen: 127.0.0.1:0\n\n# c\nmax-body: x\n", `relay.yaml:4: max-body: invalid value "x": parse error`, nil},
		{"bad duration", "hold-timeout: soon\n", `relay.yaml:1: hold-timeout: invalid value "soon"`, nil},
		{"unknown key", "max-bodyy: 3\n", "relay.yaml:1: max-bodyy: unknown key (did you mean max-body?)", nil},
		{"list for a scalar", "listen: [a, b]\n", "relay.yaml:1: listen: want a single value, got a list", nil},
		{"secret flag wrong type", "auth-token: [" + keyDefault + "]\n", "relay.yaml:1: auth-token: want a single value", nil},
		{"bad trusted proxy", "trusted-proxies: [10.0.0.0/8, nope]\n", `relay.yaml:1: trusted-proxies: invalid value "10.0.0.0/8,nope"`, nil},
		{"tunnels not a mapping", "tunnels: [a]\n", "relay.yaml:1: tunnels: want a mapping", nil},
		{"bad tunnel name", "tunnels:\n  'a b':\n    key: " + keyAPI + "\n", "relay.yaml:2: tunnels.a b: invalid tunnel name", nil},
		{"no key", "tunnels:\n  api:\n    rate: 1/s\n", "relay.yaml:2: tunnels.api: no key", nil},
		{"weak key", "tunnels:\n  api:\n    key: weakkey\n", "relay.yaml:3: tunnels.api.key: the key is too weak", nil},
		{"unset key-env", "tunnels:\n  api:\n    key-env: NOPE\n", "relay.yaml:3: tunnels.api.key-env: the environment variable NOPE is not set", nil},
		{"weak bearer", "tunnels:\n  api:\n    key: " + keyAPI + "\n    bearer:\n      - weaktoken\n", "relay.yaml:4: tunnels.api.bearer: the token is too weak", nil},
		{"bad allow", "tunnels:\n  api:\n    key: " + keyAPI + "\n    allow: [10.0.0.0/8]\n    rate: fast\n", "relay.yaml:5: tunnels.api.rate: want N/s", nil},
		{"burst without rate", "tunnels:\n  api:\n    key: " + keyAPI + "\n    burst: 3\n", "relay.yaml:2: tunnels.api: burst without rate", nil},
		{"unknown tunnel key", "tunnels:\n  api:\n    key: " + keyAPI + "\n    token: x\n", "relay.yaml:4: tunnels.api.token: unknown key", nil},
		{"key given twice", "tunnels:\n  api:\n    key: " + keyAPI + "\n    key-env: API_KEY\n", "relay.yaml:4: tunnels.api.key-env: give the key once", nil},
		{"duplicate key", "listen: a:1\nmax-body: 1\nlisten: b:2\n", "relay.yaml:3: listen: given twice (first on line 1)", nil},
		{"yaml syntax", "listen: a:1\nmax-body: 2\n  log-level: 3\n", "relay.yaml:3: mapping values are not allowed", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			_, err := parse([]string{"-config", path}, env(tc.env), io.Discard)
			if err == nil {
				t.Fatal("no error")
			}
			msg := strings.ReplaceAll(err.Error(), filepath.Dir(path)+"/", "")
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want %q", msg, tc.want)
			}
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("error %q quotes a secret", msg)
				}
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	good := writeConfig(t, "listen: 127.0.0.1:0\nadmin-listen: \"\"\ncluster-secret: clustersecretvalue\ntunnels:\n  api:\n    key: "+keyAPI+"\n    rate: 5/s\n")
	var stdout, stderr bytes.Buffer
	code := checkConfig([]string{"-config", good}, env(map[string]string{"AUTH_TOKEN": keyDefault}), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"config OK", "api: config file {rate: 5/s, burst 5}", "default: auth-token", "listen: 127.0.0.1:0 (file)", "cluster-secret: <set> (file)"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	for _, s := range []string{keyAPI, keyDefault, "clustersecretvalue"} {
		if strings.Contains(out, s) {
			t.Errorf("summary shows a secret:\n%s", out)
		}
	}

	bad := writeConfig(t, "listen: 127.0.0.1:0\nmax-body: -1\n")
	stdout.Reset()
	stderr.Reset()
	if code := checkConfig([]string{"-config", bad}, env(map[string]string{"AUTH_TOKEN": keyDefault}), &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "MaxBody") || stdout.Len() != 0 {
		t.Errorf("invalid setting: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stderr.Reset()
	if code := checkConfig([]string{"-config", good}, env(nil), io.Discard, &stderr); code != 0 {
		t.Errorf("no AUTH_TOKEN is fine (api has a key), got exit %d: %s", code, stderr.String())
	}
	stderr.Reset()
	if code := checkConfig([]string{"-listen", "127.0.0.1:0"}, env(nil), io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "no API keys") {
		t.Errorf("no key at all: exit %d: %s", code, stderr.String())
	}
	stderr.Reset()
	if code := checkConfig([]string{"-config", writeConfig(t, "max-body: x\n")}, env(nil), io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), ":1: max-body:") {
		t.Errorf("bad file: exit %d: %s", code, stderr.String())
	}
	stderr.Reset()
	if code := checkConfig([]string{"-nope"}, env(nil), io.Discard, &stderr); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
	if code := checkConfig([]string{"-config", good, "extra"}, env(nil), io.Discard, io.Discard); code != 2 {
		t.Errorf("stray argument: exit %d", code)
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	stderr.Reset()
	if code := checkConfig([]string{"-config", missing}, env(nil), io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "missing.yaml") {
		t.Errorf("missing file: exit %d: %s", code, stderr.String())
	}
	keys := writeConfig(t, "")
	stderr.Reset()
	if code := checkConfig([]string{"-keys-file", keys + ".nope"}, env(nil), io.Discard, &stderr); code != 1 {
		t.Errorf("unreadable keys file: exit %d: %s", code, stderr.String())
	}
}

// exampleKeyLine is a "#key: value" line of an example file: a key shown
// commented out with its default.
var exampleKeyLine = regexp.MustCompile(`^#([a-z][a-z-]*): (.*)$`)

// uncommented is an example file with every "#key: value" line set.
func uncommented(t *testing.T, text string) string {
	t.Helper()
	var b strings.Builder
	for line := range strings.Lines(text) {
		if exampleKeyLine.MatchString(strings.TrimRight(line, "\n")) {
			line = line[1:]
		}
		b.WriteString(line)
	}
	return b.String()
}

// TestExampleConfig checks deploy/relay.yaml: it passes check-config (the
// secrets from the environment), so does every key it shows commented out,
// and each of those shows the flag's default.
func TestExampleConfig(t *testing.T) {
	const example = "../../deploy/relay.yaml"
	vars := map[string]string{"AUTH_TOKEN": keyDefault, "API_TUNNEL_KEY": keyAPI}
	var stdout, stderr bytes.Buffer
	if code := checkConfig([]string{"-config", example}, env(vars), &stdout, &stderr); code != 0 {
		t.Fatalf("check-config %s: exit %d: %s", example, code, stderr.String())
	}
	text, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	// The commented tunnels: example is no default; the rest must be.
	defaults, err := parse(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	shown := 0
	for line := range strings.Lines(string(text)) {
		m := exampleKeyLine.FindStringSubmatch(strings.TrimRight(line, "\n"))
		if m == nil || m[1] == "tunnels" {
			continue
		}
		shown++
		f := defaults.flags.Lookup(m[1])
		if f == nil {
			t.Errorf("%s shows %s, no flag", example, m[1])
			continue
		}
		if got := valueOf(t, f, m[2]); got != f.DefValue {
			t.Errorf("%s shows %s: %s, the default is %s", example, m[1], m[2], f.DefValue)
		}
	}
	if shown < 40 {
		t.Errorf("%s shows %d keys commented out; is the pattern broken?", example, shown)
	}
	// Every flag is shown, set or commented out (but the config flag).
	defaults.flags.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" && !regexp.MustCompile(`(?m)^#?`+regexp.QuoteMeta(f.Name)+`:`).Match(text) {
			t.Logf("%s does not show -%s", example, f.Name)
		}
	})
	full := writeConfig(t, strings.Replace(uncommented(t, string(text)), "#tunnels:", "tunnels:", 1))
	// The uncommented tunnels: example has placeholders: leave it out.
	full = writeConfig(t, strings.Split(mustRead(t, full), "tunnels:")[0]+"\n"+strings.SplitN(mustRead(t, full), "# --- Timeouts ---", 2)[1])
	stderr.Reset()
	if code := checkConfig([]string{"-config", full}, env(vars), io.Discard, &stderr); code != 0 {
		t.Errorf("%s with every key set: exit %d: %s", example, code, stderr.String())
	}
}

// valueOf is how flag f shows value (durations and lists normalised).
func valueOf(t *testing.T, f *flag.Flag, value string) string {
	t.Helper()
	o, err := parse(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	value = strings.Trim(value, `"`)
	value = strings.Trim(value, "[]")
	if err := o.flags.Set(f.Name, value); err != nil {
		t.Errorf("-%s %q: %v", f.Name, value, err)
	}
	return o.flags.Lookup(f.Name).Value.String()
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
