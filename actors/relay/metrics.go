package relay

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// otherTunnel labels requests for tunnel names no key opens, so that random
// public paths cannot grow the label set.
const otherTunnel = "_other"

// clientGone is the code label of a request whose public client left before
// it was answered (nginx's 499).
const clientGone = 499

type metrics struct {
	registry     *prometheus.Registry
	sessions     prometheus.Gauge
	pending      prometheus.Gauge
	evicted      *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	upgrades     *prometheus.CounterVec
	requests     *prometheus.CounterVec
	inFlight     *prometheus.GaugeVec
	latency      *prometheus.HistogramVec
	bytesIn      prometheus.Counter
	bytesOut     prometheus.Counter
	tunnels      map[string]bool
}

func newMetrics(tunnels map[string]string, budget *wire.Budget) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tunnel_relay_sessions", Help: "Authenticated supervisor connections.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tunnel_relay_unauthenticated_connections", Help: "Supervisor connections not authenticated yet.",
		}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tunnel_relay_evicted_total", Help: "Unauthenticated connections closed to make room, by the bound reached (address or all).",
		}, []string{"scope"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tunnel_relay_auth_failures_total", Help: "Supervisor auth failures, by reason (invalid_key, key_for_other_tunnel, timeout).",
		}, []string{"reason"}),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tunnel_relay_upgrades_total", Help: "WebSocket upgrade requests to /tunnel, by result (accepted, rate_limited).",
		}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tunnel_relay_requests_total", Help: "Public requests by tunnel and HTTP status (499: client left first).",
		}, []string{"tunnel", "code"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tunnel_relay_requests_in_flight", Help: "Public requests in progress, by tunnel: from their arrival to the end of their response.",
		}, []string{"tunnel"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tunnel_relay_request_duration_seconds", Help: "Time from a public request to the end of its response.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"tunnel"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tunnel_relay_bytes_in_total", Help: "Bytes of WebSocket messages received from supervisors.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tunnel_relay_bytes_out_total", Help: "Bytes of WebSocket messages sent to supervisors.",
		}),
		tunnels: make(map[string]bool, len(tunnels)),
	}
	for name := range tunnels {
		m.tunnels[name] = true
	}
	buffered := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tunnel_relay_buffered_bytes", Help: "Bytes of streamed responses buffered for public clients.",
	}, func() float64 { return float64(budget.Used()) })
	m.registry.MustRegister(m.sessions, m.pending, m.evicted, m.authFailures, m.upgrades, m.requests, m.inFlight, m.latency,
		m.bytesIn, m.bytesOut, buffered,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(tunnel string, status int, took time.Duration) {
	if !m.tunnels[tunnel] {
		tunnel = otherTunnel
	}
	m.requests.WithLabelValues(tunnel, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(tunnel).Observe(took.Seconds())
}
