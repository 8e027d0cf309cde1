package main

// What an operator runs the relay with besides its settings: -version,
// -access-log, and SIGHUP to reload the keys file.

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/internal/buildinfo"
)

// printVersion writes the module version, VCS revision and Go version.
func printVersion(out io.Writer) { buildinfo.Print(out, "tunnel-relay") }

// accessLogFlag is -access-log: off, on, or the fraction of public
// requests to log (0.1).
type accessLogFlag struct{ f *float64 }

func (a accessLogFlag) String() string {
	if a.f == nil {
		return "off"
	}
	return relay.FormatAccessLog(*a.f)
}

func (a accessLogFlag) Set(v string) error {
	f, err := relay.ParseAccessLog(v)
	if err != nil {
		return err
	}
	*a.f = f
	return nil
}

// serve waits for ctx to end; each SIGHUP meanwhile reloads the keys file
// (a failed reload is logged by the relay and changes nothing).
func serve(ctx context.Context, r *relay.Relay, logger *logrus.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			logger.WithField("actor", "relay").Info("SIGHUP: reloading the keys")
			_ = r.Reload()
		}
	}
}
