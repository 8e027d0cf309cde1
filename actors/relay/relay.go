package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
	"github.com/enhanced-tunnel/tunnel/internal/batchconn"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

const (
	// askTimeout bounds the front's questions to the actors.
	askTimeout = 5 * time.Second
	// readHeaderTimeout bounds how long a public client may take to send
	// its request headers.
	readHeaderTimeout = 30 * time.Second
	// idleTimeout closes keep-alive public connections left idle.
	idleTimeout = 2 * time.Minute
	// readBuffer is the read buffer of each supervisor connection: room
	// for a few dozen small frames read at once under load.
	readBuffer = 2 << 10
	// deadLetterThrottle is the period of protoactor's dead-letter log
	// throttle, whose goroutine lives that long after the last dead letter.
	deadLetterThrottle = 100 * time.Millisecond
)

// Relay is a running relay: the HTTP front on its listener, the admin
// endpoints on theirs, and the actors behind them. Create it with Start and
// end it with Close.
type Relay struct {
	cfg      Config
	log      *logrus.Entry
	system   *actor.ActorSystem
	root     *actor.PID
	router   *actor.PID // where the front sends Forward and Done
	metrics  *metrics
	proxies  proxies
	slots    slots // public requests in flight per tunnel
	hosts    atomic.Pointer[hostRoutes]
	access   *access
	reloadMu sync.Mutex // one Reload at a time
	// accessLog writes a line per public request it samples; nil: none.
	accessLog *accessLog
	srv       *http.Server
	listener  net.Listener
	admin     *http.Server // nil without an admin listener
	adminLn   net.Listener
	fleet     *fleetNode // nil for a relay alone
	upgrader  websocket.Upgrader

	closing   chan struct{}  // closed once Close has stopped the listener: waiting handlers give up
	draining  chan struct{}  // closed when Close begins: no session can come any more
	handlers  tracker        // HTTP handlers running
	running   sync.WaitGroup // the sessions' reader and writer goroutines
	served    chan error     // the Serve results, one per server
	errorLog  *io.PipeWriter // net/http's error log, into logrus
	closeOnce sync.Once
	closeErr  error
}

// Start validates cfg, starts the actors, listens on cfg.Listen (and
// cfg.AdminListen) and serves until Close. The error says what is wrong
// with cfg, or why it cannot listen.
func Start(cfg Config) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tunnels, err := cfg.tunnels()
	if err != nil {
		return nil, err
	}
	keys := auth.Keys(tunnels)
	var tlsConfig *tls.Config
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("relay: loading TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	accessLog := newAccessLog(cfg.AccessLog, cfg.Logger)
	cfg.Logger = sampled(cfg.Logger, cfg.LogRate)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	var adminLn net.Listener
	if cfg.AdminListen != "" {
		if adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("relay: admin listener: %w", err)
		}
	}
	closeListeners := func() {
		_ = ln.Close()
		if adminLn != nil {
			_ = adminLn.Close()
		}
	}
	var node *fleetNode
	if cfg.Fleet.Name != "" {
		if node, err = startFleet(cfg); err != nil {
			closeListeners()
			return nil, err
		}
	}
	budget := wire.NewBudget(cfg.MaxBuffered)
	m := newMetrics(keys, budget)
	if node != nil {
		members := func() int { return len(node.fleet.Members()) }
		m.members.Store(&members)
	}
	r := &Relay{
		cfg:       cfg,
		log:       cfg.Logger.WithField("actor", "relay"),
		metrics:   m,
		proxies:   proxies(cfg.TrustedProxies),
		slots:     slots{limit: cfg.MaxConcurrent, tunnels: m.tunnels, inFlight: m.inFlight},
		access:    newAccess(tunnels, cfg.Now, m.accessDenied),
		listener:  ln,
		adminLn:   adminLn,
		fleet:     node,
		closing:   make(chan struct{}),
		accessLog: accessLog,
		draining:  make(chan struct{}),
		served:    make(chan error, 3),
		upgrader: websocket.Upgrader{
			// Its own read buffer, smaller than net/http's 4 KiB one it
			// would otherwise keep: every session holds it for life, and
			// an idle one reads a heartbeat each 15 s. Large messages are
			// read past it, straight into their own buffer.
			ReadBufferSize:  readBuffer,
			WriteBufferPool: &sync.Pool{},
			// Supervisors are programs, not pages: there is no origin to trust.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
	r.setHosts(newHostRoutes(cfg.Domain, keys))
	r.system = actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return newSlogLogger(cfg.Logger) }),
		actor.WithDeadLetterThrottleInterval(deadLetterThrottle),
	)
	root := newRoot(cfg, keys, r.metrics, budget, &r.running)
	if node != nil {
		root.routerCfg.OnSessions = node.fleet.SetSessions
	}
	r.root = r.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return root }))
	if r.router, err = ask[*actor.PID](r, &routerPID{}); err != nil {
		r.system.Shutdown()
		closeListeners()
		if node != nil {
			_ = node.close(context.Background())
			_ = node.listener.Close()
		}
		return nil, fmt.Errorf("relay: starting actors: %w", err)
	}
	r.errorLog = cfg.Logger.WriterLevel(logrus.DebugLevel)
	errorLog := log.New(r.errorLog, "", 0)
	r.srv = &http.Server{
		Handler:           http.HandlerFunc(r.serveHTTP),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		TLSConfig:         tlsConfig,
		ErrorLog:          errorLog,
	}
	// Supervisor sessions batch their writes (see batchconn); public
	// requests' writes pass straight through.
	public := batchconn.Listen(ln)
	if cfg.ProxyProtocol {
		public = r.proxies.proxyProtocol(public)
	}
	go func() {
		if tlsConfig != nil {
			r.served <- r.srv.ServeTLS(public, "", "")
		} else {
			r.served <- r.srv.Serve(public)
		}
	}()
	fields := logrus.Fields{"addr": ln.Addr().String(), "tunnels": len(keys), "tls": tlsConfig != nil}
	if adminLn != nil {
		r.admin = &http.Server{
			Handler:           r.adminHandler(),
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			ErrorLog:          errorLog,
		}
		go func() { r.served <- r.admin.Serve(adminLn) }()
		fields["admin_addr"] = adminLn.Addr().String()
	}
	if node != nil {
		node.server = &http.Server{
			Handler:           http.HandlerFunc(r.serveInternal),
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			ErrorLog:          errorLog,
		}
		go func() { r.served <- node.server.Serve(batchconn.Listen(node.listener)) }()
		fields["cluster"], fields["node"] = cfg.Fleet.Name, node.fleet.Self()
		fields["internal_addr"], fields["cluster_addr"] = node.listener.Addr().String(), node.engine.Addr()
	}
	r.log.WithFields(fields).Info("Relay listening")
	return r, nil
}

