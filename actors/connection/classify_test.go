package connection_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/connection"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

func TestClassify(t *testing.T) {
	const (
		dialing   = connection.PhaseDialing
		handshake = connection.PhaseHandshake
		authed    = connection.PhaseAuthenticated
	)
	dialErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	closeErr := func(code int) error { return &websocket.CloseError{Code: code} }
	ioTimeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	cases := []struct {
		phase connection.Phase
		err   error
		want  messages.FailureType
	}{
		{handshake, &connection.AuthError{Reason: "Invalid API key"}, messages.AuthFailure},
		{handshake, closeErr(wire.ClosePolicy), messages.AuthFailure},
		{dialing, &connection.UpgradeError{StatusCode: 401}, messages.AuthFailure},
		{dialing, &connection.UpgradeError{StatusCode: 403}, messages.AuthFailure},
		{dialing, &connection.UpgradeError{StatusCode: 429}, messages.AuthFailure},
		{dialing, &connection.UpgradeError{StatusCode: 404}, messages.Unknown},
		{dialing, &connection.UpgradeError{StatusCode: 503}, messages.Unknown},

		{dialing, dialErr(syscall.ECONNREFUSED), messages.ConnectionRefused},
		{dialing, dialErr(syscall.EHOSTUNREACH), messages.ConnectionRefused},
		{dialing, dialErr(syscall.ENETUNREACH), messages.ConnectionRefused},

		{dialing, context.DeadlineExceeded, messages.Timeout},
		{dialing, fmt.Errorf("dial: %w", context.DeadlineExceeded), messages.Timeout},
		{dialing, ioTimeout, messages.Timeout},
		{handshake, ioTimeout, messages.Timeout},

		{handshake, fmt.Errorf("%w: not json", wire.ErrMalformed), messages.ProtocolError},
		{authed, fmt.Errorf("%w: no type", wire.ErrMalformed), messages.ProtocolError},
		{handshake, websocket.ErrReadLimit, messages.ProtocolError},
		{authed, websocket.ErrReadLimit, messages.ProtocolError},
		{handshake, closeErr(wire.CloseProtocolError), messages.ProtocolError},
		{authed, closeErr(wire.CloseProtocolError), messages.ProtocolError},
		{authed, closeErr(wire.CloseTooBig), messages.ProtocolError},
		{authed, fmt.Errorf("%w: auth frame after auth_ok", connection.ErrProtocol), messages.ProtocolError},

		{handshake, closeErr(wire.CloseTryAgainLater), messages.NetworkError},
		{authed, closeErr(wire.CloseTryAgainLater), messages.NetworkError},
		{authed, closeErr(websocket.CloseAbnormalClosure), messages.NetworkError},
		{authed, closeErr(wire.CloseNormal), messages.NetworkError},
		{authed, closeErr(wire.ClosePolicy), messages.NetworkError},
		{authed, io.EOF, messages.NetworkError},
		{authed, io.ErrClosedPipe, messages.NetworkError},
		{authed, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, messages.NetworkError},
		{authed, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, messages.NetworkError},
		{authed, ioTimeout, messages.NetworkError},
		{authed, fmt.Errorf("%w: no heartbeat ack for 45.2s", connection.ErrStale), messages.NetworkError},

		{handshake, io.EOF, messages.Unknown},
		{handshake, closeErr(websocket.CloseAbnormalClosure), messages.Unknown},
		{handshake, dialErr(syscall.ECONNRESET), messages.Unknown},
		{dialing, errors.New("x509: certificate signed by unknown authority"), messages.Unknown},
		{authed, errors.New("something else"), messages.Unknown},
		{authed, nil, messages.Unknown},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v/%v", tc.phase, tc.err), func(t *testing.T) {
			if got := connection.Classify(tc.phase, tc.err); got != tc.want {
				t.Fatalf("Classify(%v, %v) = %v, want %v", tc.phase, tc.err, got, tc.want)
			}
		})
	}
}

func TestErrorTexts(t *testing.T) {
	if got := (&connection.AuthError{Reason: "Invalid API key"}).Error(); got != "Authentication failed: Invalid API key" {
		t.Errorf("AuthError text = %q", got)
	}
	up := &connection.UpgradeError{StatusCode: 401}
	if got := up.Error(); got != "connection: relay refused the upgrade with HTTP 401 Unauthorized" {
		t.Errorf("UpgradeError text = %q", got)
	}
	if !errors.Is(up, websocket.ErrBadHandshake) {
		t.Error("UpgradeError does not match websocket.ErrBadHandshake")
	}
	if got := connection.PhaseHandshake.String(); got != "handshake" {
		t.Errorf("PhaseHandshake = %q", got)
	}
}
