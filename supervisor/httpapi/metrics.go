package httpapi

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor/forward"
)

// tunnelCollector turns one Status, read at scrape time, into metrics, so
// they can never disagree with GET /status.
type tunnelCollector struct {
	src StatusSource

	state, connected, attempts, successRate, consecutive *prometheus.Desc
	failures, drops, uptime, connectTime                 *prometheus.Desc
	breakerState, breakerOpenings, breakerRecovery       *prometheus.Desc
	heartbeatRTT, heartbeatRTTMean                       *prometheus.Desc

	ready                                                   *prometheus.Desc
	connState, connConnected, connFailures, connConsecutive *prometheus.Desc
	connBreakerState                                        *prometheus.Desc
}

// NewTunnelCollector returns a Collector of the tunnel's status. The
// tunnel as a whole (its connections together, as Status aggregates them):
//
//	tunnel_state{state}                       1 for the current state (the best connection's), 0 for the others
//	tunnel_connected                          1 while at least one connection is AUTHENTICATED
//	tunnel_ready_connections                  connections AUTHENTICATED
//	tunnel_connection_attempts_total{result}  finished attempts, result "success" or "failure"
//	tunnel_connection_success_ratio           successes / attempts
//	tunnel_consecutive_failures
//	tunnel_failures_total{type}               failures by type (drops included), every type present
//	tunnel_connection_drops_total             authenticated connections that failed
//	tunnel_connection_uptime_seconds          of the current connection; 0 when none
//	tunnel_connect_time_seconds               dial to auth_ok, last connection (once known)
//	tunnel_breaker_state{state}               1 for closed, open or half-open
//	tunnel_breaker_openings_total
//	tunnel_breaker_recovery_seconds           until the breaker's trial; 0 unless open
//	tunnel_heartbeat_rtt_seconds              last heartbeat round trip (once known)
//	tunnel_heartbeat_rtt_mean_seconds
//
// And each connection, labelled with its index (connection="0", "1", ...),
// for every entry of Status.Connections:
//
//	tunnel_connection_state{connection,state}          1 for the connection's state, 0 for the others
//	tunnel_connection_connected{connection}            1 when the connection is AUTHENTICATED
//	tunnel_connection_failures_total{connection,type}  its failures by type (drops included), every type present
//	tunnel_connection_consecutive_failures{connection} its failures since its last success
//	tunnel_connection_breaker_state{connection,state}  1 for its breaker's state: closed, open or half-open
func NewTunnelCollector(src StatusSource) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &tunnelCollector{
		src:              src,
		state:            d("tunnel_state", "The tunnel's state: 1 for the current one.", "state"),
		connected:        d("tunnel_connected", "1 when the tunnel is authenticated and usable."),
		attempts:         d("tunnel_connection_attempts_total", "Finished connection attempts by result.", "result"),
		successRate:      d("tunnel_connection_success_ratio", "Successful attempts over all attempts."),
		consecutive:      d("tunnel_consecutive_failures", "Failures since the last success."),
		failures:         d("tunnel_failures_total", "Failed attempts and dropped connections by failure type.", "type"),
		drops:            d("tunnel_connection_drops_total", "Authenticated connections that ended in a failure."),
		uptime:           d("tunnel_connection_uptime_seconds", "How long the current connection has been authenticated; 0 when none is."),
		connectTime:      d("tunnel_connect_time_seconds", "Time from dial to auth_ok of the last connection."),
		breakerState:     d("tunnel_breaker_state", "The circuit breaker's state: 1 for the current one.", "state"),
		breakerOpenings:  d("tunnel_breaker_openings_total", "Times the circuit breaker opened."),
		breakerRecovery:  d("tunnel_breaker_recovery_seconds", "Time until the open breaker's trial attempt; 0 unless open."),
		heartbeatRTT:     d("tunnel_heartbeat_rtt_seconds", "Round trip of the last heartbeat."),
		heartbeatRTTMean: d("tunnel_heartbeat_rtt_mean_seconds", "Mean heartbeat round trip."),
		ready:            d("tunnel_ready_connections", "Connections of the tunnel that are authenticated and usable."),
		connState:        d("tunnel_connection_state", "Each connection's state: 1 for the current one.", "connection", "state"),
		connConnected:    d("tunnel_connection_connected", "1 when the connection is authenticated and usable.", "connection"),
		connFailures:     d("tunnel_connection_failures_total", "Each connection's failed attempts and drops by failure type.", "connection", "type"),
		connConsecutive:  d("tunnel_connection_consecutive_failures", "Each connection's failures since its last success.", "connection"),
		connBreakerState: d("tunnel_connection_breaker_state", "Each connection's circuit breaker state: 1 for the current one.", "connection", "state"),
	}
}

