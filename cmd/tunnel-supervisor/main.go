// Command tunnel-supervisor keeps a tunnel to a relay open and forwards the
// relay's requests to a local HTTP server (the TTS server), streaming its
// answers back. It serves /health, /status and /metrics on -listen.
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
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/forward"
	"github.com/enhanced-tunnel/tunnel/supervisor/httpapi"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole command; its result is the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "status" {
		return statusCommand(args[1:], getenv, stdout, stderr)
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

// supervise runs the tunnel, the forwarder and the HTTP endpoints on ln
// until SIGINT or SIGTERM arrives on sigs, then shuts them down in order.
func supervise(o *options, log *logrus.Logger, ln net.Listener, sigs <-chan os.Signal) error {
	metrics := httpapi.NewForwardMetrics()
	fwd, err := forward.New(forward.Config{Upstream: o.forward, Observer: metrics, Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	defer fwd.Close()
	cfg := o.tunnel
	cfg.Logger = log
	cfg.OnMessage = func(ctx context.Context, t *supervisor.Tunnel, msg *messages.TunnelMessage) {
		fwd.Handle(ctx, t, msg)
	}
	t, err := supervisor.Start(nil, cfg)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           httpapi.NewHandler(httpapi.Config{Status: t, Forward: metrics, InFlight: fwd.InFlight}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.WithFields(logrus.Fields{
		"relay":   redacted(cfg.RelayURL),
		"tunnel":  cfg.Tunnel,
		"forward": o.forward,
		"listen":  ln.Addr().String(),
	}).Info("Supervisor started")

	var runErr error
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Info("SIGHUP: reconnecting")
				t.Reconnect()
				continue
			}
			log.WithField("signal", sig.String()).Info("Shutting down")
			break wait
		case err := <-served:
			runErr = fmt.Errorf("serving %s: %w", ln.Addr(), err)
			break wait
		}
	}
	return errors.Join(runErr, shutdown(o, log, fwd, t, srv, sigs))
}

// shutdown drains the requests in flight, then closes the tunnel and the
// HTTP endpoints, which stay up meanwhile so the drain can be watched. A
// second SIGINT or SIGTERM cuts the drain short.
func shutdown(o *options, log *logrus.Logger, fwd *forward.Forwarder, t *supervisor.Tunnel, srv *http.Server, sigs <-chan os.Signal) error {
	drainCtx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
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
	if err := fwd.Drain(drainCtx); err != nil {
		log.WithError(err).WithField("timeout", o.drainTimeout.String()).Warn("Stopped waiting for the requests in flight")
	}
	cancel()

	// Stop's close handshake is bounded by CloseTimeout; the margin covers
	// the handlers it cancels and waits for.
	stopCtx, cancel := context.WithTimeout(context.Background(), o.tunnel.CloseTimeout+5*time.Second)
	defer cancel()
	err := t.Stop(stopCtx)
	if shutErr := srv.Shutdown(stopCtx); shutErr != nil {
		err = errors.Join(err, fmt.Errorf("closing the HTTP endpoints: %w", shutErr))
	}
	if err == nil {
		log.Info("Supervisor stopped")
	}
	return err
}

// redacted hides a password in the relay URL.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
