package main

// The config file (-config FILE, RELAY_CONFIG) and `tunnel-relay
// check-config`. The file is YAML: a key per flag, named as the flag
// (listen: 127.0.0.1:8080, max-body: 1048576, hold-timeout: 15s), and
// tunnels:, a map of tunnel name to its key and public access control:
//
//	tunnels:
//	  api:
//	    key-env: API_TUNNEL_KEY   # or key: ..., the supervisors' key
//	    bearer: [TOKEN, ...]       # the options of a keys file line
//	    basic: ["user:$2y$10$..."]
//	    allow: [10.0.0.0/8, 192.0.2.7]
//	    rate: 10/s
//	    burst: 20
//
// Each tunnel is checked as a line of -keys-file is (auth.ParseTunnels
// builds it), and merged with -keys-file and -auth-token: a tunnel named
// twice is an error. Precedence: flag, environment, file, default.

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
	"github.com/enhanced-tunnel/tunnel/internal/configfile"
)

// secretFlags hold secrets: their values are never quoted in errors nor
// shown by check-config.
var secretFlags = map[string]bool{"auth-token": true, "cluster-secret": true}

// configSpec maps the config file onto fs; tunnels: goes to o.relay.Tunnels.
func configSpec(fs *flag.FlagSet, getenv func(string) string, o *options) configfile.Spec {
	return configfile.Spec{
		FlagSet:    fs,
		ConfigFlag: "config",
		EnvName:    envName,
		Getenv:     func(name string) string { v, _ := lookup(getenv, name); return v },
		Secret:     func(name string) bool { return secretFlags[name] },
		Lists: map[string]configfile.ListMode{
			"trusted-proxies": configfile.Join, "etcd-endpoints": configfile.Join, "cluster-peers": configfile.Join,
		},
		Structured: map[string]func(*configfile.File, configfile.Entry) error{
			"tunnels": func(f *configfile.File, e configfile.Entry) error {
				tunnels, err := fileTunnels(f, e, getenv)
				o.relay.Tunnels = tunnels
				return err
			},
		},
	}
}

// tunnelOption is one option of a tunnel in the file, as a keys file
// writes it (name=value), with the node it came from.
type tunnelOption struct {
	name, value string
	node        *yaml.Node
}

var authField = regexp.MustCompile(`field (\d+): (.*)$`)

// fileTunnels reads tunnels: into the tunnels a keys file would give.
// Errors name the file, the line and the key, never a key or a token.
func fileTunnels(f *configfile.File, e configfile.Entry, getenv func(string) string) (map[string]auth.Tunnel, error) {
	entries, err := f.Entries(e.Value, e.Key)
	if err != nil {
		return nil, err
	}
	tunnels := make(map[string]auth.Tunnel, len(entries))
	for _, te := range entries {
		path := e.Key + "." + te.Key
		if !auth.ValidName(te.Key) {
			return nil, f.Errorf(te.KeyNo, path, "invalid tunnel name (letters, digits, '-', '_', '.'; at most %d)", auth.MaxNameLength)
		}
		fields, err := f.Entries(te.Value, path)
		if err != nil {
			return nil, err
		}
		var key string
		var keyNode *yaml.Node
		var opts []tunnelOption
		for _, fe := range fields {
			fp := path + "." + fe.Key
			switch fe.Key {
			case "key", "key-env":
				if keyNode != nil {
					return nil, f.Errorf(fe.KeyNo, fp, "give the key once: key or key-env")
				}
				v, err := f.Scalar(fe.Value, fp)
				if err != nil {
					return nil, err
				}
				keyNode = fe.KeyNo
				if fe.Key == "key-env" {
					if v == "" {
						return nil, f.Errorf(fe.KeyNo, fp, "name an environment variable")
					}
					name := v
					if v, _ = lookup(getenv, name); v == "" {
						return nil, f.Errorf(fe.KeyNo, fp, "the environment variable %s is not set", name)
					}
				}
				key = v
			case "bearer", "basic", "allow":
				items, err := f.Strings(fe.Value, fp)
				if err != nil {
					return nil, err
				}
				for _, v := range items {
					opts = append(opts, tunnelOption{fe.Key, v, fe.KeyNo})
				}
			case "rate", "burst":
				v, err := f.Scalar(fe.Value, fp)
				if err != nil {
					return nil, err
				}
				opts = append(opts, tunnelOption{fe.Key, v, fe.KeyNo})
			default:
				return nil, f.Errorf(fe.KeyNo, fp, "unknown key (key, key-env, bearer, basic, allow, rate, burst)")
			}
		}
		switch {
		case keyNode == nil:
			return nil, f.Errorf(te.KeyNo, path, "no key: give key (or key-env, the environment variable holding it)")
		case key == "":
			return nil, f.Errorf(keyNode, path+".key", "the key is empty")
		case strings.ContainsFunc(key, unicode.IsSpace):
			return nil, f.Errorf(keyNode, path+".key", "the key holds a space")
		}
		if bits := auth.KeyBits(key); bits < auth.MinKeyBits {
			return nil, f.Errorf(keyNode, path+".key", "the key is too weak: about %.0f bits, at least %d wanted (22 or more random characters, e.g. from `openssl rand -base64 24`)", bits, auth.MinKeyBits)
		}
		// One keys file line, parsed as -keys-file's are: the same checks,
		// the same auth.Tunnel.
		line := []string{te.Key, key}
		for _, o := range opts {
			if strings.ContainsFunc(o.value, unicode.IsSpace) {
				return nil, f.Errorf(o.node, path+"."+o.name, "a value holds a space")
			}
			line = append(line, o.name+"="+o.value)
		}
		parsed, err := auth.ParseTunnels(strings.NewReader(strings.Join(line, " ")))
		if err != nil {
			msg, node, key := err.Error(), te.KeyNo, path
			if m := authField.FindStringSubmatch(msg); m != nil {
				if i, _ := strconv.Atoi(m[1]); i >= 3 && i-3 < len(opts) {
					o := opts[i-3]
					node, key, msg = o.node, path+"."+o.name, strings.TrimPrefix(m[2], o.name+": ")
				}
			} else if _, rest, found := strings.Cut(msg, "): "); found {
				msg = rest
			}
			return nil, f.Errorf(node, key, "%s", msg)
		}
		tunnels[te.Key] = parsed[te.Key]
	}
	return tunnels, nil
}

