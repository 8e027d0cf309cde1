package configfile

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type repeated struct{ list *[]string }

func (r repeated) String() string {
	if r.list == nil {
		return ""
	}
	return strings.Join(*r.list, " ")
}
func (r repeated) Set(v string) error { *r.list = append(*r.list, v); return nil }
func (r repeated) Reset()             { *r.list = nil }

type settings struct {
	listen  string
	maxBody int64
	hold    time.Duration
	verbose bool
	token   string
	peers   string
	routes  []string
	config  string
	extra   []string
}

func newSpec(s *settings, env map[string]string) Spec {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&s.config, "config", "", "")
	fs.StringVar(&s.listen, "listen", "127.0.0.1:1", "")
	fs.Int64Var(&s.maxBody, "max-body", 10, "")
	fs.DurationVar(&s.hold, "hold-timeout", time.Second, "")
	fs.BoolVar(&s.verbose, "verbose", false, "")
	fs.StringVar(&s.token, "auth-token", "", "")
	fs.StringVar(&s.peers, "peers", "", "")
	fs.Var(repeated{&s.routes}, "route", "")
	return Spec{
		FlagSet:    fs,
		ConfigFlag: "config",
		EnvName:    func(n string) string { return "T_" + strings.ToUpper(strings.ReplaceAll(n, "-", "_")) },
		Getenv:     func(n string) string { return env[n] },
		Secret:     func(n string) bool { return n == "auth-token" },
		Lists:      map[string]ListMode{"peers": Join, "route": Repeat},
		Aliases:    map[string]string{"routes": "route"},
		Structured: map[string]func(*File, Entry) error{"extra": func(f *File, e Entry) error {
			var err error
			s.extra, err = f.Strings(e.Value, e.Key)
			return err
		}},
	}
}

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	path := write(t, `# comment
listen: 0.0.0.0:80
max-body: 1048576
hold-timeout: 15s
verbose: true
peers: [a, b]
routes:
  - /a=http://x
  - /b=http://y
extra: [one, two]
`)
	var s settings
	res, err := Parse(newSpec(&s, map[string]string{"T_MAX_BODY": "7", "T_LISTEN": "env:1"}), []string{"-config", path, "-listen", "flag:1"})
	if err != nil {
		t.Fatal(err)
	}
	if s.listen != "flag:1" || s.maxBody != 7 || s.hold != 15*time.Second || !s.verbose || s.peers != "a,b" ||
		strings.Join(s.routes, " ") != "/a=http://x /b=http://y" || strings.Join(s.extra, " ") != "one two" {
		t.Errorf("got %+v", s)
	}
	want := Sources{"listen": FromFlag, "max-body": FromEnv, "hold-timeout": FromFile, "verbose": FromFile, "peers": FromFile, "route": FromFile, "config": FromFlag}
	for k, v := range want {
		if res.Sources[k] != v {
			t.Errorf("source of %s: got %v, want %v", k, res.Sources[k], v)
		}
	}
	if res.File == nil || res.File.Name != path {
		t.Errorf("file: %+v", res.File)
	}
}

func TestConfigFromEnvironmentAndRepeatableReplaced(t *testing.T) {
	path := write(t, "route: [/a=http://x, /b=http://y]\n")
	var s settings
	_, err := Parse(newSpec(&s, map[string]string{"T_CONFIG": path}), []string{"-route", "/c=http://z", "-route", "/d=http://w"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.routes, " "); got != "/c=http://z /d=http://w" {
		t.Errorf("routes: %q (the command line's should replace the file's)", got)
	}
	s = settings{}
	if _, err := Parse(newSpec(&s, map[string]string{"T_CONFIG": path, "T_ROUTE": "/e=http://v"}), nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.routes, " "); got != "/e=http://v" {
		t.Errorf("routes: %q (the environment's should replace the file's)", got)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want, notWant string
	}{
		{"bad value", "listen: a:1\n\nmax-body: x\n", `config.yaml:3: max-body: invalid value "x": parse error`, ""},
		{"unknown key", "listen: a:1\nmax-bdy: 3\n", "config.yaml:2: max-bdy: unknown key (did you mean max-body?)", ""},
		{"list for a scalar", "listen:\n  - a\n  - b\n", "config.yaml:2: listen: want a single value, got a list", ""},
		{"mapping for a list", "peers: {a: b}\n", "config.yaml:1: peers: want a value or a list of values, got a mapping", ""},
		{"secret not quoted", "auth-token: [hunter2hunter2]\n", "config.yaml:1: auth-token: want a single value", "hunter2"},
		{"duplicate", "listen: a:1\nlisten: b:2\n", "config.yaml:2: listen: given twice (first on line 1)", ""},
		{"alias and flag", "route: /a=http://x\nroutes: [/b=http://y]\n", "config.yaml:2: routes: sets what route already set", ""},
		{"config key", "config: other.yaml\n", "config.yaml:1: config: unknown key", ""},
		{"not a mapping", "- a\n- b\n", "config.yaml:1: want a mapping", ""},
		{"syntax", "listen: a:1\n  bad: [\n", "config.yaml:", ""},
		{"bad bool", "verbose: maybe\n", `config.yaml:1: verbose: invalid value "maybe"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, tc.text)
			var s settings
			_, err := Parse(newSpec(&s, nil), []string{"-config", path})
			if err == nil {
				t.Fatal("no error")
			}
			msg := strings.ReplaceAll(err.Error(), path, "config.yaml")
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want %q", msg, tc.want)
			}
			if tc.notWant != "" && strings.Contains(msg, tc.notWant) {
				t.Errorf("error %q quotes a secret", msg)
			}
		})
	}
}

func TestSecretFromEnvironmentNotQuoted(t *testing.T) {
	var s settings
	spec := newSpec(&s, map[string]string{"T_MAX_BODY": "hunter2"})
	spec.Secret = func(n string) bool { return n == "max-body" }
	_, err := Parse(spec, nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "T_MAX_BODY") {
		t.Errorf("error %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	var s settings
	_, err := Parse(newSpec(&s, nil), []string{"-nope"})
	if !IsUsage(err) {
		t.Errorf("unknown flag: %v is not a usage error", err)
	}
	_, err = Parse(newSpec(&s, nil), []string{"-h"})
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
	_, err = Parse(newSpec(&s, nil), []string{"-config", filepath.Join(t.TempDir(), "missing.yaml")})
	if err == nil || IsUsage(err) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n", "---\n"} {
		var s settings
		if _, err := Parse(newSpec(&s, nil), []string{"-config", write(t, text)}); err != nil {
			t.Errorf("%q: %v", text, err)
		}
	}
}

func TestPrescan(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("config", "", "")
	fs.Bool("v", false, "")
	fs.String("listen", "", "")
	for _, tc := range []struct {
		args   []string
		given  string
		config string
	}{
		{[]string{"-v", "-config", "a.yaml", "--listen=x"}, "v config listen", "a.yaml"},
		{[]string{"--config=b.yaml"}, "config", "b.yaml"},
		{[]string{"-v", "rest", "-config", "c"}, "v", ""},
		{[]string{"--", "-config", "c"}, "", ""},
		{[]string{"-v=false", "-config"}, "v", ""},
	} {
		given, config := prescan(fs, tc.args, "config")
		if strings.Join(given, " ") != tc.given || config != tc.config {
			t.Errorf("%q: got %q %q", tc.args, given, config)
		}
	}
}
