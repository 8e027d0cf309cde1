package stress

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/internal/faultproxy"
	"github.com/enhanced-tunnel/tunnel/internal/ttsdemo"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/agent"
)

const (
	// relayRequestTimeout is the relay's wait for a response frame (504
	// beyond), well inside the clients' requestDeadline.
	relayRequestTimeout = 10 * time.Second
	// speechPace is the demo upstream's pause between 100 ms audio chunks:
	// synthesis faster than real time, as on a GPU.
	speechPace = 10 * time.Millisecond
	// stopTimeout bounds the stop of each part at the end.
	stopTimeout = 30 * time.Second
	// settleTimeout bounds the wait for goroutines to end after the stop.
	settleTimeout = 10 * time.Second
)

// Run starts a relay, a supervisor, the demo upstream and the fault proxy
// in this process, sends requests through the relay's public front while
// injecting faults for cfg.Duration, stops everything and reports. The
// error is for a run that could not be made (a bad config, a port that
// cannot be had); whether the tunnel met its expectations is the report's
// Check. Cancelling ctx ends the run early, with a report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{
		Failures: cfg.Failures, DurationSeconds: cfg.Duration.Seconds(), Seed: cfg.Seed, Concurrency: cfg.Concurrency,
		HeartbeatTimeoutSeconds: cfg.HeartbeatTimeout.Seconds(), HeartbeatIntervalSeconds: cfg.HeartbeatInterval.Seconds(),
		RetryDelaySeconds: cfg.RetryDelay.Seconds(), Connections: cfg.Connections,
	}
	rep.GoroutinesStart, rep.HeapStartBytes = measure()

	var panics atomic.Int64
	guard := func(what string, fn func()) {
		defer func() {
			if v := recover(); v != nil {
				panics.Add(1)
				if cfg.Progress != nil {
					fmt.Fprintf(cfg.Progress, "panic in %s: %v\n%s", what, v, debug.Stack())
				}
			}
		}()
		fn()
	}

	mon := newMonitor(cfg.Connections)
	w, err := startWorld(cfg, mon, guard)
	if err != nil {
		return nil, err
	}
	runErr := w.exercise(ctx, cfg, rep, guard)
	w.stop(rep)

	rep.GoroutinesEnd, rep.HeapEndBytes = settle(rep.GoroutinesStart)
	snap := mon.snapshot()
	rep.Reconnects = snap.reconnects
	rep.StaleDetections = snap.stales
	for _, d := range snap.recoveries {
		rep.ReconnectSeconds = append(rep.ReconnectSeconds, d.Seconds())
		rep.MaxReconnectSeconds = max(rep.MaxReconnectSeconds, d.Seconds())
	}
	rep.ActorPanics = snap.actorPanics
	rep.Panics = int(panics.Load()) + len(snap.actorPanics)
	rep.Check()
	return rep, runErr
}

// world is everything a run starts.
type world struct {
	upstream *http.Server
	served   chan error
	relay    *relayHost
	proxies  []*faultproxy.Proxy // one per connection, each in front of the relay
	agent    *agent.Agent        // the supervisor, as tunnel-supervisor runs it
	mon      *monitor
	client   *http.Client
}