// checkConfig is `tunnel-relay check-config [flags]`: it reads the flags,
// the environment and the config file as a start would, validates the
// result as relay.Start would (keys files read, TLS files loaded), starts
// nothing, and prints "config OK" and a summary without secrets (exit 0),
// or the problem (exit 1; 2 for a mistake on the command line).
func checkConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := parse(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case configfile.IsUsage(err):
		fmt.Fprintf(stderr, "tunnel-relay check-config: %v\n", err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "tunnel-relay check-config: %v\n", err)
		return 1
	}
	if err := o.relay.Validate(); err != nil {
		fmt.Fprintf(stderr, "tunnel-relay check-config: %v\n", err)
		return 1
	}
	if c := o.relay; c.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			fmt.Fprintf(stderr, "tunnel-relay check-config: -tls-cert/-tls-key: %v\n", err)
			return 1
		}
	}
	fmt.Fprintln(stdout, "config OK")
	printSummary(stdout, o)
	return 0
}

// printSummary lists the tunnels and the settings that are not defaults,
// with their source; secrets show as <set>.
func printSummary(w io.Writer, o *options) {
	file := "none"
	if o.file != "" {
		file = o.file
	}
	fmt.Fprintf(w, "config file: %s\n", file)
	c := o.relay
	access := map[string]string{}
	if c.KeysFile != "" {
		if tunnels, err := auth.LoadTunnelsFile(c.KeysFile); err == nil {
			for name, t := range tunnels {
				access[name] = "keys-file " + t.Access.String()
			}
		}
	}
	if c.AuthToken != "" {
		access["default"] = "auth-token {open}"
	}
	for name, t := range c.Tunnels {
		access[name] = "config file " + t.Access.String()
	}
	fmt.Fprintln(w, "tunnels:")
	for _, name := range slices.Sorted(maps.Keys(access)) {
		fmt.Fprintf(w, "  %s: %s\n", name, access[name])
	}
	fmt.Fprintf(w, "listen: %s, admin: %q", c.Listen, c.AdminListen)
	if c.Fleet.Name != "" {
		fmt.Fprintf(w, ", cluster %s (%s)", c.Fleet.Name, c.Fleet.Provider)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "settings (not defaults):")
	for _, name := range slices.Sorted(maps.Keys(o.sources)) {
		if name == "config" {
			continue
		}
		v := "<set>"
		if !secretFlags[name] {
			v = o.flags.Lookup(name).Value.String()
		}
		fmt.Fprintf(w, "  %s: %s (%s)\n", name, v, o.sources[name])
	}
}

// configHelp is the -config flag's usage.
const configHelp = "YAML file of settings: a key per flag, named as the flag (listen: 127.0.0.1:8080), and tunnels: (name: {key or key-env, bearer, basic, allow, rate, burst}); flags and the environment win over it"
