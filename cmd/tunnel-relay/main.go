// Command tunnel-relay is the remote side of the tunnel: supervisors connect
// to its /tunnel endpoint, and public HTTP requests reach them through it.
// Every flag can also be set through an environment variable (the flag wins):
// AUTH_TOKEN for -auth-token, RELAY_<FLAG> for the others (-listen is
// RELAY_LISTEN, -max-body is RELAY_MAX_BODY). Run with -h for the list.
//
// SIGINT or SIGTERM shuts the relay down gracefully: requests in progress
// may finish for the shutdown timeout, then every connection is closed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/internal/buildinfo"
	"github.com/enhanced-tunnel/tunnel/internal/configfile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "check-config" {
		os.Exit(checkConfig(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	}
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// options is what the command line and the environment say.
type options struct {
	relay           relay.Config
	logLevel        string
	logFormat       string
	shutdownTimeout time.Duration

	// file is the config file read, "" for none; sources tells which
	// source set each flag set; flags is the flag set (see config.go).
	file    string
	sources configfile.Sources
	flags   *flag.FlagSet
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	if flagName == "auth-token" {
		return "AUTH_TOKEN"
	}
	return "RELAY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse reads the flags in args over the environment over the defaults.
// Help and errors go to out; asking for help returns flag.ErrHelp.
func parse(args []string, getenv func(string) string, out io.Writer) (*options, error) {
	o := &options{relay: relay.DefaultConfig(), logLevel: "info", logFormat: "text", shutdownTimeout: 30 * time.Second}
	c := &o.relay
	fs := flag.NewFlagSet("tunnel-relay", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.file, "config", "", configHelp)
	fs.StringVar(&c.Listen, "listen", c.Listen, "public address: /tunnel for supervisors and the tunnels, host:port")
	fs.StringVar(&c.AdminListen, "admin-listen", c.AdminListen, "address of /health and /metrics, host:port; empty for none (keep it off the internet)")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve net/http/pprof under /debug/pprof/ on the admin listener (profiling; off by default)")
	fs.StringVar(&c.AuthToken, "auth-token", "", "API key of the tunnel \"default\" (prefer the environment: flags show in ps)")
	fs.StringVar(&c.KeysFile, "keys-file", "", "file of \"name key [option=value ...]\" lines, one tunnel each, the options its public access control (bearer=, basic=, allow=, rate=, burst=); # starts a comment")
	fs.StringVar(&c.Domain, "domain", c.Domain, "host routing: a public request for NAME.<domain> (any case, any port) goes to tunnel NAME, its path as it is; empty: off, routing by path only")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "how long a public request waits for the tunnel's response (504 beyond)")
	fs.DurationVar(&c.BodyTimeout, "body-timeout", c.BodyTimeout, "how long a public client may send nothing of its request body (408 beyond)")
	fs.DurationVar(&c.SendTimeout, "send-timeout", c.SendTimeout, "how long a public client may take nothing of its response (cut off beyond)")
	fs.DurationVar(&c.AuthTimeout, "auth-timeout", c.AuthTimeout, "how long a new supervisor connection has to authenticate")
	fs.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", c.HeartbeatTimeout, "drop a supervisor that sent nothing (no frame, no pong) for this long")
	fs.DurationVar(&c.PingInterval, "ping-interval", c.PingInterval, "how often supervisors are sent a WebSocket ping; 0 sends none (their heartbeat frames keep sessions alive)")
	fs.StringVar(&c.Encoding, "encoding", c.Encoding, "frame encoding agreed with supervisors that offer it: bin1 (compact binary) or json (JSON text only)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "deadline of each write to a supervisor")
	fs.IntVar(&c.MaxSessions, "max-sessions", c.MaxSessions, "most authenticated supervisor connections (more are closed with 1013)")
	fs.IntVar(&c.MaxPending, "max-pending", c.MaxPending, "most connections not authenticated yet; a newer one makes the oldest leave (1013)")
	fs.IntVar(&c.MaxPendingPerAddr, "max-pending-per-addr", c.MaxPendingPerAddr, "most connections not authenticated yet from one address; a newer one makes its oldest leave")
	fs.Float64Var(&c.UpgradeRate, "upgrade-rate", c.UpgradeRate, "WebSocket upgrades per second one address may make on average (429 beyond)")
	fs.IntVar(&c.UpgradeBurst, "upgrade-burst", c.UpgradeBurst, "WebSocket upgrades one address may make at once")
	fs.IntVar(&c.MaxAuthFailures, "max-auth-failures", c.MaxAuthFailures, "auth failures from one address within -auth-failure-window before its wrong keys are answered slowly")
	fs.DurationVar(&c.AuthFailureWindow, "auth-failure-window", c.AuthFailureWindow, "window of -max-auth-failures")
	fs.IntVar(&c.MaxConcurrent, "max-concurrent", c.MaxConcurrent, "most public requests in flight per tunnel, body, response and any wait for a session included (503 beyond)")
	fs.IntVar(&c.MaxSessionsPerTunnel, "max-sessions-per-tunnel", c.MaxSessionsPerTunnel, "most supervisor sessions per tunnel, from one supervisor or several; one more is closed with 1013 unless it replaces one (same instance and index)")
	fs.DurationVar(&c.HoldTimeout, "hold-timeout", c.HoldTimeout, "how long a public request for a tunnel with a key but no session waits for one (503 beyond); 0 answers 503 at once")
	fs.IntVar(&c.MaxHeld, "max-held", c.MaxHeld, "most public requests one tunnel holds while it has no session (503 beyond)")
	fs.Int64Var(&c.MaxHeldBytes, "max-held-bytes", c.MaxHeldBytes, "most bytes of inline request bodies one tunnel holds while it has no session (503 beyond)")
	fs.BoolVar(&c.RetryIdempotent, "retry-idempotent", c.RetryIdempotent, "send a GET, HEAD, OPTIONS, PUT or DELETE with an inline body once more through another session when its session ends before the response headers (else 502)")
	fs.DurationVar(&c.ResumeTimeout, "resume-timeout", c.ResumeTimeout, "how long a public response whose supervisor connection was lost mid-body stays open for the supervisor to resume it on another connection (stream_resume); 0 cuts it off at once")
	fs.Int64Var(&c.MaxBody, "max-body", c.MaxBody, "largest public request body in bytes (413 beyond)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "largest public request header in bytes (431 beyond)")
	fs.Int64Var(&c.ReadLimit, "read-limit", c.ReadLimit, "largest WebSocket message from an authenticated supervisor, bytes (1009 beyond)")
	fs.Int64Var(&c.AuthReadLimit, "auth-read-limit", c.AuthReadLimit, "largest WebSocket message before authentication, bytes (1009 beyond)")
	fs.IntVar(&c.MaxReplyQueue, "max-reply-queue", c.MaxReplyQueue, "bytes of answers that may wait for one supervisor's socket; a supervisor that lets more pile up is dropped")
	fs.Int64Var(&c.MaxBuffered, "max-buffered", c.MaxBuffered, "bytes of streamed responses buffered for all public clients; past it, streams whose clients lag are cut off")
	fs.Var(prefixList{&c.TrustedProxies}, "trusted-proxies", "comma-separated addresses or CIDR networks of proxies in front of the relay, whose X-Forwarded-For is believed")
	fs.BoolVar(&c.ProxyProtocol, "proxy-protocol", c.ProxyProtocol, "connections from -trusted-proxies start with a PROXY protocol header (v1 or v2)")
	fs.StringVar(&c.TLSCertFile, "tls-cert", "", "TLS certificate file (PEM); with -tls-key, serves https and wss")
	fs.StringVar(&c.TLSKeyFile, "tls-key", "", "TLS private key file (PEM)")
	fc := &c.Fleet
	fs.StringVar(&fc.Name, "cluster", fc.Name, "cluster name: makes the relay a node of that fleet (any node serves any tunnel); empty runs it alone, with no cluster code started")
	fs.StringVar(&fc.Provider, "cluster-provider", fc.Provider, "fleet membership: etcd, or automanaged (the nodes of -cluster-peers poll one another)")
	fs.Var(stringList{&fc.EtcdEndpoints}, "etcd-endpoints", "comma-separated etcd client addresses (-cluster-provider etcd)")
	fs.Var(stringList{&fc.Peers}, "cluster-peers", "comma-separated -internal-listen addresses of the fleet's nodes (-cluster-provider automanaged)")
	fs.StringVar(&fc.Listen, "cluster-listen", fc.Listen, "the node's cluster (gRPC) address, host:port, as the other nodes reach it")
	fs.StringVar(&fc.InternalListen, "internal-listen", fc.InternalListen, "the node-to-node HTTP address, host:port, as the other nodes reach it (not 0.0.0.0)")
	fs.StringVar(&fc.Secret, "cluster-secret", "", "secret shared by the fleet's nodes, authenticating the internal hop and the cluster's calls (prefer the environment: flags show in ps)")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "log level: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", o.logFormat, "log format: text or json")
	fs.IntVar(&c.LogRate, "log-rate", c.LogRate, "lines of one message logged per second, the rest counted in the next line's \"suppressed\"; 0 for all")
	fs.Var(accessLogFlag{&c.AccessLog}, "access-log", "access log of public requests, one info line each (msg \"Public request\", actor=access): off, on, or the fraction to log, e.g. 0.1")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", o.shutdownTimeout, "on SIGINT/SIGTERM, how long requests in progress may take to finish")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: tunnel-relay [flags]\n       tunnel-relay check-config [flags]   validate the settings as a start would, start nothing\n\nEvery flag may be set by its environment variable instead, or by its key in the -config file; the flag wins, then the environment, then the file.\nDurations are Go durations: 500ms, 10s, 1m30s.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			def := f.DefValue
			if def == "" {
				def = `""`
			}
			fmt.Fprintf(out, "  -%s\n\t%s\n\tenv %s, default %s\n", f.Name, f.Usage, envName(f.Name), def)
		})
	}
	// The config file, then the environment, then the flags (config.go).
	res, err := configfile.Parse(configSpec(fs, getenv, o), args)
	if err != nil {
		return nil, err
	}
	o.sources, o.flags = res.Sources, fs
	if res.File != nil {
		o.file = res.File.Name // also when named by the environment
	}
	if fs.NArg() > 0 {
		return nil, configfile.Usage(fmt.Errorf("unexpected arguments: %v", fs.Args()))
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, fmt.Errorf("-log-format must be text or json, got %q", o.logFormat)
	}
	if _, err := logrus.ParseLevel(o.logLevel); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	return o, nil
}

