package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/forward"
	"github.com/enhanced-tunnel/tunnel/supervisor/httpapi"
)

const (
	// DefaultForward is the upstream requests go to: a TTS server on the
	// same host.
	DefaultForward = "http://127.0.0.1:8000"
	// DefaultDrainTimeout is how long Shutdown lets the requests in flight
	// finish: a long TTS answer takes tens of seconds.
	DefaultDrainTimeout = 30 * time.Second

	// readHeaderTimeout bounds a client's request header on the HTTP
	// endpoints, so that a slow client cannot hold a connection open.
	readHeaderTimeout = 10 * time.Second
	// stopMargin is added to the tunnel's CloseTimeout to bound its stop:
	// it covers the handlers the stop cancels and waits for.
	stopMargin = 5 * time.Second
)

// ErrInvalidConfig is wrapped by every error Validate returns, the
// agent's own settings' and the tunnel's: it is messages.ErrInvalidConfig.
var ErrInvalidConfig = messages.ErrInvalidConfig

// Config configures an agent. Start with DefaultConfig and set at least
// Tunnel.RelayURL (or Tunnel.RelayURLs) and Tunnel.APIKey.
type Config struct {
	// Tunnel is the tunnel's configuration. Its OnMessage and Logger must
	// be nil: the agent's forwarder answers the requests, and the tunnel
	// logs to Logger.
	Tunnel supervisor.Config
	// Forward is the base URL of the upstream, e.g. http://127.0.0.1:8000;
	// default DefaultForward. With Routes it is the catch-all after them;
	// empty then means none (a request no route matches gets a 404).
	Forward string
	// Routes are the ingress rules, tried in order before Forward (see
	// forward.Rule): several local services behind one tunnel. Nil: every
	// request goes to Forward.
	Routes []forward.Rule
	// Listener serves /health, /status and /metrics; nil serves none. The
	// agent owns it: Shutdown closes it, and so does a Start that fails.
	Listener net.Listener
	// Profiling serves /debug/pprof/ on Listener (see httpapi.Config).
	Profiling bool
	// DrainTimeout is how long Shutdown lets the requests in flight finish
	// before it stops the tunnel; default DefaultDrainTimeout. Zero does not
	// wait.
	DrainTimeout time.Duration
	// Logger receives the agent's, the forwarder's and the tunnel's logs;
	// nil discards them.
	Logger *logrus.Logger
	// WrapHandler, if set, wraps the forwarder's handler before the tunnel
	// gets it, for callers that watch the forwarding (the stress tool counts
	// the handlers' panics). Nil: the forwarder's handler as it is.
	WrapHandler func(supervisor.Handler) supervisor.Handler
}

// DefaultConfig returns supervisor.DefaultConfig() for the tunnel, forwarding
// to DefaultForward, with a drain of DefaultDrainTimeout and no HTTP
// endpoints.
func DefaultConfig() Config {
	return Config{
		Tunnel:       supervisor.DefaultConfig(),
		Forward:      DefaultForward,
		DrainTimeout: DefaultDrainTimeout,
	}
}

// Validate reports the first problem with c: the tunnel's (see
// supervisor.Config.Validate), a Tunnel.OnMessage or Tunnel.Logger that
// the agent would replace, a bad Forward URL or rule in Routes (named, its
// password redacted), neither of them, or a negative DrainTimeout.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if err := c.Tunnel.Validate(); err != nil {
		return err
	}
	switch {
	case c.Tunnel.OnMessage != nil:
		return bad("Tunnel.OnMessage must be nil: the agent's forwarder answers the requests (see WrapHandler)")
	case c.Tunnel.Logger != nil:
		return bad("Tunnel.Logger must be nil: the tunnel logs to Logger")
	case c.DrainTimeout < 0:
		return bad("DrainTimeout must not be negative, got %v", c.DrainTimeout)
	}
	// forward.New is the one judge of upstream URLs and rules; the
	// Forwarder it makes here has no connection yet.
	f, err := forward.New(forward.Config{Upstream: c.Forward, Routes: c.Routes})
	if err != nil {
		return bad("%v", err)
	}
	f.Close()
	return nil
}

// Agent is a running agent. Its methods are safe for concurrent use.
type Agent struct {
	cfg    Config
	log    *logrus.Logger
	fwd    *forward.Forwarder
	tunnel *supervisor.Tunnel
	srv    *http.Server  // nil without a Listener
	served chan struct{} // closed when srv's Serve has returned
	errc   chan error

	shutOnce sync.Once
	shutErr  error
}

// Start validates cfg and starts the agent: the forwarder, the tunnel, and
// the HTTP endpoints when cfg.Listener is set. It returns at once; the
// tunnel connects in the background (follow it with
// Tunnel.OnStateChange or Tunnel().Status). A Start that fails has closed
// cfg.Listener.
func Start(cfg Config) (*Agent, error) {
	a, err := start(cfg)
	if err != nil && cfg.Listener != nil {
		cfg.Listener.Close()
	}
	return a, err
}

