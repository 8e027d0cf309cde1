package connection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Phase is how far a connection had got when it failed; the same error means
// different things in different phases (a timeout before auth_ok is TIMEOUT,
// after it a dropped connection).
type Phase int

const (
	PhaseDialing       Phase = iota // TCP connect, TLS and the WebSocket upgrade
	PhaseHandshake                  // auth frame being sent or waiting for the relay's answer
	PhaseAuthenticated              // after auth_ok
)

var phaseNames = [...]string{"dialing", "handshake", "authenticated"}

func (p Phase) String() string {
	if p < 0 || int(p) >= len(phaseNames) {
		return fmt.Sprintf("Phase(%d)", int(p))
	}
	return phaseNames[p]
}

var (
	// ErrProtocol is wrapped by the errors of frames that break the protocol
	// although they decode: an auth frame after auth_ok, anything but an auth
	// answer before it.
	ErrProtocol = errors.New("connection: protocol violation")
	// ErrStale is wrapped by the error of a connection failed by
	// *actormsg.Stale.
	ErrStale = errors.New("connection: stale connection")
)

// AuthError is the relay's auth_error answer. Its text is the seed's log
// line, e.g. "Authentication failed: Invalid API key".
type AuthError struct {
	Reason string // the relay's error text
}

func (e *AuthError) Error() string { return "Authentication failed: " + e.Reason }

// UpgradeError is an HTTP answer other than 101 to the WebSocket upgrade.
type UpgradeError struct {
	StatusCode int
}

func (e *UpgradeError) Error() string {
	return fmt.Sprintf("connection: relay refused the upgrade with HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// Unwrap makes an UpgradeError match websocket.ErrBadHandshake.
func (e *UpgradeError) Unwrap() error { return websocket.ErrBadHandshake }

// Classify names the failure type of err, the first cause of a connection's
// end, in phase, as PROTOCOL.md lists them:
//   - auth_error, close 1008 before auth_ok, HTTP 401/403/429 on the upgrade: AUTH_FAILURE
//   - TCP refused, no route, host or network unreachable while dialing: CONNECTION_REFUSED
//   - a timeout before auth_ok (dial, upgrade or auth reply): TIMEOUT
//   - malformed frame, message over the read limit, close 1002 or 1009,
//     ErrProtocol: PROTOCOL_ERROR
//   - close 1013 (relay at its session limit): NETWORK_ERROR
//   - after auth_ok, a dropped connection (EOF, reset, closed, timeout, any
//     other close code) or ErrStale: NETWORK_ERROR
//   - anything else: UNKNOWN
func Classify(phase Phase, err error) messages.FailureType {
	var (
		authErr    *AuthError
		upgradeErr *UpgradeError
		closeErr   *websocket.CloseError
	)
	switch {
	case err == nil:
		return messages.Unknown
	case errors.As(err, &authErr):
		return messages.AuthFailure
	case errors.As(err, &upgradeErr):
		switch upgradeErr.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
			return messages.AuthFailure
		}
		return messages.Unknown
	case errors.Is(err, ErrProtocol), errors.Is(err, wire.ErrMalformed), errors.Is(err, websocket.ErrReadLimit):
		return messages.ProtocolError
	case errors.Is(err, ErrStale):
		return messages.NetworkError
	case errors.As(err, &closeErr):
		switch {
		case closeErr.Code == wire.CloseProtocolError, closeErr.Code == wire.CloseTooBig:
			return messages.ProtocolError
		case closeErr.Code == wire.ClosePolicy && phase != PhaseAuthenticated:
			return messages.AuthFailure
		case closeErr.Code == wire.CloseTryAgainLater, phase == PhaseAuthenticated:
			return messages.NetworkError
		}
		return messages.Unknown
	}
	switch phase {
	case PhaseDialing, PhaseHandshake:
		if phase == PhaseDialing && unreachable(err) {
			return messages.ConnectionRefused
		}
		if isTimeout(err) {
			return messages.Timeout
		}
	case PhaseAuthenticated:
		if dropped(err) {
			return messages.NetworkError
		}
	}
	return messages.Unknown
}

func unreachable(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func dropped(err error) bool {
	for _, target := range []error{
		io.EOF, io.ErrUnexpectedEOF, io.ErrClosedPipe, net.ErrClosed,
		syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ENETDOWN,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return isTimeout(err)
}
