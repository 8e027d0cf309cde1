package relay

// The probes of the admin listener, for an orchestrator (Kubernetes'
// livenessProbe and readinessProbe): /livez says the process and its actor
// system answer, /readyz that the relay takes traffic.

import (
	"net/http"
	"time"
)

// probeTimeout bounds the root actor's answer to /livez: short, since a
// live relay answers in microseconds, and a probe has a timeout of its own
// (1 s by default in Kubernetes).
const probeTimeout = 500 * time.Millisecond

// probe is the body of /livez and /readyz: {"status":"ok"}, or a status and
// the reason of a 503.
type probe struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// serveLivez answers 200 when the root actor answers within probeTimeout,
// 503 otherwise. It does not look at the tunnels: a relay with no
// supervisor connected is alive, and restarting it would not bring one.
func (r *Relay) serveLivez(w http.ResponseWriter, _ *http.Request) {
	if err := r.alive(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, probe{Status: "unavailable", Reason: "the relay's actors do not answer"})
		return
	}
	writeJSON(w, http.StatusOK, probe{Status: "ok"})
}

// alive asks the root actor a question it answers at once.
func (r *Relay) alive() error {
	_, err := r.system.Root.RequestFuture(r.root, &routerPID{}, probeTimeout).Result()
	return err
}

// serveReadyz answers 200 while the relay listens and, in a fleet, has
// joined it; 503 once Close began, or while the node is not a member of
// its fleet (it could neither find nor offer the tunnels of other nodes).
func (r *Relay) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	if reason := r.notReady(); reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, probe{Status: "unavailable", Reason: reason})
		return
	}
	writeJSON(w, http.StatusOK, probe{Status: "ok"})
}

func (r *Relay) notReady() string {
	select {
	case <-r.draining:
		return "relay shutting down"
	default:
	}
	if r.fleet != nil && !r.fleet.fleet.Joined() {
		return "not joined to fleet " + r.cfg.Fleet.Name
	}
	if err := r.alive(); err != nil {
		return "the relay's actors do not answer"
	}
	return ""
}