func start(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = logrus.New()
		log.SetOutput(io.Discard)
	}
	metrics := httpapi.NewForwardMetrics()
	fwd, err := forward.New(forward.Config{Upstream: cfg.Forward, Routes: cfg.Routes, Observer: metrics, Logger: log})
	if err != nil {
		return nil, err
	}
	handler := supervisor.Handler(func(ctx context.Context, t *supervisor.Tunnel, msg *messages.TunnelMessage) {
		fwd.Handle(ctx, t, msg)
	})
	if cfg.WrapHandler != nil {
		handler = cfg.WrapHandler(handler)
	}
	tcfg := cfg.Tunnel
	tcfg.Logger, tcfg.OnMessage = log, handler
	t, err := supervisor.Start(nil, tcfg)
	if err != nil {
		fwd.Close()
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, fwd: fwd, tunnel: t, served: make(chan struct{}), errc: make(chan error, 1)}
	fields := logrus.Fields{
		"relays":      strings.Join(redactedAll(cfg.Tunnel.URLs()), ","),
		"connections": cfg.Tunnel.Connections,
		"tunnel":      cfg.Tunnel.Tunnel,
		"forward":     supervisor.RedactURL(cfg.Forward),
		"proxy":       proxies(cfg.Tunnel),
	}
	if cfg.Forward == "" {
		fields["forward"] = "none"
	}
	if len(cfg.Routes) > 0 {
		routes := make([]string, len(cfg.Routes))
		for i, r := range cfg.Routes {
			routes[i] = r.String() // passwords redacted
		}
		fields["routes"] = strings.Join(routes, " ")
	}
	if ln := cfg.Listener; ln != nil {
		a.srv = &http.Server{
			Handler:           httpapi.NewHandler(httpapi.Config{Status: t, Forward: metrics, InFlight: fwd.InFlight, Profiling: cfg.Profiling}),
			ReadHeaderTimeout: readHeaderTimeout,
		}
		go a.serve(ln)
		fields["listen"] = ln.Addr().String()
	} else {
		close(a.served)
	}
	log.WithFields(fields).Info("Supervisor started")
	return a, nil
}

func (a *Agent) serve(ln net.Listener) {
	defer close(a.served)
	if err := a.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		a.errc <- fmt.Errorf("agent: serving the HTTP endpoints on %s: %w", ln.Addr(), err)
	}
}

// Tunnel is the agent's tunnel, for its status and for sending.
func (a *Agent) Tunnel() *supervisor.Tunnel { return a.tunnel }

// Addr is the address of the HTTP endpoints, or nil when there are none.
func (a *Agent) Addr() net.Addr {
	if a.cfg.Listener == nil {
		return nil
	}
	return a.cfg.Listener.Addr()
}

// Err receives at most one error: the HTTP endpoints stopped serving on
// their own (their listener failed). The tunnel keeps running; the binary
// shuts the agent down then. Never after Shutdown.
func (a *Agent) Err() <-chan error { return a.errc }

// Reconnect drops the tunnel's connections and connects again at once (see
// supervisor.Tunnel.Reconnect): for a host that knows the network changed.
func (a *Agent) Reconnect() { a.tunnel.Reconnect() }

// Shutdown drains the requests in flight, stops the tunnel, then the HTTP
// endpoints (see the package documentation for the order and its bounds).
// ctx cuts the drain short; the stops that follow have bounds of their own.
// A drain cut short is logged, not returned: the error is the stops'.
// Shutdown is idempotent; later calls wait for the first and return its
// result.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.shutOnce.Do(func() { a.shutErr = a.shutdown(ctx) })
	return a.shutErr
}

func (a *Agent) shutdown(ctx context.Context) error {
	drainCtx, cancel := context.WithTimeout(ctx, a.cfg.DrainTimeout)
	if err := a.fwd.Drain(drainCtx); err != nil {
		a.log.WithError(err).WithField("timeout", a.cfg.DrainTimeout.String()).Warn("Stopped waiting for the requests in flight")
	}
	cancel()

	stopCtx, cancel := context.WithTimeout(context.Background(), a.cfg.Tunnel.CloseTimeout+stopMargin)
	defer cancel()
	err := a.tunnel.Stop(stopCtx)
	if a.srv != nil {
		if shutErr := a.srv.Shutdown(stopCtx); shutErr != nil {
			err = errors.Join(err, fmt.Errorf("agent: closing the HTTP endpoints: %w", shutErr))
		}
	}
	<-a.served
	a.fwd.Close()
	if err == nil {
		a.log.Info("Supervisor stopped")
	}
	return err
}

func redactedAll(raws []string) []string {
	out := make([]string, len(raws))
	for i, raw := range raws {
		out[i] = supervisor.RedactURL(raw)
	}
	return out
}

// proxies describes the proxies of c's relay URLs for the log: each proxy's
// URL with its password redacted, or "direct"; once when they are all the
// same.
func proxies(c supervisor.Config) string {
	var out []string
	for _, raw := range c.URLs() {
		desc := "direct"
		if u, err := c.ProxyFor(raw); err != nil {
			desc = "(invalid)"
		} else if u != nil {
			desc = u.Redacted()
		}
		if !slices.Contains(out, desc) {
			out = append(out, desc)
		}
	}
	return strings.Join(out, ",")
}
