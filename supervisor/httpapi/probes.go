package httpapi

import (
	"context"
	"net/http"
	"time"
)

// ProbeTimeout bounds the actors' answer to GET /livez: short, under a
// Kubernetes probe's default timeout of 1 s.
const ProbeTimeout = 500 * time.Millisecond

// Pinger is a StatusSource that can say whether its actors answer;
// *supervisor.Tunnel is one. Without it /livez answers 200 as long as the
// process serves HTTP.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Probe is the body of GET /livez and GET /readyz: {"status":"ok"}, or a
// status and the reason of a 503.
type Probe struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// serveLivez answers 200 while the process and its actor system answer,
// whatever the connections: a lost relay must not get a healthy supervisor
// restarted, since a restart does not mend the network.
func serveLivez(w http.ResponseWriter, r *http.Request, src StatusSource) {
	if p, ok := src.(Pinger); ok {
		ctx, cancel := context.WithTimeout(r.Context(), ProbeTimeout)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, Probe{Status: "unavailable", Reason: "the supervisor's actors do not answer"}, false)
			return
		}
	}
	writeJSON(w, http.StatusOK, Probe{Status: "ok"}, false)
}

// serveReadyz answers 200 while at least one connection is authenticated
// (the relay can reach the upstream through this supervisor), else 503.
func serveReadyz(w http.ResponseWriter, src StatusSource) {
	s := src.Status()
	if !s.Connected {
		writeJSON(w, http.StatusServiceUnavailable, Probe{Status: "unavailable", Reason: "no connection authenticated (state " + s.State.String() + ")"}, false)
		return
	}
	writeJSON(w, http.StatusOK, Probe{Status: "ok"}, false)
}
