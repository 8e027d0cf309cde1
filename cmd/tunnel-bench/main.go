package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/enhanced-tunnel/tunnel/internal/benchrig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command; its result is the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "upstream":
			return serve(ctx, args[0], args[1:], benchrig.ServeUpstream, stdout, stderr)
		case "wsecho":
			return serve(ctx, args[0], args[1:], benchrig.ServeWSEcho, stdout, stderr)
		}
	}
	cfg, fleet, err := parseArgs(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "tunnel-bench: %v\n", err)
		return 2
	}
	cfg.Progress = stderr
	if fleet != nil {
		fleet.Progress = stderr
		return runFleet(ctx, *fleet, stdout, stderr)
	}
	rep, err := benchrig.Run(ctx, cfg, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "tunnel-bench: %v\n", err)
		return 1
	}
	if n := rep.Errors(); n > 0 {
		fmt.Fprintf(stderr, "tunnel-bench: %d requests failed; the runs marked ! are suspect\n", n)
		return 1
	}
	return 0
}

// runFleet runs the fleet mode (-fleet N).
func runFleet(ctx context.Context, cfg benchrig.FleetConfig, stdout, stderr io.Writer) int {
	rep, err := benchrig.RunFleet(ctx, cfg, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "tunnel-bench: %v\n", err)
		return 1
	}
	if problems := rep.Problems(); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "tunnel-bench: %s\n", p)
		}
		return 1
	}
	return 0
}

// parse reads the flags of a run of the main bench (see parseArgs).
func parse(args []string, stderr io.Writer) (benchrig.Config, error) {
	cfg, _, err := parseArgs(args, stderr)
	return cfg, err
}

// parseArgs reads the flags of a run. -smoke starts from the smoke
// settings, which the flags given beside it override. With -fleet N the
// run is the fleet mode, whose configuration is returned too (nil
// without -fleet); -rounds, -duration and -bin apply to it.
func parseArgs(args []string, stderr io.Writer) (benchrig.Config, *benchrig.FleetConfig, error) {
	cfg := benchrig.DefaultConfig()
	var smoke bool
	var fleetNodes int
	fleetTunnels := benchrig.DefaultFleetTunnels
	fs := flag.NewFlagSet("tunnel-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.BinDir, "bin", "", "directory of tunnel-relay, tunnel-supervisor and tunnel-bench already built (default: build them)")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds of every workload against every target")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each run")
	fs.IntVar(&cfg.IdleTunnels, "idle-tunnels", cfg.IdleTunnels, "idle tunnels opened to measure the relay's memory per tunnel")
	fs.DurationVar(&cfg.IdleWindow, "idle-window", cfg.IdleWindow, "how long an idle tunnel's traffic is counted")
	fs.BoolVar(&smoke, "smoke", false, fmt.Sprintf("a quick run: %d round, %v runs, %d idle tunnels, %v idle window",
		benchrig.SmokeRounds, benchrig.SmokeDuration, benchrig.SmokeIdleTunnels, benchrig.SmokeIdleWindow))
	fs.IntVar(&fleetNodes, "fleet", 0, "run the fleet mode instead: N (at least 2) relay nodes in one automanaged fleet; "+
		"the cost of a hop between nodes, and the loss of a node under load (0: the main bench)")
	fs.IntVar(&fleetTunnels, "fleet-tunnels", fleetTunnels, "with -fleet: tunnels of the loss of a node, each with its own key and supervisor process")
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	if fs.NArg() > 0 {
		return cfg, nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if smoke {
		given := cfg
		cfg = benchrig.SmokeConfig()
		cfg.BinDir = given.BinDir
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "rounds":
				cfg.Rounds = given.Rounds
			case "duration":
				cfg.Duration = given.Duration
			case "idle-tunnels":
				cfg.IdleTunnels = given.IdleTunnels
			case "idle-window":
				cfg.IdleWindow = given.IdleWindow
			}
		})
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["fleet"] {
		if given["fleet-tunnels"] {
			return cfg, nil, errors.New("-fleet-tunnels goes with -fleet")
		}
		return cfg, nil, cfg.Validate()
	}
	fc := benchrig.DefaultFleetConfig()
	if smoke {
		fc = benchrig.SmokeFleetConfig()
	}
	fc.Config = cfg
	fc.Nodes, fc.Tunnels = fleetNodes, fleetTunnels
	return cfg, &fc, fc.Validate()
}

// serve runs one of the rig's servers until ctx ends.
func serve(ctx context.Context, name string, args []string,
	server func(context.Context, string, io.Writer) error, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tunnel-bench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on; its first line on stdout is the bound address")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := server(ctx, *listen, stdout); err != nil {
		fmt.Fprintf(stderr, "tunnel-bench %s: %v\n", name, err)
		return 1
	}
	return 0
}
