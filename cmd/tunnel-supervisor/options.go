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
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/supervisor"
)

const (
	defaultListen       = "127.0.0.1:9090"
	defaultForward      = "http://127.0.0.1:8000"
	defaultDrainTimeout = 30 * time.Second
	envPrefix           = "TUNNEL_"
)

// options is the supervisor's configuration, from flags and environment.
type options struct {
	tunnel       supervisor.Config // without Logger and OnMessage, which main sets
	forward      string
	listen       string
	drainTimeout time.Duration
	logLevel     logrus.Level
	jsonLogs     bool
}

const usageHeader = `Usage:
  tunnel-supervisor [flags]
      connect to a relay and forward its requests to a local HTTP server
  tunnel-supervisor status [-addr host:port]
      print a running supervisor's status

Every flag can also be set with the environment variable named after it; a
flag on the command line wins over the environment. Prefer TUNNEL_API_KEY or
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
	def := supervisor.DefaultConfig()
	o := &options{tunnel: def}
	var apiKey, apiKeyFile, policy, caFile, logLevel, logFormat string

	fs := flag.NewFlagSet("tunnel-supervisor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.tunnel.RelayURL, "relay-url", "", "WebSocket URL of the relay's tunnel endpoint, e.g. wss://relay.example/tunnel (required)")
	fs.StringVar(&apiKey, "api-key", "", "API key the relay knows this tunnel by")
	fs.StringVar(&apiKeyFile, "api-key-file", "", "file holding the API key")
	fs.StringVar(&o.tunnel.Tunnel, "tunnel", def.Tunnel, "tunnel name sent to the relay")
	fs.StringVar(&o.forward, "forward", defaultForward, "base URL of the local upstream (the TTS server)")
	fs.StringVar(&o.listen, "listen", defaultListen, "address of /health, /status and /metrics")
	fs.DurationVar(&o.tunnel.HeartbeatInterval, "heartbeat-interval", def.HeartbeatInterval, "time between heartbeats")
	fs.DurationVar(&o.tunnel.HeartbeatTimeout, "heartbeat-timeout", def.HeartbeatTimeout, "no heartbeat ack for this long: the connection is stale")
	fs.DurationVar(&o.tunnel.ConnectTimeout, "connect-timeout", def.ConnectTimeout, "bound on dial, upgrade and authentication")
	fs.DurationVar(&o.tunnel.RetryDelay, "retry-delay", def.RetryDelay, "wait before reconnecting after a failure other than an auth failure")
	fs.DurationVar(&o.tunnel.AuthRetryDelay, "auth-retry-delay", def.AuthRetryDelay, "wait before reconnecting after an auth failure")
	fs.IntVar(&o.tunnel.BreakerThreshold, "breaker-threshold", def.BreakerThreshold, "consecutive failures that open the circuit breaker")
	fs.DurationVar(&o.tunnel.BreakerRecovery, "breaker-recovery", def.BreakerRecovery, "how long the open circuit breaker waits before a trial")
	fs.StringVar(&policy, "reconnect-policy", def.ReconnectPolicy.String(), "reconnect delays: flat or exponential")
	fs.StringVar(&caFile, "ca-file", "", "PEM file of the root certificates to trust for wss:// (default: the system's)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", defaultDrainTimeout, "on SIGINT/SIGTERM, how long requests in flight may take to finish")
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
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, getenv); err != nil {
		return nil, err
	}

	var err error
	if o.tunnel.APIKey, err = readAPIKey(apiKey, apiKeyFile); err != nil {
		return nil, err
	}
	switch policy {
	case supervisor.Flat.String():
		o.tunnel.ReconnectPolicy = supervisor.Flat
	case supervisor.Exponential.String():
		o.tunnel.ReconnectPolicy = supervisor.Exponential
	default:
		return nil, fmt.Errorf("-reconnect-policy must be flat or exponential, got %q", policy)
	}
	if caFile != "" {
		if o.tunnel.TLSConfig, err = loadRoots(caFile); err != nil {
			return nil, err
		}
	}
	if o.drainTimeout < 0 {
		return nil, fmt.Errorf("-drain-timeout must not be negative, got %v", o.drainTimeout)
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
	if err := o.tunnel.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if that is set. The two ways of giving the key go
// together: a key given by flag in either way is not overridden by the
// environment's.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	keyGiven := given["api-key"] || given["api-key-file"]
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] || keyGiven && strings.HasPrefix(f.Name, "api-key") {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if setErr := fs.Set(f.Name, v); setErr != nil {
				err = fmt.Errorf("%s: %w", envName(f.Name), setErr)
			}
		}
	})
	return err
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
