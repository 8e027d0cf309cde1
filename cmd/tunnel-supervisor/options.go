package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/internal/configfile"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/agent"
	"github.com/enhanced-tunnel/tunnel/supervisor/forward"
)

const (
	defaultListen = "127.0.0.1:9090"
	envPrefix     = "TUNNEL_"
)

// options is the supervisor's configuration, from flags and environment.
type options struct {
	agent    agent.Config // without Listener and Logger, which run sets
	listen   string
	logLevel logrus.Level
	jsonLogs bool

	// file is the config file read, "" for none; sources tells which
	// source set each flag set; flags is the flag set (see config.go).
	file    string
	sources configfile.Sources
	flags   *flag.FlagSet
}

const usageHeader = `Usage:
  tunnel-supervisor [flags]
      connect to one or more relays and forward their requests to a local
      HTTP server
  tunnel-supervisor status [-addr host:port]
      print a running supervisor's status
  tunnel-supervisor check-config [flags]
      validate the settings as a start would, connect to nothing

Every flag can also be set with the environment variable named after it, or
with its key in the -config file; a flag on the command line wins over the
environment, which wins over the file. Prefer TUNNEL_API_KEY or
-api-key-file to -api-key, which other users can see in the process list.

Flags:
`

// envName is the environment variable of a flag: -retry-delay is
// TUNNEL_RETRY_DELAY.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseOptions reads the flags in args, falls back to the environment (via
// getenv) for those not given, and checks the result. -h prints the usage to
// stderr and returns flag.ErrHelp.
func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{agent: agent.DefaultConfig()}
	def, tc := o.agent.Tunnel, &o.agent.Tunnel
	var relayURLs []string
	var apiKey, apiKeyFile, policy, caFile, logLevel, logFormat, proxy string
	var routes []string

	fs := flag.NewFlagSet("tunnel-supervisor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.file, "config", "", configHelp)
	fs.Var(urlList{&relayURLs}, "relay-url", "WebSocket `URLs` of relay tunnel endpoints, comma-separated, e.g. wss://relay.example/tunnel (required)")
	fs.IntVar(&tc.Connections, "connections", def.Connections, fmt.Sprintf(
		"connections the tunnel keeps, each to the next relay URL in turn, at most %d; when not given, also at least one per relay URL",
		supervisor.MaxConnections))
	fs.StringVar(&tc.Encoding, "encoding", def.Encoding, "frame encoding offered to the relay: bin1 (compact binary, then JSON) or json (JSON text only)")
	fs.StringVar(&apiKey, "api-key", "", "API key the relay knows this tunnel by")
	fs.StringVar(&apiKeyFile, "api-key-file", "", "file holding the API key")
	fs.StringVar(&tc.Tunnel, "tunnel", def.Tunnel, "tunnel name sent to the relay")
	fs.StringVar(&o.agent.Forward, "forward", o.agent.Forward,
		"base URL of the local upstream (the TTS server); with -route, the catch-all after the rules, none when not given")
	fs.Var(ruleList{&routes}, "route",
		"ingress `rule` [HOST]/PREFIX=URL[,strip][,insecure], repeatable, tried in order before -forward; URL is http://, https://, ws://, wss:// or unix:/path/to.sock (in the environment: rules separated by spaces or ';')")
	fs.StringVar(&proxy, "proxy", "",
		"`URL` of the proxy to reach the relays through, http://[user:pass@]host:port or socks5://host:port; direct or none: no proxy (default: HTTPS_PROXY, HTTP_PROXY and NO_PROXY)")
	fs.StringVar(&o.listen, "listen", defaultListen, "address of /health, /status and /metrics")
	fs.BoolVar(&o.agent.Profiling, "pprof", false, "also serve Go's profiles under /debug/pprof/ on -listen (keep -listen private)")
	fs.DurationVar(&tc.HeartbeatInterval, "heartbeat-interval", def.HeartbeatInterval, "time between heartbeats")
	fs.DurationVar(&tc.HeartbeatTimeout, "heartbeat-timeout", def.HeartbeatTimeout, "no heartbeat ack for this long: the connection is stale")
	fs.DurationVar(&tc.ConnectTimeout, "connect-timeout", def.ConnectTimeout, "bound on dial, upgrade and authentication")
	fs.DurationVar(&tc.RetryDelay, "retry-delay", def.RetryDelay, "wait before reconnecting after a failure other than an auth failure")
	fs.DurationVar(&tc.AuthRetryDelay, "auth-retry-delay", def.AuthRetryDelay, "wait before reconnecting after an auth failure")
	fs.IntVar(&tc.BreakerThreshold, "breaker-threshold", def.BreakerThreshold, "consecutive failures that open the circuit breaker")
	fs.DurationVar(&tc.BreakerRecovery, "breaker-recovery", def.BreakerRecovery, "how long the open circuit breaker waits before a trial")
	fs.StringVar(&policy, "reconnect-policy", def.ReconnectPolicy.String(), "reconnect delays: flat or exponential")
	fs.StringVar(&caFile, "ca-file", "", "PEM file of the root certificates to trust for wss:// (default: the system's)")
	fs.DurationVar(&o.agent.DrainTimeout, "drain-timeout", o.agent.DrainTimeout, "on SIGINT/SIGTERM, how long requests in flight may take to finish")
	fs.StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, usageHeader)
		fs.VisitAll(func(f *flag.Flag) {
			typ, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  -%s %s\n    \t%s\n    \t(env %s", f.Name, typ, usage, envName(f.Name))
			switch {
			case f.DefValue == "":
			case typ == "string":
				fmt.Fprintf(w, "; default %q", f.DefValue)
			default:
				fmt.Fprintf(w, "; default %s", f.DefValue)
			}
			fmt.Fprintln(w, ")")
		})
	}
	// The config file, then the environment, then the flags (config.go).
	res, err := configfile.Parse(configSpec(fs, getenv), args)
	if err != nil {
		return nil, err
	}
	o.sources, o.flags = res.Sources, fs
	if res.File != nil {
		o.file = res.File.Name // also when named by the environment
	}
	if fs.NArg() > 0 {
		return nil, configfile.Usage(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	keepOneKeySource(res.Sources, &apiKey, &apiKeyFile)
	// One URL is the shorthand RelayURL; several are RelayURLs.
	if len(relayURLs) == 1 {
		tc.RelayURL = relayURLs[0]
	} else {
		tc.RelayURLs = relayURLs
	}
	if !isSet(fs, "connections") {
		// Every relay gets a connection unless told otherwise.
		tc.Connections = max(tc.Connections, len(relayURLs))
	}

	if tc.APIKey, err = readAPIKey(apiKey, apiKeyFile); err != nil {
		return nil, err
	}
	switch policy {
	case supervisor.Flat.String():
		tc.ReconnectPolicy = supervisor.Flat
	case supervisor.Exponential.String():
		tc.ReconnectPolicy = supervisor.Exponential
	default:
		return nil, fmt.Errorf("-reconnect-policy must be flat or exponential, got %q", policy)
	}
	for _, spec := range routes {
		rules, err := forward.ParseRules(spec)
		if err != nil {
			return nil, fmt.Errorf("-route: %w", err)
		}
		o.agent.Routes = append(o.agent.Routes, rules...)
	}
	if len(o.agent.Routes) > 0 && !isSet(fs, "forward") {
		o.agent.Forward = "" // with rules, no catch-all unless asked for
	}
	if proxy != "" {
		if tc.Proxy, err = supervisor.ParseProxy(proxy); err != nil {
			return nil, fmt.Errorf("-proxy: %w", err)
		}
	} else {
		tc.Proxy = supervisor.ProxyFromEnv(getenv)
	}
	if caFile != "" {
		if tc.TLSConfig, err = loadRoots(caFile); err != nil {
			return nil, err
		}
	}
	if o.agent.DrainTimeout < 0 {
		return nil, fmt.Errorf("-drain-timeout must not be negative, got %v", o.agent.DrainTimeout)
	}
	if o.logLevel, err = logrus.ParseLevel(logLevel); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	switch logFormat {
	case "text":
	case "json":
		o.jsonLogs = true
	default:
		return nil, fmt.Errorf("-log-format must be text or json, got %q", logFormat)
	}
	if err := o.agent.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// urlList is the -relay-url flag: one URL, or several separated by commas.
// Set never fails, so that the flag package never repeats a URL (which may
// hold a password) in an error; Validate judges each URL.
type urlList struct{ urls *[]string }

func (l urlList) String() string {
	if l.urls == nil {
		return ""
	}
	return strings.Join(*l.urls, ",")
}

func (l urlList) Set(v string) error {
	urls := strings.Split(v, ",")
	for i, u := range urls {
		urls[i] = strings.TrimSpace(u)
	}
	*l.urls = urls
	return nil
}

// ruleList is the -route flag: repeatable, each value one rule or several
// separated by spaces or ';'. Set never fails, so that the flag package
// never repeats a rule (whose URL may hold a password) in an error; the
// rules are parsed once all flags are read.
type ruleList struct{ specs *[]string }

func (l ruleList) String() string {
	if l.specs == nil {
		return ""
	}
	return strings.Join(*l.specs, " ")
}

func (l ruleList) Set(v string) error {
	*l.specs = append(*l.specs, v)
	return nil
}

// isSet reports whether the flag was given, on the command line or by its
// environment variable or in the config file (configfile.Parse sets it
// through the flag set).
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// readAPIKey returns the key given directly or in a file. Its errors never
// contain the key.
func readAPIKey(key, file string) (string, error) {
	switch {
	case key != "" && file != "":
		return "", errors.New("give the API key once: -api-key or -api-key-file, not both")
	case key != "":
		return key, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("-api-key-file: %w", err)
		}
		key = strings.TrimSpace(string(b))
		if key == "" {
			return "", fmt.Errorf("-api-key-file: %s is empty", file)
		}
		return key, nil
	}
	return "", errors.New("missing API key: set TUNNEL_API_KEY, -api-key-file or -api-key")
}

func loadRoots(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-ca-file: no PEM certificate in %s", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
