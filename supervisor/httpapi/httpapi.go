package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/enhanced-tunnel/tunnel/messages"
)

// StatusSource gives the tunnel's current status; *supervisor.Tunnel is one.
type StatusSource interface {
	Status() messages.Status
}

// Config configures the handler.
type Config struct {
	Status   StatusSource    // required
	Forward  *ForwardMetrics // forwarding metrics; nil: none
	InFlight func() int      // requests being forwarded, exported as a gauge; nil: none
	// Profiling serves Go's profiles under /debug/pprof/ (net/http/pprof),
	// for finding where CPU and memory go; off by default, since a profile
	// costs CPU while it runs and shows the program's internals.
	Profiling bool
}

// Health is the body of GET /health, in the seed's shape.
type Health struct {
	TunnelConnected bool    `json:"tunnel_connected"`
	TunnelHealth    float64 `json:"tunnel_health"` // the connection success rate, 0 to 1
	Status          string  `json:"status"`        // "healthy" or "degraded"
}

// NewHandler returns the handler serving /health, /status and /metrics (and
// /debug/pprof/ when cfg.Profiling is set). Each
// handler has a Prometheus registry of its own, with the Go runtime and
// process collectors besides the tunnel's metrics.
func NewHandler(cfg Config) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		NewTunnelCollector(cfg.Status),
	)
	if cfg.Forward != nil {
		reg.MustRegister(cfg.Forward)
	}
	if cfg.InFlight != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tunnel_forward_in_flight",
			Help: "Requests being forwarded to the upstream.",
		}, func() float64 { return float64(cfg.InFlight()) }))
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		// Connected is the aggregate: one AUTHENTICATED connection is enough
		// for the relay to reach the upstream.
		s := cfg.Status.Status()
		h := Health{TunnelConnected: s.Connected, TunnelHealth: s.Health.SuccessRate, Status: "healthy"}
		code := http.StatusOK
		if !s.Connected {
			h.Status = "degraded"
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, h, false)
	})
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { serveLivez(w, r, cfg.Status) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { serveReadyz(w, cfg.Status) })
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, cfg.Status.Status(), true)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if cfg.Profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// writeJSON writes v; indented for the status, which people read with curl.
func writeJSON(w http.ResponseWriter, code int, v any, indent bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	_ = enc.Encode(v) // the client went away; nothing to tell it
}