// prefixList is a flag of comma-separated addresses and CIDR networks; an
// address stands for itself alone (a /32 or /128).
type prefixList struct{ list *[]netip.Prefix }

func (p prefixList) String() string {
	if p.list == nil {
		return ""
	}
	parts := make([]string, len(*p.list))
	for i, prefix := range *p.list {
		parts[i] = prefix.String()
	}
	return strings.Join(parts, ",")
}

func (p prefixList) Set(v string) error {
	var list []netip.Prefix
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			addr, err := netip.ParseAddr(part)
			if err != nil {
				return fmt.Errorf("%q is neither an address nor a CIDR network", part)
			}
			list = append(list, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
			continue
		}
		prefix, err := netip.ParsePrefix(part)
		if err != nil {
			return fmt.Errorf("%q is neither an address nor a CIDR network", part)
		}
		if addr := prefix.Addr(); addr.Is4In6() {
			if prefix.Bits() < 96 {
				return fmt.Errorf("%q mixes IPv4 and IPv6", part)
			}
			prefix = netip.PrefixFrom(addr.Unmap(), prefix.Bits()-96)
		}
		list = append(list, prefix.Masked())
	}
	*p.list = list
	return nil
}

// stringList is a flag of comma-separated values.
type stringList struct{ list *[]string }

