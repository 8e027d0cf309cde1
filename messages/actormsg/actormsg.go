package actormsg

import (
	"context"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// SendHeartbeat asks the connection to write a heartbeat frame with these
// fields. The heartbeat actor sends it every heartbeat interval.
type SendHeartbeat struct {
	MessageID string
	Timestamp int64 // unix milliseconds
}

// HeartbeatAck is a heartbeat_ack frame the connection received.
type HeartbeatAck struct {
	MessageID string
	Timestamp int64
	At        time.Time
}

// HeartbeatRTT is one measured heartbeat round trip.
type HeartbeatRTT struct {
	RTT time.Duration
}

// Stale says no heartbeat ack came for longer than the heartbeat timeout:
// the connection must fail with NETWORK_ERROR.
type Stale struct {
	SinceAck time.Duration
}

// Outbound is one WebSocket message to write: the control frame Frame,
// which the connection encodes as its session negotiated (bin1 or JSON
// text), or, when Frame is nil, Data already encoded (a binary chunk when
// Binary is set, else JSON text). Reply receives exactly
// one value: nil once written, or an error saying why not. Reply must have
// room for one value (capacity 1), so that no writer ever blocks on it.
// Writers skip a frame whose Ctx is done and reply with its error.
type Outbound struct {
	Ctx    context.Context
	Frame  *wire.Frame
	Binary bool
	Data   []byte
	Reply  chan error
	// Pinned frames must go out on connection Conn during its authenticated
	// session Epoch: a response goes back the way its request came, a
	// stream's chunks follow its first frame. When that session is gone they
	// fail with ErrConnectionLost instead of waiting for, or taking, another
	// connection. For a frame that is not pinned, the supervisor sets Conn
	// and Epoch to the connection it hands the frame to, before the frame is
	// written: the sender reads them once Reply has answered nil.
	Pinned      bool
	Conn, Epoch int
}

// Answer delivers err to the frame's sender without ever blocking.
func (o *Outbound) Answer(err error) {
	select {
	case o.Reply <- err:
	default:
	}
}

// Undeliverable hands frames back to the parent that a connection could not
// start writing (it was not authenticated, or it failed first). The parent
// queues them again, in order, for the next connection.
type Undeliverable struct {
	Frames []*Outbound
}

// Inbound is one application frame the connection received (request,
// response, error, cancel, stream frames, window_update) or, when Chunk is
// set, one binary chunk of a streamed body, with the connection and the
// authenticated session (Epoch) it came on. The connection's reader hands it
// straight to the data path, not through the actors, with the session's
// Sink, where answers go back the same way.
type Inbound struct {
	Frame       *wire.Frame
	Chunk       *Chunk
	Conn, Epoch int
	Sink        Sink
}

// Sink takes frames for one authenticated session's socket without a
// mailbox hop. Push returns false, and does not take o, once the session has
// ended; o is then the sender's to fail. A frame taken is answered on its
// Reply like any other: written, or why not.
type Sink interface {
	Push(o *Outbound) bool
}

// Chunk is one binary message of a streamed body.
type Chunk struct {
	MessageID string
	Data      []byte
}

// BreakerVerdict answers each *ConnectionFailed the breaker hears: whether
// the breaker is now open (the next attempt waits for its recovery) and the
// consecutive failure count after this failure.
type BreakerVerdict struct {
	Failure *ConnectionFailed
	Open    bool
	// OpenedAt is when the breaker opened (its recovery runs from then);
	// zero unless Open.
	OpenedAt            time.Time
	ConsecutiveFailures int
}

// BreakerStatus is sent by the breaker on every change of its state or count.
// When State moves to BreakerHalfOpen the supervisor starts the one trial.
type BreakerStatus struct {
	State               messages.BreakerState
	ConsecutiveFailures int
	// OpenUntil is when an open breaker lets its trial through (zero unless open).
	OpenUntil time.Time
	// Openings counts how often the breaker has opened since start.
	Openings int
	At       time.Time
}

// GetStatus asks the health ledger for a *messages.Status snapshot (ctx.Respond).
type GetStatus struct{}

// ConnectionFailed is the reason a connection actor fails with. It reaches
// the supervisor's HandleFailure as the panic value, and the supervisor
// passes it on to the breaker and the health ledger.
type ConnectionFailed struct {
	Type messages.FailureType
	Err  error
	At   time.Time
	// WasAuthenticated is true when the failure ended an authenticated
	// connection (a drop), false when it ended an attempt.
	WasAuthenticated bool
}

func (f *ConnectionFailed) Error() string {
	if f.Err == nil {
		return f.Type.String()
	}
	return f.Type.String() + ": " + f.Err.Error()
}

func (f *ConnectionFailed) Unwrap() error { return f.Err }
