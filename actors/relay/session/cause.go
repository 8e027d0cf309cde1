package session

import (
	"fmt"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Cause is why a session ended. It decides the close code sent, and is
// logged as failure_type.
type Cause int

// Causes of a session's end.
const (
	// PeerGone: the supervisor closed the connection, or it dropped.
	PeerGone Cause = iota
	// Malformed: a frame that is not JSON, has no type, or a binary
	// message cut short (close 1002).
	Malformed
	// NotAuthFirst: something other than auth came before auth_ok (1008).
	NotAuthFirst
	// InvalidKey: the auth manager refused the key (auth_error, then 1008).
	InvalidKey
	// AuthTimeout: no valid auth within the auth timeout (1008).
	AuthTimeout
	// TooBig: a message over the read limit (1009).
	TooBig
	// Silent: no frame and no pong for the heartbeat timeout (1001).
	Silent
	// TakenOver: a newer session of the same supervisor connection
	// (instance and index) replaced it (close with the code and reason the
	// router gave).
	TakenOver
	// WriteFailed: the socket could not be written in time.
	WriteFailed
	// Shutdown: the relay is stopping (1001).
	Shutdown
	// SlowReader: the supervisor let its answers pile up unread; the
	// socket is closed at once, with no close frame.
	SlowReader
	// Evicted: the connection was not authenticated yet and made room for
	// a newer one (1013).
	Evicted
	// SessionLimit: the key was good but the relay, or the tunnel, holds
	// as many authenticated sessions as it may (1013, with the reason the
	// refusal gave).
	SessionLimit
	// KeyRevoked: a reload of the relay's keys revoked or changed the
	// session's key (1008, with the reason the router gave).
	KeyRevoked
)

var causes = [...]struct {
	name   string
	code   int
	reason string
}{
	PeerGone:     {"PEER_GONE", wire.CloseNormal, ""},
	Malformed:    {"MALFORMED_FRAME", wire.CloseProtocolError, "malformed frame"},
	NotAuthFirst: {"NOT_AUTHENTICATED", wire.ClosePolicy, "auth must come first"},
	InvalidKey:   {"AUTH_FAILURE", wire.ClosePolicy, "Invalid API key"},
	AuthTimeout:  {"AUTH_TIMEOUT", wire.ClosePolicy, "no auth in time"},
	TooBig:       {"MESSAGE_TOO_BIG", wire.CloseTooBig, "message too big"},
	Silent:       {"HEARTBEAT_TIMEOUT", websocket.CloseGoingAway, "heartbeat timeout"},
	TakenOver:    {"TAKEN_OVER", wire.CloseNormal, "replaced by a newer session"},
	WriteFailed:  {"WRITE_FAILED", websocket.CloseGoingAway, "write failed"},
	Shutdown:     {"SHUTDOWN", websocket.CloseGoingAway, "relay shutting down"},
	SlowReader:   {"SLOW_READER", websocket.CloseAbnormalClosure, ""},
	Evicted:      {"EVICTED", wire.CloseTryAgainLater, "too many unauthenticated connections"},
	SessionLimit: {"SESSION_LIMIT", wire.CloseTryAgainLater, "relay at its session limit"},
	KeyRevoked:   {"KEY_REVOKED", wire.ClosePolicy, "key revoked"},
}

func (c Cause) String() string {
	if c < 0 || int(c) >= len(causes) {
		return fmt.Sprintf("Cause(%d)", int(c))
	}
	return causes[c].name
}
