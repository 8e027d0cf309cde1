package main

// The config file (-config FILE, TUNNEL_CONFIG) and `tunnel-supervisor
// check-config`. The file is YAML: a key per flag, named as the flag
// (connections: 2, heartbeat-interval: 15s, forward: http://127.0.0.1:8000),
// plus relays:, a list of relay URLs (the same as relay-url), and routes:,
// a list of ingress rules, each a string in the -route syntax
// ([HOST]/PREFIX=URL[,strip][,insecure]). Precedence: flag, environment,
// file, default.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"

	"github.com/enhanced-tunnel/tunnel/internal/configfile"
)

// secretFlags hold secrets: their values are never quoted in errors nor
// shown by check-config.
var secretFlags = map[string]bool{"api-key": true}

// configHelp is the -config flag's usage.
const configHelp = "YAML `file` of settings: a key per flag, named as the flag (connections: 2), relays: (list of URLs) and routes: (list of -route rules); flags and the environment win over it"

// configSpec maps the config file onto fs.
func configSpec(fs *flag.FlagSet, getenv func(string) string) configfile.Spec {
	return configfile.Spec{
		FlagSet:    fs,
		ConfigFlag: "config",
		EnvName:    envName,
		Getenv:     getenv,
		Secret:     func(name string) bool { return secretFlags[name] },
		Lists:      map[string]configfile.ListMode{"relay-url": configfile.Join, "route": configfile.Repeat},
		Aliases:    map[string]string{"relays": "relay-url", "routes": "route"},
	}
}

// Reset empties the rules: a source of higher precedence (the environment,
// the command line) replaces the file's rules rather than adding to them.
func (l ruleList) Reset() { *l.specs = nil }

// keepOneKeySource drops the API key of a source of lower precedence when
// another gives the key the other way (-api-key-file over a TUNNEL_API_KEY,
// TUNNEL_API_KEY over the file's api-key-file): the two ways go together.
func keepOneKeySource(sources configfile.Sources, apiKey, apiKeyFile *string) {
	key, file := sources["api-key"], sources["api-key-file"]
	switch {
	case key < file:
		*apiKey = ""
	case file < key:
		*apiKeyFile = ""
	}
}

// checkConfig is `tunnel-supervisor check-config [flags]`: it reads the
// flags, the environment and the config file as a start would, validates
// the result as agent.Start would (the API key file and CA file read, the
// rules parsed, the relay URLs and proxies judged), connects to nothing,
// listens on nothing, and prints "config OK" and a summary without secrets
// (exit 0), or the problem (exit 1; 2 for a mistake on the command line).
func checkConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case configfile.IsUsage(err):
		fmt.Fprintf(stderr, "tunnel-supervisor check-config: %v\n", err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "tunnel-supervisor check-config: %v\n", err)
		return 1
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		fmt.Fprintf(stderr, "tunnel-supervisor check-config: -listen: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "config OK")
	printSummary(stdout, o)
	return 0
}

// printSummary shows what the supervisor would run with, passwords in URLs
// redacted and the API key left out.
func printSummary(w io.Writer, o *options) {
	file := "none"
	if o.file != "" {
		file = o.file
	}
	fmt.Fprintf(w, "config file: %s\n", file)
	tc := o.agent.Tunnel
	fmt.Fprintf(w, "tunnel: %s, %d connection(s), encoding %s\n", tc.Tunnel, tc.Connections, tc.Encoding)
	fmt.Fprintln(w, "relays:")
	for _, raw := range tc.URLs() {
		fmt.Fprintf(w, "  %s\n", redacted(raw))
	}
	if len(o.agent.Routes) > 0 {
		fmt.Fprintln(w, "routes:")
		for _, r := range o.agent.Routes {
			fmt.Fprintf(w, "  %s\n", r)
		}
	}
	forward := "none"
	if o.agent.Forward != "" {
		forward = redacted(o.agent.Forward)
	}
	fmt.Fprintf(w, "forward: %s\nlisten: %s\n", forward, o.listen)
	fmt.Fprintln(w, "settings (not defaults):")
	for _, name := range slices.Sorted(maps.Keys(o.sources)) {
		if name == "config" {
			continue
		}
		v := "<set>"
		switch name {
		case "api-key":
		case "relay-url", "proxy", "forward", "route":
			v = "(see above)"
			if name == "proxy" {
				v = redacted(o.flags.Lookup(name).Value.String())
			}
		default:
			v = o.flags.Lookup(name).Value.String()
		}
		fmt.Fprintf(w, "  %s: %s (%s)\n", name, v, o.sources[name])
	}
}

// redacted is a URL with its password hidden.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