func (s stringList) String() string {
	if s.list == nil {
		return ""
	}
	return strings.Join(*s.list, ",")
}

func (s stringList) Set(v string) error {
	var list []string
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			list = append(list, part)
		}
	}
	*s.list = list
	return nil
}

// lookup reads an environment variable; empty counts as unset.
func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func newLogger(o *options, out io.Writer) *logrus.Logger {
	logger := logrus.New()
	logger.SetOutput(out)
	level, _ := logrus.ParseLevel(o.logLevel)
	logger.SetLevel(level)
	if o.logFormat == "json" {
		logger.SetFormatter(&logrus.JSONFormatter{})
	} else {
		logger.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return logger
}

// run is the command: it serves until ctx ends, then shuts down. It
// returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	if buildinfo.Requested(args) {
		printVersion(os.Stdout)
		return 0
	}
	o, err := parse(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "tunnel-relay: %v\n", err)
		return 2
	}
	logger := newLogger(o, stderr)
	o.relay.Logger = logger
	r, err := relay.Start(o.relay)
	if err != nil {
		logger.WithError(err).Error("Relay could not start")
		return 1
	}
	serve(ctx, r, logger)
	logger.WithField("delay", o.shutdownTimeout.String()).Info("Shutting down")
	closeCtx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := r.Close(closeCtx); err != nil {
		logger.WithError(err).Error("Shutdown was not clean")
		return 1
	}
	return 0
}
