package messages

import (
	"context"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// StateChanged is sent by the connection actor on every state change, and
// passed on by the supervisor to the heartbeat, breaker and health actors.
type StateChanged struct {
	State State
	// Connection is the index of the tunnel's connection that changed.
	Connection int
	At         time.Time
	// Attempt counts connection attempts since the tunnel started, from 1.
	Attempt int
	// SessionID and ConnectTime are set when State is Authenticated:
	// the relay's session id and the time from dial to auth_ok.
	SessionID string
	// Epoch, set when State is Authenticated, numbers the session among all
	// of the tunnel's (see Inbound): what was bound to it fails with it.
	Epoch       int
	ConnectTime time.Duration
	// Resume is set when the relay's auth_ok said it keeps this session's
	// response streams open for a stream_resume should the session be lost.
	Resume bool
}

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
	State               BreakerState
	ConsecutiveFailures int
	// OpenUntil is when an open breaker lets its trial through (zero unless open).
	OpenUntil time.Time
	// Openings counts how often the breaker has opened since start.
	Openings int
	At       time.Time
}

// GetStatus asks the health ledger for a *Status snapshot (ctx.Respond).
type GetStatus struct{}
