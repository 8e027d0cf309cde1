package messages

import (
	"errors"
	"fmt"
)

// State is the tunnel's connection state, spelled as the seed spells it.
type State int

// The states of the seed. Only Authenticated means the tunnel is usable.
const (
	Disconnected   State = iota // not connected to the relay
	Connecting                  // establishing the WebSocket connection
	Connected                   // WebSocket connected, not authenticated
	Authenticating              // auth frame sent, waiting for auth_ok
	Authenticated               // fully connected and ready
	CircuitBreaker              // too many failures, waiting for recovery
)

var stateNames = [...]string{"DISCONNECTED", "CONNECTING", "CONNECTED", "AUTHENTICATING", "AUTHENTICATED", "CIRCUIT_BREAKER"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// MarshalText spells the state as the seed does, so JSON shows "AUTHENTICATED".
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state as the seed spells it, so a client can decode
// a status it fetched.
func (s *State) UnmarshalText(text []byte) error {
	return unmarshalName(text, stateNames[:], (*int)(s), "state")
}

// unmarshalName sets *v to the index of text in names.
func unmarshalName(text []byte, names []string, v *int, what string) error {
	for i, n := range names {
		if n == string(text) {
			*v = i
			return nil
		}
	}
	return fmt.Errorf("messages: unknown %s %q", what, text)
}

// FailureType classifies why a connection attempt or a connection failed.
// The zero value is Unknown.
type FailureType int

// The failure types of the seed. AuthFailure is retried after 30 s, every
// other type after 10 s.
const (
	Unknown           FailureType = iota // other errors
	AuthFailure                          // invalid API key, or the relay refused the upgrade (401/403/429)
	ConnectionRefused                    // TCP refused, no route
	NetworkError                         // connection dropped after auth_ok, or stale heartbeat
	Timeout                              // no upgrade or no auth_ok within the connect timeout
	ProtocolError                        // malformed frame, or a message over the read limit
)

// FailureTypes lists every failure type, in the seed's order.
var FailureTypes = []FailureType{AuthFailure, ConnectionRefused, NetworkError, Timeout, ProtocolError, Unknown}

var failureNames = [...]string{"UNKNOWN", "AUTH_FAILURE", "CONNECTION_REFUSED", "NETWORK_ERROR", "TIMEOUT", "PROTOCOL_ERROR"}

func (f FailureType) String() string {
	if f < 0 || int(f) >= len(failureNames) {
		return fmt.Sprintf("FailureType(%d)", int(f))
	}
	return failureNames[f]
}

// MarshalText spells the failure type as the seed does.
func (f FailureType) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText reads a failure type as the seed spells it.
func (f *FailureType) UnmarshalText(text []byte) error {
	return unmarshalName(text, failureNames[:], (*int)(f), "failure type")
}

// BreakerState is the circuit breaker's state.
type BreakerState int

// Breaker states. Closed lets attempts through; Open holds them for the
// recovery time; HalfOpen lets one trial through.
const (
	BreakerClosed BreakerState = iota
	BreakerOpen
	BreakerHalfOpen
)

var breakerNames = [...]string{"closed", "open", "half-open"}

func (b BreakerState) String() string {
	if b < 0 || int(b) >= len(breakerNames) {
		return fmt.Sprintf("BreakerState(%d)", int(b))
	}
	return breakerNames[b]
}

// MarshalText spells the breaker state for JSON.
func (b BreakerState) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText reads a breaker state as MarshalText spells it.
func (b *BreakerState) UnmarshalText(text []byte) error {
	return unmarshalName(text, breakerNames[:], (*int)(b), "breaker state")
}

// Errors every part of the tunnel returns, so callers can tell them apart with errors.Is.
var (
	// ErrQueueFull: Send while disconnected found the outbound queue at MaxQueue.
	ErrQueueFull = errors.New("tunnel: outbound queue full")
	// ErrStopped: the tunnel was stopped before the frame was written.
	ErrStopped = errors.New("tunnel: stopped")
	// ErrConnectionLost: the connection failed while a frame was being written (it
	// may or may not have reached the relay), or before an awaited answer came.
	ErrConnectionLost = errors.New("tunnel: connection lost")
	// ErrInvalidConfig: a configuration that cannot work; the error names
	// the setting.
	ErrInvalidConfig = errors.New("tunnel: invalid config")
	// ErrInvalidMessage: Send or Request got a message it cannot put on the
	// wire (no type, an unknown type, a response without id).
	ErrInvalidMessage = errors.New("tunnel: invalid message")
	// ErrRemote: Request's answer was an error frame from the relay.
	ErrRemote = errors.New("tunnel: relay answered with an error")
	// ErrDuplicateID: a message with this message_id is already in flight.
	ErrDuplicateID = errors.New("tunnel: duplicate message_id")
)
