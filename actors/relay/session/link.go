package session

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/internal/batchconn"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// closeGrace bounds the wait for the close frame to go out and for the
// peer to answer it before the socket is closed regardless.
const closeGrace = time.Second

// What the reader and writer goroutines tell the actor.
type (
	inbound      struct{ frame *wire.Frame }
	inboundChunk struct {
		id   string
		data []byte
	}
	malformed   struct{ err error }
	readFailed  struct{ err error }
	writeFailed struct{ err error }
	backlogged  struct{}
)

// link is a session's socket and the two goroutines that use it.
type link struct {
	conn    *websocket.Conn
	batch   *batchconn.Conn // under conn, when the listener made one: frames drained together leave in one write
	out     *outbox
	cfg     Config
	closing atomic.Bool // set by the actor once it closes: the goroutines stop reporting
	report  func(msg any)
	// gate holds the reader after the first message, until the actor has
	// either opened the session (auth_ok) or closed it: before auth_ok a
	// connection gets one message, within the auth read limit.
	gate chan struct{}
	// readerDone is closed when the reader has returned, so the writer
	// knows the peer answered the close (or is gone).
	readerDone chan struct{}

	// Used by the actor only: the gate is open, the writer runs.
	gateOpen, writing bool
	// bin1 is set by the actor when auth_ok chose the bin1 encoding, before
	// the writer starts and the reader passes its gate: frames go out as
	// bin1 from then on, and may come in so.
	bin1 bool
}

// encoded is one frame laid out for the socket: bin1 or chunk bytes in a
// binary message, or JSON text.
type encoded struct {
	data   []byte
	binary bool
}

// encode lays out f in the session's encoding: bin1 once negotiated (for
// the frame types it covers), JSON text otherwise.
func (l *link) encode(f *wire.Frame) encoded {
	if l.bin1 {
		if b, err := wire.AppendBin1(nil, f); err == nil {
			return encoded{data: b, binary: true}
		}
	}
	return encoded{data: wire.MustEncode(f)}
}

func newLink(conn *websocket.Conn, cfg Config, report func(msg any)) *link {
	l := &link{conn: conn, batch: batchconn.Find(conn.NetConn()), cfg: cfg, report: report, gate: make(chan struct{}), readerDone: make(chan struct{})}
	l.out = newOutbox(cfg.MaxReplyQueue, l.backlogged)
	if l.batch != nil {
		// A heartbeat_ack goes ahead of queued uploads in the outbox, but not
		// in the kernel: bound what waits there (best effort).
		_ = l.batch.LimitUnsent(batchconn.DefaultUnsent)
	}
	return l
}

func (l *link) tell(msg any) {
	if !l.closing.Load() {
		l.report(msg)
	}
}

func (l *link) startReader() {
	l.cfg.Running.Add(1)
	go l.read()
}

// proceed starts the writer, if it has not started, and lets the reader
// past the gate. The actor calls it when the session opens (auth_ok) and
// when it closes: the writer then sends the close frame, and a reader still
// held reads on, within the auth read limit, to see the peer's answer.
func (l *link) proceed() {
	if !l.writing {
		l.writing = true
		l.cfg.Running.Add(1)
		go l.write()
	}
	if !l.gateOpen {
		l.gateOpen = true
		close(l.gate)
	}
}

// backlogged is the outbox's overflow: the supervisor lets its answers
// pile up, so it is not reading. The socket is closed at once, since a
// close frame would wait behind what it does not read.
func (l *link) backlogged() {
	l.tell(&backlogged{})
	_ = l.conn.NetConn().Close()
}

// read runs the reader goroutine: every message read pushes the read
// deadline a heartbeat timeout further, and so does every pong and ping.
func (l *link) read() {
	defer l.cfg.Running.Done()
	defer close(l.readerDone)
	l.conn.SetReadLimit(l.cfg.AuthReadLimit)
	alive := func() { _ = l.conn.SetReadDeadline(time.Now().Add(l.cfg.HeartbeatTimeout)) }
	alive()
	l.conn.SetPongHandler(func(string) error { alive(); return nil })
	l.conn.SetPingHandler(func(data string) error {
		alive()
		err := l.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(l.cfg.WriteTimeout))
		var ne net.Error
		if errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil
		}
		return err
	})
	for first := true; ; first = false {
		kind, data, err := l.conn.ReadMessage()
		if err != nil {
			l.tell(&readFailed{err: err})
			return
		}
		alive()
		if l.cfg.BytesIn != nil {
			l.cfg.BytesIn.Add(float64(len(data)))
		}
		l.deliver(kind, data)
		if first {
			<-l.gate
			if !l.closing.Load() {
				l.conn.SetReadLimit(l.cfg.ReadLimit)
			}
			alive()
		}
	}
}

