package session

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/internal/batchconn"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
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
	// undecoded is a text message, which the actor decodes itself.
	undecoded struct {
		kind int
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

	// gateOpen is used by the actor only: the reader may read on.
	gateOpen bool
	// pinger sends a ping every ping interval, from auth_ok; nil without
	// pings. Set by the actor, stopped by the last writer.
	pinger atomic.Pointer[time.Timer]
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
	l.out = newOutbox(cfg.MaxReplyQueue, l.backlogged, l.startWriter)
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

// proceed lets the writer run (it starts whenever there is something to
// write) and the reader past the gate. The actor calls it when the
// session opens (auth_ok) and when it closes: a writer then sends the
// close frame, and a reader still held reads on, within the auth read
// limit, to see the peer's answer. Pings, if any, start with the session.
func (l *link) proceed() {
	if l.cfg.PingInterval > 0 && l.pinger.Load() == nil && !l.closing.Load() {
		// Made stopped, then started, so that its first tick finds it.
		t := time.AfterFunc(time.Hour, l.ping)
		t.Stop()
		l.pinger.Store(t)
		t.Reset(l.cfg.PingInterval)
	}
	l.out.enable()
	if !l.gateOpen {
		l.gateOpen = true
		close(l.gate)
	}
}

// ping queues a ping and sets the next one, until the session closes.
func (l *link) ping() {
	if l.closing.Load() {
		return
	}
	l.out.ping()
	l.pinger.Load().Reset(l.cfg.PingInterval)
}

// startWriter runs a writer goroutine: the outbox calls it when there is
// something to write and no writer runs.
func (l *link) startWriter() {
	l.cfg.Running.Add(1)
	go l.write()
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
		kind, data, err := l.readMessage()
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

// scratch holds the messages being read, so that a large one (a 64 KiB
// chunk of a streamed response) is read into one buffer that is reused,
// rather than grown from 512 bytes for every message (io.ReadAll), which
// cost the relay most of its CPU on bulk responses in garbage. Pooled, so
// that an idle session holds none.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10+64); return &b }}

// readMessage reads the next message whole: into a scratch buffer, then
// copied into one of its exact size, which the frame or chunk keeps.
func (l *link) readMessage() (int, []byte, error) {
	kind, r, err := l.conn.NextReader()
	if err != nil {
		return kind, nil, err
	}
	bp := scratch.Get().(*[]byte)
	defer scratch.Put(bp)
	buf := (*bp)[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return kind, nil, err
		}
	}
	if cap(buf) <= 1<<20 {
		*bp = buf[:0]
	}
	return kind, bytes.Clone(buf), nil
}

// deliver decodes one binary message and tells the actor what it holds.
// A text message (JSON: the auth frame, and every frame of a supervisor
// without bin1) goes to the actor undecoded: JSON decoding runs deep, and
// the stack grown for it here would stay with every idle session's reader.
func (l *link) deliver(kind int, data []byte) {
	if kind == websocket.TextMessage {
		l.tell(&undecoded{kind: kind, data: data})
		return
	}
	l.tell(decode(kind, data, l.bin1))
}

// decode turns one message into what the actor hears of it: an inbound
// frame or chunk, or why it is malformed.
func decode(kind int, data []byte, bin1 bool) any {
	var f *wire.Frame
	var err error
	switch {
	case kind == websocket.TextMessage:
		f, err = wire.Decode(data)
	case bin1 && wire.IsBin1(data):
		f, err = wire.DecodeBin1(data)
	default:
		id, chunk, err := wire.DecodeChunk(data)
		if err != nil {
			return &malformed{err: err}
		}
		return &inboundChunk{id: id, data: chunk}
	}
	if err != nil {
		return &malformed{err: err}
	}
	return &inbound{frame: f}
}

// write runs a writer goroutine: it drains the outbox and returns once it
// is empty, so that an idle session holds no writer. Once the outbox is
// closed the last writer sends the close frame, waits a moment for the
// peer's answer, and closes the socket.
func (l *link) write() {
	defer l.cfg.Running.Done()
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
		if l.out.idle() {
			return
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
func (l *link) writeMessage(f controlFrame, out *actormsg.Outbound) error {
	if f.ping {
		return l.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(l.cfg.WriteTimeout))
	}
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

// stopPings stops the pings, if any, when the socket is done with.
func (l *link) stopPings() {
	if t := l.pinger.Load(); t != nil {
		t.Stop()
	}
}

// fail ends a link whose socket could not be written.
func (l *link) fail(err error) {
	l.stopPings()
	l.tell(&writeFailed{err: err})
	l.out.close(websocket.CloseAbnormalClosure, "")
	_ = l.conn.Close()
}

func (l *link) shut(code int, reason string) {
	l.stopPings()
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
