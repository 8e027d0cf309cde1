package relay

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/enhanced-tunnel/tunnel/actors/relay/router"
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
	// Kept by the router: sessions and held requests per tunnel, requests
	// sent through another session by reason.
	tunnelSessions *prometheus.GaugeVec
	held           *prometheus.GaugeVec
	retries        *prometheus.CounterVec
	resumes        *prometheus.CounterVec
	// hops counts public requests served through another node of a fleet.
	hops prometheus.Counter
	// members reports the fleet's members as this node sees them (0 for
	// a relay alone); set once the fleet has started.
	members atomic.Pointer[func() int]
	// tunnels are the tunnels a key opens; a reload swaps them.
	tunnels *tunnelSet
	// reloads counts reloads of the keys by result (ok, error).
	reloads *prometheus.CounterVec

	// accessDenied counts public requests refused by their tunnel's
	// access rules (the keys file's options), by tunnel and reason.
	accessDenied *prometheus.CounterVec
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
		tunnelSessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tunnel_relay_tunnel_sessions", Help: "Supervisor sessions serving each tunnel.",
		}, []string{"tunnel"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tunnel_relay_held_requests", Help: "Public requests waiting for a session of their tunnel, which has none.",
		}, []string{"tunnel"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tunnel_relay_retries_total", Help: "Public requests sent through another session after theirs ended, by reason (unwritten: the request never left the relay; idempotent: sent again once).",
		}, []string{"reason"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tunnel_relay_resumes_total", Help: "Response streams resumed on another connection of their supervisor after theirs was lost, by result (resumed; refused: stream_resume answered with an error; expired: cut off at the resume timeout).",
		}, []string{"result"}),
		hops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tunnel_relay_fleet_hops_total", Help: "Public requests this node handed to another node of its fleet, which had the tunnel's session, and that were answered there.",
		}),
		accessDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tunnel_relay_access_denied_total", Help: "Public requests refused by their tunnel's access rules, by tunnel and reason (address: 403; credentials: 401; rate: 429).",
		}, []string{"tunnel", "reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tunnel_relay_reloads_total", Help: "Reloads of the keys file (SIGHUP), by result (ok; error: the old keys and rules stay).",
		}, []string{"result"}),
		tunnels: &tunnelSet{},
	}
	m.tunnels.set(tunnels)
	m.reloads.WithLabelValues(reloadOK)
	m.reloads.WithLabelValues(reloadError)
	for name := range tunnels {
		// Every tunnel has its series from the start, at 0, so that an
		// alert on a tunnel with no session can fire before it ever had one.
		m.tunnelSessions.WithLabelValues(name)
		m.held.WithLabelValues(name)
	}
	m.retries.WithLabelValues(router.ReasonUnwritten)
	m.retries.WithLabelValues(router.ReasonIdempotent)
	for _, result := range []string{router.ResultResumed, router.ResultRefused, router.ResultExpired} {
		m.resumes.WithLabelValues(result)
	}
	fleetMembers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tunnel_relay_fleet_members", Help: "Members of the relay's fleet as this node sees them, itself included; 0 for a relay alone.",
	}, func() float64 {
		if members := m.members.Load(); members != nil {
			return float64((*members)())
		}
		return 0
	})
	buffered := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tunnel_relay_buffered_bytes", Help: "Bytes of streamed responses buffered for public clients.",
	}, func() float64 { return float64(budget.Used()) })
	m.registry.MustRegister(m.sessions, m.pending, m.evicted, m.authFailures, m.upgrades, m.requests, m.inFlight, m.latency,
		m.bytesIn, m.bytesOut, buffered, m.tunnelSessions, m.held, m.retries, m.resumes, m.hops, fleetMembers,
		m.accessDenied, m.reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(tunnel string, status int, took time.Duration) {
	if !m.tunnels.has(tunnel) {
		tunnel = otherTunnel
	}
	m.requests.WithLabelValues(tunnel, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(tunnel).Observe(took.Seconds())
}