func (l *link) deliver(kind int, data []byte) {
	switch kind {
	case websocket.TextMessage:
		if f, err := wire.Decode(data); err != nil {
			l.tell(&malformed{err: err})
		} else {
			l.tell(&inbound{frame: f})
		}
	case websocket.BinaryMessage:
		if l.bin1 && wire.IsBin1(data) {
			if f, err := wire.DecodeBin1(data); err != nil {
				l.tell(&malformed{err: err})
			} else {
				l.tell(&inbound{frame: f})
			}
		} else if id, chunk, err := wire.DecodeChunk(data); err != nil {
			l.tell(&malformed{err: err})
		} else {
			l.tell(&inboundChunk{id: id, data: chunk})
		}
	}
}

// write runs the writer goroutine: it drains the outbox, pings every ping
// interval, and once the outbox is closed sends the close frame, waits a
// moment for the peer's answer, and closes the socket.
func (l *link) write() {
	defer l.cfg.Running.Done()
	var pings <-chan time.Time
	if l.cfg.PingInterval > 0 {
		ping := time.NewTicker(l.cfg.PingInterval)
		defer ping.Stop()
		pings = ping.C
	}
	for {
		// Looked at before draining: every frame queued before the close
		// (an auth_error) then goes out before the close frame.
		code, reason, closed := l.out.closing()
		l.hold()
		for {
			f, out, ok := l.out.next()
			if !ok {
				break
			}
			if err := l.writeMessage(f, out); err != nil {
				if f.id != "" {
					// Counted before the actor hears of the failure, so
					// that the session's end reports it unsent.
					l.out.failed(f.id)
				}
				l.fail(err)
				return
			}
			if f.accepted != nil {
				select {
				case f.accepted <- l.out.write:
				default:
				}
			}
		}
		if err := l.flush(); err != nil {
			l.fail(err)
			return
		}
		if closed {
			l.shut(code, reason)
			return
		}
		select {
		case <-l.out.wake:
		case <-pings:
			if err := l.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(l.cfg.WriteTimeout)); err != nil {
				l.fail(err)
				return
			}
		}
	}
}

// hold starts a batch: what the writer drains now leaves in one write.
func (l *link) hold() {
	if l.batch != nil {
		l.batch.Hold()
	}
}

// flush writes the batch. A frame in a batch that fails counts as written
// (the supervisor may have read it), as does one whose write fails after
// the kernel took it.
func (l *link) flush() error {
	if l.batch == nil {
		return nil
	}
	return l.batch.Flush()
}

// writeMessage writes the control frame f, or the data message out when
// it is set.
func (l *link) writeMessage(f controlFrame, out *messages.Outbound) error {
	data, kind := f.data, websocket.TextMessage
	if f.binary {
		kind = websocket.BinaryMessage
	}
	if out != nil {
		if out.Ctx.Err() != nil {
			out.Answer(out.Ctx.Err())
			return nil
		}
		data = out.Data
		if out.Binary {
			kind = websocket.BinaryMessage
		}
	}
	_ = l.conn.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout))
	err := l.conn.WriteMessage(kind, data)
	if err == nil && l.cfg.BytesOut != nil {
		l.cfg.BytesOut.Add(float64(len(data)))
	}
	if out != nil {
		out.Answer(err)
	}
	return err
}

// fail ends a link whose socket could not be written.
func (l *link) fail(err error) {
	l.tell(&writeFailed{err: err})
	l.out.close(websocket.CloseAbnormalClosure, "")
	_ = l.conn.Close()
}

func (l *link) shut(code int, reason string) {
	deadline := time.Now().Add(closeGrace)
	_ = l.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline)
	t := time.NewTimer(closeGrace)
	select {
	case <-l.readerDone:
	case <-t.C:
	}
	t.Stop()
	_ = l.conn.Close()
}
