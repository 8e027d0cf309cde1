package datapath

import (
	"io"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// maxLingerBytes bounds the bytes kept by streams that are sent whole but
// whose end the relay may not have read yet: past it the oldest give up
// their protection.
const maxLingerBytes = 32 << 20

// lingering is a resumable stream sent to its end at endAt. Written is
// not read: should its connection be lost before the relay reads the end
// (a reset drops what the sockets held), the stream moves like any other
// and its tail and end go again. The relay's ack of a heartbeat sent after
// endAt proves the end was read (one connection's frames are read in
// order).
type lingering struct {
	out   *outStream
	endAt time.Time
	size  int64
}

// linger keeps out, sent whole on via, until its end is surely read. It
// reports false, keeping nothing, when the stream has left via or is
// leaving it: a loss of via came while the end was being written, its
// move has begun (or is done), and the relay may lack the tail, which the
// sender must then send on the new route. Checked under p.mu, as a loss
// starts moves under it: a loss after this finds the stream lingering.
func (p *Plane) linger(out *outStream, via route) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out.mu.Lock()
	size, moved := out.kept(), out.via != via || out.moving != nil
	out.mu.Unlock()
	if moved {
		return false
	}
	p.lingering = append(p.lingering, lingering{out: out, endAt: time.Now(), size: size})
	p.lingerSize += size
	for p.lingerSize > maxLingerBytes && len(p.lingering) > 0 {
		p.lingerSize -= p.lingering[0].size
		p.lingering = p.lingering[1:]
	}
	return true
}

// Acked takes every heartbeat_ack of connection conn: the streams on conn
// whose end came before the acked heartbeat are surely read, and let go.
func (p *Plane) Acked(conn int, ack *actormsg.HeartbeatAck) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unlinger(func(l lingering) bool {
		return l.out.route().conn == conn && l.endAt.UnixMilli() < ack.Timestamp
	})
}

// unlinger drops the lingering streams that match; p.mu is held.
func (p *Plane) unlinger(match func(lingering) bool) []*outStream {
	var dropped []*outStream
	kept := p.lingering[:0]
	for _, l := range p.lingering {
		if match(l) {
			p.lingerSize -= l.size
			dropped = append(dropped, l.out)
			continue
		}
		kept = append(kept, l)
	}
	clear(p.lingering[len(kept):])
	p.lingering = kept
	return dropped
}

// finish moves a stream that was sent whole off a lost connection, and
// sends there what the relay lacks of it, and its end. p.mu is held.
func (p *Plane) finish(out *outStream) {
	if p.closed.Load() {
		return
	}
	p.handlers.Add(1)
	go func() {
		defer p.handlers.Done()
		if err := p.sendBody(p.baseCtx, out, nil, eof{}); err != nil {
			p.log.WithError(err).WithField("message_id", out.id).Debug("A stream's end was lost with its connection")
		}
	}()
}

// eof is an empty body: finish only sends what a move finds missing.
type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }
