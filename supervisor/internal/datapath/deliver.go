package datapath

import (
	"fmt"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// maxReported bounds the set of unknown stream ids already answered, so a
// peer spraying chunks cannot grow it without end.
const maxReported = 1024

// inStream is a body the relay streams to this side, fed to the reader
// the host holds (the message's BodyStream).
type inStream struct {
	r   *wire.StreamReader
	via route
}

// Deliver routes one inbound frame or chunk: answers to Request calls,
// stream data to its reader, flow control to its sender, and everything
// else to the host's handler. It runs on the connection's reader goroutine
// and never blocks: handlers run in goroutines of their own, chunks are
// buffered within the stream's window.
func (p *Plane) Deliver(in *actormsg.Inbound) {
	via := route{conn: in.Conn, epoch: in.Epoch}
	if in.Sink != nil {
		p.bind(via, in.Sink)
	}
	if in.Chunk != nil {
		p.chunk(in.Chunk, via)
		return
	}
	f := in.Frame
	k := key{conn: in.Conn, id: f.MessageID}
	switch f.Type {
	case wire.TypeRequest:
		p.handle(p.messageOf(f, via), via)
	case wire.TypeStreamResume:
		if !p.resumed(f, via) {
			p.reportUnknownStream(k, via)
		}
	case wire.TypeError:
		if !p.resumed(f, via) {
			p.answer(f, via)
		}
	case wire.TypeResponse:
		p.answer(f, via)
	case wire.TypeCancel:
		p.mu.Lock()
		h := p.handling[k]
		out := p.outStreams[k]
		// The body of a cancelled request will never end: whoever reads it
		// (an upstream request being written) must not wait for it.
		body := p.inStreams[k]
		delete(p.inStreams, k)
		p.mu.Unlock()
		cancelled := fmt.Errorf("supervisor: relay cancelled message %s", f.MessageID)
		if h != nil {
			h.cancel()
		}
		if out != nil {
			out.window().Close(cancelled)
		}
		if body != nil {
			body.r.Fail(cancelled)
		}
	case wire.TypeStreamEnd, wire.TypeStreamError:
		p.mu.Lock()
		s := p.inStreams[k]
		delete(p.inStreams, k)
		p.mu.Unlock()
		switch {
		case s == nil:
			p.reportUnknownStream(k, via)
		case f.Type == wire.TypeStreamEnd:
			s.r.Finish()
		default:
			s.r.Fail(fmt.Errorf("supervisor: stream aborted by the relay: %s", f.Error))
		}
	case wire.TypeWindowUpdate:
		p.mu.Lock()
		out := p.outStreams[k]
		moving := p.resuming[f.MessageID]
		p.mu.Unlock()
		// A grant for a stream that just ended is normal (it crossed the
		// stream's end on the wire): no error for an unknown id.
		switch {
		case f.Bytes < 1:
		case out != nil && out.route() == via:
			out.granted(f.Bytes)
		case moving != nil:
			moving.grantedEarly(via, f.Bytes)
		}
	default:
		p.log.WithField("type", f.Type).Debug("Ignoring frame")
	}
}

// messageOf turns a frame into the host's message; a streamed body gets a
// reader that grants window, on the body's own route, as the host consumes
// it.
func (p *Plane) messageOf(f *wire.Frame, via route) *messages.TunnelMessage {
	msg := &messages.TunnelMessage{Type: f.Type, MessageID: f.MessageID, Method: f.Method, Path: f.Path,
		Status: f.Status, Headers: f.Headers, Body: f.Body, Error: f.Error, Upgrade: f.Upgrade}
	if f.Stream {
		id := f.MessageID
		r := wire.NewStreamReader(p.cfg.Window, func(n int64) {
			p.sendAsync(&wire.Frame{Type: wire.TypeWindowUpdate, MessageID: id, Bytes: n}, via)
		})
		p.mu.Lock()
		p.inStreams[key{conn: via.conn, id: id}] = &inStream{r: r, via: via}
		p.mu.Unlock()
		msg.BodyStream = r
	}
	return msg
}

// chunk feeds one chunk to its body's reader; a chunk the reader refuses
// (over the window) fails the body, and the relay hears why.
func (p *Plane) chunk(c *actormsg.Chunk, via route) {
	k := key{conn: via.conn, id: c.MessageID}
	p.mu.Lock()
	s := p.inStreams[k]
	p.mu.Unlock()
	if s == nil {
		p.reportUnknownStream(k, via)
		return
	}
	if err := s.r.Push(c.Data); err != nil {
		p.mu.Lock()
		delete(p.inStreams, k)
		p.mu.Unlock()
		s.r.Fail(err)
		p.sendAsync(&wire.Frame{Type: wire.TypeError, MessageID: c.MessageID, Error: err.Error()}, via)
	}
}

// reportUnknownStream answers data for a stream this side does not know
// with one error frame per id, as PROTOCOL.md asks.
func (p *Plane) reportUnknownStream(k key, via route) {
	p.mu.Lock()
	seen := p.reported[k]
	if !seen {
		if len(p.reported) >= maxReported {
			p.reported = map[key]bool{}
		}
		p.reported[k] = true
	}
	p.mu.Unlock()
	if !seen {
		p.sendAsync(&wire.Frame{Type: wire.TypeError, MessageID: k.id, Error: "unknown stream"}, via)
	}
}