// Addr is the address the relay listens on.
func (r *Relay) Addr() net.Addr { return r.listener.Addr() }

// InternalAddr is the address of the node-to-node listener of a relay in
// a fleet, nil for a relay alone.
func (r *Relay) InternalAddr() net.Addr {
	if r.fleet == nil {
		return nil
	}
	return r.fleet.listener.Addr()
}

// AdminAddr is the address of the admin endpoints, nil without them.
func (r *Relay) AdminAddr() net.Addr {
	if r.adminLn == nil {
		return nil
	}
	return r.adminLn.Addr()
}

// Close shuts the relay down: it stops taking connections, answers 503 the
// requests waiting for a session (none can connect any more), lets public
// requests in progress finish until ctx ends (then cuts them off), closes
// every supervisor connection (1001), stops the actors, and waits for all
// of its goroutines. Later calls return the first call's result.
func (r *Relay) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.system.Root.Send(r.root, &relaymsg.Drain{})
		close(r.draining)
		var errs []error
		servers := []*http.Server{r.srv}
		if r.admin != nil {
			servers = append(servers, r.admin)
		}
		if r.fleet != nil {
			servers = append(servers, r.fleet.server)
		}
		for _, srv := range servers {
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, err)
				_ = srv.Close()
			}
		}
		close(r.closing)
		if err := r.system.Root.StopFuture(r.root).Wait(); err != nil {
			errs = append(errs, fmt.Errorf("relay: stopping actors: %w", err))
		}
		r.system.Shutdown()
		if err := r.handlers.wait(ctx); err != nil {
			errs = append(errs, fmt.Errorf("relay: waiting for handlers: %w", err))
		}
		if err := waitGroup(ctx, &r.running); err != nil {
			errs = append(errs, fmt.Errorf("relay: waiting for sessions: %w", err))
		}
		for range servers {
			if err := <-r.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs = append(errs, err)
			}
		}
		if r.fleet != nil {
			// After the actors: the router's last word (no sessions) is
			// what the directory keeps.
			if err := r.fleet.close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("relay: leaving the fleet: %w", err))
			}
		}
		_ = r.errorLog.Close()
		r.closeErr = errors.Join(errs...)
		r.log.Info("Relay stopped")
	})
	return r.closeErr
}

func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tracker counts running handlers; unlike a WaitGroup it may be entered
// while someone waits, and refuses entry once closed.
type tracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when closed and n reaches 0
}

func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *tracker) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n--; t.n == 0 && t.closed {
		close(t.idle)
	}
}

func (t *tracker) wait(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	t.idle = make(chan struct{})
	if t.n == 0 {
		close(t.idle)
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serveHTTP is the relay's public front: /tunnel for supervisors, every
// other path routed through a tunnel.
func (r *Relay) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if !r.handlers.enter() {
		writeError(w, http.StatusServiceUnavailable, "relay shutting down")
		return
	}
	defer r.handlers.leave()
	if req.URL.Path == "/tunnel" {
		r.serveTunnel(w, req)
		return
	}
	r.serveProxy(w, req)
}

// adminHandler serves what the public must not see: which tunnels exist
// and are up, and the relay's figures.
func (r *Relay) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { r.serveHealth(w) })
	mux.HandleFunc("GET /livez", r.serveLivez)
	mux.HandleFunc("GET /readyz", r.serveReadyz)
	if r.fleet != nil {
		mux.HandleFunc("GET /fleet", r.serveFleet)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.registry, promhttp.HandlerOpts{}))
	// The dashboard: GET /, its assets, /api/tunnels and /events.
	r.dashboardRoutes(mux)
	if r.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}
