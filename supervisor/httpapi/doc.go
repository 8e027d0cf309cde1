// Package httpapi is the tunnel-supervisor's own HTTP face, for health checks,
// people and Prometheus:
//
//	GET /health   {"tunnel_connected":bool,"tunnel_health":<success rate>,"status":"healthy"|"degraded"},
//	              the seed's health check: 200 while the tunnel is connected,
//	              that is while at least one of its connections is
//	              AUTHENTICATED (Status.Connected), 503 otherwise
//	GET /status   the tunnel's full status (messages.Status) as JSON
//	GET /metrics  Prometheus metrics, from a registry of the handler's own
//
// The tunnel's metrics are read from its status at scrape time (a Collector,
// NewTunnelCollector): the tunnel as a whole, as before it had several
// connections, and each connection with a connection="<index>" label. The
// forwarding metrics are counted as requests finish
// (ForwardMetrics, a forward.Observer). Neither ever sees the API key.
package httpapi
