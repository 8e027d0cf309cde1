package relay

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
)

// ask sends msg to the root actor and waits for the answer of type T.
func ask[T any](r *Relay, msg any) (T, error) {
	var zero T
	res, err := r.system.Root.RequestFuture(r.root, msg, askTimeout).Result()
	if err != nil {
		return zero, err
	}
	answer, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("relay: unexpected answer %T", res)
	}
	return answer, nil
}

func writeError(w http.ResponseWriter, status int, text string) {
	writeJSON(w, status, map[string]string{"error": text})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (r *Relay) serveHealth(w http.ResponseWriter) {
	t, err := ask[*relaymsg.Tunnels](r, &relaymsg.ListTunnels{})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "relay not responding")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "tunnels": t.Names})
}

// serveTunnel upgrades a supervisor's connection and hands it to a new
// session. An address that upgrades faster than its rate gets 429 first.
func (r *Relay) serveTunnel(w http.ResponseWriter, req *http.Request) {
	client, _ := r.proxies.client(req)
	addr := source(client, req.RemoteAddr)
	verdict, err := ask[*relaymsg.AddressVerdict](r, &relaymsg.CheckAddress{Addr: addr})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "relay not responding")
		return
	}
	if verdict.Blocked {
		r.metrics.upgrades.WithLabelValues("rate_limited").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(verdict.RetryAfter.Seconds()))))
		writeError(w, http.StatusTooManyRequests, "too many connections from this address; retry later")
		return
	}
	conn, err := r.upgrader.Upgrade(w, req, nil)
	if err != nil {
		// The upgrader has answered the client already.
		r.log.WithFields(logrus.Fields{"remote_addr": addr, "error": err}).Debug("WebSocket upgrade failed")
		return
	}
	r.metrics.upgrades.WithLabelValues("accepted").Inc()
	if _, err := ask[*sessionOpened](r, &openSession{conn: conn, addr: addr}); err != nil {
		refuse(conn, websocket.CloseGoingAway, "relay shutting down")
	}
}

// refuse closes a connection no session took: a close frame, a moment for
// the peer's answer, then the socket.
func refuse(conn *websocket.Conn, code int, reason string) {
	deadline := time.Now().Add(time.Second)
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline)
	_ = conn.SetReadDeadline(deadline)
	for {
		if _, _, err := conn.NextReader(); err != nil {
			break
		}
	}
	_ = conn.Close()
}