func startWorld(cfg Config, mon *monitor, guard func(string, func())) (w *world, err error) {
	w = &world{mon: mon, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			w.stop(&Report{})
		}
	}()

	mux := http.NewServeMux()
	mux.Handle("/", ttsdemo.NewHandler(ttsdemo.Pause(speechPace)))
	mux.HandleFunc("POST /echo", func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		rw.Header().Set("Content-Type", "application/octet-stream")
		_, _ = rw.Write(body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return w, fmt.Errorf("stress: upstream: %w", err)
	}
	w.upstream = &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			guard("upstream handler", func() { mux.ServeHTTP(rw, r) })
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { w.served <- w.upstream.Serve(ln) }()

	key := randomKey()
	rcfg := relay.DefaultConfig()
	rcfg.Listen, rcfg.AdminListen = "127.0.0.1:0", "" // no admin endpoints: nothing here reads them
	rcfg.AuthToken = key
	rcfg.RequestTimeout = relayRequestTimeout
	rcfg.Logger = newLogger(cfg.Logger, logrus.InfoLevel, relayHook{mon})
	w.relay = &relayHost{cfg: rcfg}
	if err := w.relay.start(); err != nil {
		return w, err
	}

	acfg := agent.DefaultConfig()
	scfg := &acfg.Tunnel
	for range cfg.Connections {
		proxy, err := faultproxy.Start(w.relay.addr())
		if err != nil {
			return w, err
		}
		w.proxies = append(w.proxies, proxy)
		scfg.RelayURLs = append(scfg.RelayURLs, "ws://"+proxy.Addr().String()+"/tunnel")
	}
	scfg.Connections = cfg.Connections
	scfg.APIKey = key
	scfg.HeartbeatInterval = cfg.HeartbeatInterval
	scfg.HeartbeatTimeout = cfg.HeartbeatTimeout
	scfg.RetryDelay = cfg.RetryDelay
	scfg.AuthRetryDelay = cfg.RetryDelay
	scfg.BreakerRecovery = cfg.BreakerRecovery
	scfg.ConnectTimeout = cfg.ConnectTimeout
	scfg.CloseTimeout = time.Second
	scfg.OnStateChange = func(s messages.StateChanged) { guard("OnStateChange", func() { mon.stateChanged(s) }) }
	acfg.Forward = "http://" + ln.Addr().String()
	// Debug: protoactor reports a failing actor at that level.
	acfg.Logger = newLogger(cfg.Logger, logrus.DebugLevel, mon)
	acfg.WrapHandler = func(next supervisor.Handler) supervisor.Handler {
		return func(ctx context.Context, t *supervisor.Tunnel, msg *messages.TunnelMessage) {
			guard("OnMessage", func() { next(ctx, t, msg) })
		}
	}
	if w.agent, err = agent.Start(acfg); err != nil {
		return w, err
	}

	w.client = &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DisableCompression:  true, // bodies are checked byte for byte
		MaxIdleConnsPerHost: cfg.Concurrency,
		IdleConnTimeout:     30 * time.Second,
	}}
	select {
	case <-mon.upSignal():
	case <-time.After(recoveryWait):
		return w, fmt.Errorf("stress: the tunnel did not come up within %v", recoveryWait)
	}
	return w, nil
}

// exercise runs the load and the faults for cfg.Duration (or until ctx
// ends), then lifts the faults, waits for the tunnel to be back, stops the
// load and waits for the requests in flight, and fills in rep.
func (w *world) exercise(ctx context.Context, cfg Config, rep *Report, guard func(string, func())) error {
	rep.GoroutinesLoadedStart, rep.HeapLoadedStartBytes = measure()
	began := time.Now()
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	gate := &sync.RWMutex{}
	tl := newTally()
	ld := &load{client: w.client, base: "http://" + w.relay.addr(), gate: gate, tally: tl, stop: make(chan struct{})}
	ld.start(cfg.Seed, cfg.Concurrency, guard)

	in := &injector{cfg: cfg, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 1<<32)), proxies: w.proxies, relay: w.relay, mon: w.mon,
		gate: gate, trace: cfg.Progress, began: began, pathCounts: make([]int, len(w.proxies))}
	injected := make(chan error, 1)
	go func() {
		var err error
		guard("fault injector", func() { err = in.run(runCtx) })
		injected <- err
	}()

	progressDone := make(chan struct{})
	if cfg.Progress != nil {
		go guard("progress", func() {
			defer close(progressDone)
			w.progress(runCtx, cfg, began, tl, in)
		})
	} else {
		close(progressDone)
	}

	runErr := <-injected
	cancel()
	<-progressDone
	// The tunnel should be back once the last fault is lifted: give it the
	// longest a recovery may take, then stop the load.
	select {
	case <-w.mon.upSignal():
		rep.UpAtEnd = true
	case <-time.After(cfg.BreakerRecovery + cfg.RetryDelay + cfg.ConnectTimeout + 5*time.Second):
	}
	ld.finish()
	rep.ElapsedSeconds = time.Since(began).Seconds()

	tl.mu.Lock()
	rep.RequestsSent, rep.RequestsOK = tl.sent, tl.ok
	rep.RequestsFailedExplicit, rep.RequestsLost = tl.failed, tl.lost
	rep.RequestsAbortedMidstream = tl.failedBy["aborted_midstream"]
	if tl.sent > 0 {
		rep.RequestsOKPercent = 100 * float64(tl.ok) / float64(tl.sent)
	}
	rep.FailedBy, rep.LostBy, rep.LostExamples = tl.failedBy, tl.lostBy, tl.lostDetails
	tl.mu.Unlock()

	rep.Faults = in.faultCounts()
	rep.PathFaults = in.faultsByPath()
	in.mu.Lock()
	rep.NotBack = in.notBack
	for _, b := range in.blackholes {
		if !b.armed {
			continue
		}
		rep.Blackholes++
		if !b.detected {
			rep.BlackholesUndetected = append(rep.BlackholesUndetected, b.start.Sub(began).Seconds())
			continue
		}
		rep.DetectionSeconds = append(rep.DetectionSeconds, b.after.Seconds())
		rep.MaxDetectionSeconds = max(rep.MaxDetectionSeconds, b.after.Seconds())
	}
	in.mu.Unlock()

	st := w.agent.Tunnel().Status()
	rep.BreakerOpenings = st.CircuitBreaker.Openings
	rep.FailureTypes = st.Health.FailureTypes
	w.client.CloseIdleConnections()
	rep.GoroutinesLoadedEnd, rep.HeapLoadedEndBytes = measure()
	return runErr
}

