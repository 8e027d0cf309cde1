// Command tunnel-stress is the tunnel's load test under network faults: it
// runs a relay, a supervisor, the demo TTS upstream and a fault-injecting
// proxy in this process, sends requests through the relay while breaking
// the network at the chosen rate, and reports (see package internal/stress):
//
//	tunnel-stress --failures=high --duration=300 [--connections=2] [--json]
//
// --connections N gives the tunnel N connections, each through a fault
// proxy of its own in front of the one relay, and hits one path at a time
// (default 1, the seed's run).
// --duration takes seconds (300) or a Go duration (45s, 5m). Progress goes
// to stderr every few seconds; the report to stdout, as text or, with
// --json, as exactly one line holding one JSON object. The exit status is 0
// when every expectation is met, 1 when one is not (each is printed with
// its figure, to stderr with --json), 2 when the run could not be made.
// SIGINT or SIGTERM ends the run early, with a report.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/internal/stress"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options is what the command line says.
type options struct {
	cfg     stress.Config
	json    bool
	verbose bool
}

// seconds is a duration flag that also takes plain seconds.
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	return s.d.String()
}

func (s seconds) Set(v string) error {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		*s.d = time.Duration(n * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want seconds (300) or a Go duration (45s): %q", v)
	}
	*s.d = d
	return nil
}

// level is the --failures flag.
type level struct{ l *stress.Level }

func (f level) String() string {
	if f.l == nil {
		return ""
	}
	return f.l.String()
}

func (f level) Set(v string) (err error) {
	*f.l, err = stress.ParseLevel(v)
	return err
}

// parse reads the flags in args; help and errors go to out, and asking for
// help returns flag.ErrHelp.
func parse(args []string, out io.Writer) (*options, error) {
	o := &options{cfg: stress.DefaultConfig()}
	c := &o.cfg
	fs := flag.NewFlagSet("tunnel-stress", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Var(level{&c.Failures}, "failures", "how often faults come: low, medium or high")
	fs.Var(seconds{&c.Duration}, "duration", "how long to run: seconds (300) or a Go duration (45s)")
	fs.BoolVar(&o.json, "json", false, "print the report as one line of JSON")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "picks the faults, their timing and the requests")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "clients sending requests, each one after the other")
	fs.IntVar(&c.Connections, "connections", c.Connections, "tunnel connections, each through a fault proxy of its own; faults hit one at a time")
	fs.Var(seconds{&c.HeartbeatInterval}, "heartbeat-interval", "supervisor heartbeat interval")
	fs.Var(seconds{&c.HeartbeatTimeout}, "heartbeat-timeout", "no heartbeat ack for this long: stale connection")
	fs.Var(seconds{&c.RetryDelay}, "retry-delay", "supervisor restart delay after a failure")
	fs.Var(seconds{&c.BreakerRecovery}, "breaker-recovery", "how long an open circuit breaker waits before its trial")
	fs.Var(seconds{&c.ConnectTimeout}, "connect-timeout", "supervisor connect timeout (dial, upgrade, auth)")
	fs.BoolVar(&o.verbose, "verbose", false, "log the relay and the supervisor to stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "tunnel-stress:", err)
		return 2
	}
	o.cfg.Progress = stderr
	if o.verbose {
		log := logrus.New()
		log.SetOutput(stderr)
		o.cfg.Logger = log
	}
	fmt.Fprintf(stderr, "tunnel-stress: failures=%s for %v, seed %d, %d clients, connections %d\n",
		o.cfg.Failures, o.cfg.Duration, o.cfg.Seed, o.cfg.Concurrency, o.cfg.Connections)
	rep, err := stress.Run(ctx, o.cfg)
	if rep == nil {
		fmt.Fprintln(stderr, "tunnel-stress:", err)
		return 2
	}
	if o.json {
		line, jerr := json.Marshal(rep)
		if jerr != nil {
			fmt.Fprintln(stderr, "tunnel-stress:", jerr)
			return 2
		}
		fmt.Fprintf(stdout, "%s\n", line)
		for _, v := range rep.Violations {
			fmt.Fprintln(stderr, "FAILED:", v)
		}
	} else {
		rep.WriteSummary(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "tunnel-stress:", err)
		return 2
	}
	if len(rep.Violations) > 0 {
		return 1
	}
	return 0
}