func (c *tunnelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.state, c.connected, c.attempts, c.successRate, c.consecutive, c.failures, c.drops, c.uptime,
		c.connectTime, c.breakerState, c.breakerOpenings, c.breakerRecovery, c.heartbeatRTT, c.heartbeatRTTMean,
		c.ready, c.connState, c.connConnected, c.connFailures, c.connConsecutive, c.connBreakerState,
	} {
		ch <- d
	}
}

func (c *tunnelCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Status()
	h := s.Health
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}

	for st := messages.Disconnected; st <= messages.CircuitBreaker; st++ {
		gauge(c.state, bool01(s.State == st), st.String())
	}
	gauge(c.connected, bool01(s.Connected))
	gauge(c.ready, float64(s.ReadyConnections))

	// A drop ends a connection, not an attempt: the failed attempts are the
	// failures that were not drops.
	failed := -h.Drops
	for _, ft := range messages.FailureTypes {
		n := h.FailureTypes[ft.String()]
		failed += n
		counter(c.failures, n, ft.String())
	}
	counter(c.attempts, h.Successes, "success")
	counter(c.attempts, max(failed, 0), "failure")
	gauge(c.successRate, h.SuccessRate)
	gauge(c.consecutive, float64(h.ConsecutiveFailures))
	counter(c.drops, h.Drops)
	gauge(c.uptime, valueOr0(h.Uptime))
	if h.LastConnectTime != nil {
		gauge(c.connectTime, *h.LastConnectTime)
	}

	for _, b := range breakerStates {
		gauge(c.breakerState, bool01(s.CircuitBreaker.State == b), b.String())
	}
	counter(c.breakerOpenings, s.CircuitBreaker.Openings)
	gauge(c.breakerRecovery, s.CircuitBreaker.RecoveryIn)

	if h.LastHeartbeatRTT != nil {
		gauge(c.heartbeatRTT, *h.LastHeartbeatRTT)
	}
	gauge(c.heartbeatRTTMean, h.MeanHeartbeatRTT)

	for _, conn := range s.Connections {
		i := strconv.Itoa(conn.Index)
		for st := messages.Disconnected; st <= messages.CircuitBreaker; st++ {
			gauge(c.connState, bool01(conn.State == st), i, st.String())
		}
		gauge(c.connConnected, bool01(conn.Connected), i)
		for _, ft := range messages.FailureTypes {
			counter(c.connFailures, conn.Health.FailureTypes[ft.String()], i, ft.String())
		}
		gauge(c.connConsecutive, float64(conn.Health.ConsecutiveFailures), i)
		for _, b := range breakerStates {
			gauge(c.connBreakerState, bool01(conn.CircuitBreaker.State == b), i, b.String())
		}
	}
}

// breakerStates are the states a breaker metric has a series for.
var breakerStates = []messages.BreakerState{messages.BreakerClosed, messages.BreakerOpen, messages.BreakerHalfOpen}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func valueOr0(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// ForwardMetrics counts the requests forwarded to the upstream. It is the
// forward.Observer of the binary's Forwarder and a prometheus.Collector:
//
//	tunnel_forward_requests_total{code}        by status sent; code "none" when the relay
//	                                           cancelled or the tunnel went away before any
//	tunnel_forward_request_bytes_total         request body bytes sent to the upstream
//	tunnel_forward_response_bytes_total        response body bytes sent to the relay
//	tunnel_forward_request_duration_seconds    histogram, arrival to the end of the response
type ForwardMetrics struct {
	requests *prometheus.CounterVec
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	duration prometheus.Histogram
}

// NewForwardMetrics returns forwarding metrics at zero.
func NewForwardMetrics() *ForwardMetrics {
	return &ForwardMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tunnel_forward_requests_total",
			Help: "Requests from the relay forwarded to the upstream, by the status answered.",
		}, []string{"code"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tunnel_forward_request_bytes_total",
			Help: "Request body bytes passed from the relay to the upstream.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tunnel_forward_response_bytes_total",
			Help: "Response body bytes passed from the upstream to the relay.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tunnel_forward_request_duration_seconds",
			Help: "Time from a request's arrival to the end of its response.",
			// TTS answers take from tens of milliseconds to a minute.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
}

// Forwarded counts one finished request.
func (m *ForwardMetrics) Forwarded(r forward.Result) {
	code := "none"
	if r.Status != 0 {
		code = strconv.Itoa(r.Status)
	}
	m.requests.WithLabelValues(code).Inc()
	m.bytesIn.Add(float64(r.BytesIn))
	m.bytesOut.Add(float64(r.BytesOut))
	m.duration.Observe(r.Duration.Seconds())
}

// Describe implements prometheus.Collector.
func (m *ForwardMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.bytesIn.Describe(ch)
	m.bytesOut.Describe(ch)
	m.duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *ForwardMetrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.bytesIn.Collect(ch)
	m.bytesOut.Collect(ch)
	m.duration.Collect(ch)
}
