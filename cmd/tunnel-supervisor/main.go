// Command tunnel-supervisor keeps a tunnel open to one or more relays
// (-connections connections spread over the -relay-url list) and forwards
// the relays' requests to a local HTTP server (the TTS server), streaming
// its answers back. It serves /health, /status and /metrics on -listen.
// The agent itself is package supervisor/agent; this command parses flags
// and handles signals.
//
// SIGHUP reconnects at once. SIGINT or SIGTERM stops taking requests, lets
// those in flight finish (within -drain-timeout), closes the tunnel and
// exits 0; a second one stops waiting for the requests left.
//
// `tunnel-supervisor status` prints a running supervisor's status; -h lists
// every flag with its environment variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/internal/buildinfo"
	"github.com/enhanced-tunnel/tunnel/supervisor/agent"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole command; its result is the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "status" {
		return statusCommand(args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "check-config" {
		return checkConfig(args[1:], getenv, stdout, stderr)
	}
	if buildinfo.Requested(args) {
		buildinfo.Print(stdout, "tunnel-supervisor")
		return 0
	}
	o, err := parseOptions(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "tunnel-supervisor: %v\n", err)
		return 2
	}
	log := newLogger(o, stderr)
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		log.WithError(err).Error("Cannot serve the HTTP endpoints")
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := supervise(o, log, ln, sigs); err != nil {
		log.WithError(err).Error("Supervisor failed")
		return 1
	}
	return 0
}

func newLogger(o *options, out io.Writer) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(out)
	log.SetLevel(o.logLevel)
	if o.jsonLogs {
		log.SetFormatter(&logrus.JSONFormatter{})
	} else {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return log
}

// supervise runs the agent (tunnel, forwarder and the HTTP endpoints on ln)
// until SIGINT or SIGTERM arrives on sigs, then shuts it down; a second one
// cuts the drain short. SIGHUP reconnects.
func supervise(o *options, log *logrus.Logger, ln net.Listener, sigs <-chan os.Signal) error {
	cfg := o.agent
	cfg.Listener, cfg.Logger = ln, log
	a, err := agent.Start(cfg)
	if err != nil {
		return err
	}

	var runErr error
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Info("SIGHUP: reconnecting")
				a.Reconnect()
				continue
			}
			log.WithField("signal", sig.String()).Info("Shutting down")
			break wait
		case runErr = <-a.Err():
			break wait
		}
	}

	drainCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case sig := <-sigs:
				if sig != syscall.SIGHUP {
					log.WithField("signal", sig.String()).Warn("Second signal: not waiting for the requests left")
					cancel()
					return
				}
			case <-drainCtx.Done():
				return
			}
		}
	}()
	return errors.Join(runErr, a.Shutdown(drainCtx))
}