func (w *world) progress(ctx context.Context, cfg Config, began time.Time, tl *tally, in *injector) {
	tick := time.NewTicker(cfg.ProgressEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		tl.mu.Lock()
		sent, okN, failedN, lostN := tl.sent, tl.ok, tl.failed, tl.lost
		tl.mu.Unlock()
		faults := 0
		for _, n := range in.faultCounts() {
			faults += n
		}
		snap := w.mon.snapshot()
		fmt.Fprintf(cfg.Progress, "%6.1fs  %-15s requests %d: ok %d, failed %d, lost %d  faults %d  reconnects %d  stale %d\n",
			time.Since(began).Seconds(), w.mon.current(), sent, okN, failedN, lostN, faults, snap.reconnects, snap.stales)
	}
}

// stop ends everything the world started, in order: the supervisor (its
// drain finds nothing in flight: the load has ended), the proxies, the
// relay, the upstream.
func (w *world) stop(rep *Report) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	note := func(what string, err error) {
		if err != nil {
			rep.StopErrors = append(rep.StopErrors, what+": "+err.Error())
		}
	}
	if w.agent != nil {
		note("supervisor", w.agent.Shutdown(ctx))
	}
	if w.client != nil {
		w.client.CloseIdleConnections()
	}
	for _, proxy := range w.proxies {
		note("fault proxy", proxy.Close())
	}
	if w.relay != nil {
		note("relay", w.relay.close())
	}
	if w.upstream != nil {
		note("upstream", w.upstream.Shutdown(ctx))
		if err := <-w.served; !errors.Is(err, http.ErrServerClosed) {
			note("upstream", err)
		}
	}
}

// relayHost keeps the relay, which a fault closes and starts again on the
// same port.
type relayHost struct {
	mu  sync.Mutex
	cfg relay.Config
	r   *relay.Relay
}

func (h *relayHost) addr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cfg.Listen
}

// start starts the relay on its port; the port of a relay just closed may
// take a moment to be free again.
func (h *relayHost) start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := relay.Start(h.cfg)
		if err == nil {
			h.r = r
			h.cfg.Listen = r.Addr().String()
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return fmt.Errorf("stress: starting the relay: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *relayHost) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.r == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	err := h.r.Close(ctx)
	h.r = nil
	return err
}

func randomKey() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

// measure is the number of goroutines and the live heap, after a GC.
func measure() (goroutines int, heap uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapAlloc
}

// settle waits until the goroutines are back to start, or settleTimeout has
// passed, and measures (the check then allows goroutineAllowance more). Some
// end a moment after the stop that ended their work (protoactor's
// dead-letter throttle, net/http's connection readers).
func settle(start int) (goroutines int, heap uint64) {
	deadline := time.Now().Add(settleTimeout)
	for runtime.NumGoroutine() > start && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return measure()
}

// newLogger logs at level to nowhere, through hook; to is the user's
// logger, which also gets every entry at its own level, or nil.
func newLogger(to *logrus.Logger, level logrus.Level, hook logrus.Hook) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetFormatter(nopFormatter{})
	l.SetLevel(level)
	l.AddHook(hook)
	if to != nil {
		l.AddHook(passOn{to})
	}
	return l
}

// nopFormatter spares formatting entries that go nowhere.
type nopFormatter struct{}

func (nopFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }

// passOn hands entries on to another logger, at that logger's level.
type passOn struct{ to *logrus.Logger }

func (p passOn) Levels() []logrus.Level { return logrus.AllLevels }

func (p passOn) Fire(e *logrus.Entry) error {
	if p.to.IsLevelEnabled(e.Level) {
		p.to.WithFields(e.Data).WithTime(e.Time).Log(e.Level, e.Message)
	}
	return nil
}
