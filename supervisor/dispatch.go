package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// maxReported bounds the set of unknown stream ids already answered, so a
// peer spraying chunks cannot grow it without end.
const maxReported = 1024

// deliver routes one inbound frame or chunk: answers to Request calls,
// stream data to its reader, flow control to its sender, and everything
// else to the host's handler. It runs on the connection's reader goroutine
// and never blocks: handlers run in goroutines of their own, chunks are
// buffered within the stream's window.
func (t *Tunnel) deliver(in *messages.Inbound) {
	via := route{conn: in.Conn, epoch: in.Epoch}
	if in.Sink != nil {
		t.bind(via, in.Sink)
	}
	if in.Chunk != nil {
		t.chunk(in.Chunk, via)
		return
	}
	f := in.Frame
	k := key{conn: in.Conn, id: f.MessageID}
	switch f.Type {
	case wire.TypeRequest:
		t.handle(t.messageOf(f, via), via)
	case wire.TypeStreamResume:
		if !t.resumed(f, via) {
			t.reportUnknownStream(k, via)
		}
	case wire.TypeError:
		if !t.resumed(f, via) {
			t.answer(f, via)
		}
	case wire.TypeResponse:
		t.answer(f, via)
	case wire.TypeCancel:
		t.mu.Lock()
		h := t.handling[k]
		out := t.outStreams[k]
		// The body of a cancelled request will never end: whoever reads it
		// (an upstream request being written) must not wait for it.
		body := t.inStreams[k]
		delete(t.inStreams, k)
		t.mu.Unlock()
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
		t.mu.Lock()
		s := t.inStreams[k]
		delete(t.inStreams, k)
		t.mu.Unlock()
		switch {
		case s == nil:
			t.reportUnknownStream(k, via)
		case f.Type == wire.TypeStreamEnd:
			s.r.Finish()
		default:
			s.r.Fail(fmt.Errorf("supervisor: stream aborted by the relay: %s", f.Error))
		}
	case wire.TypeWindowUpdate:
		t.mu.Lock()
		out := t.outStreams[k]
		moving := t.resuming[f.MessageID]
		t.mu.Unlock()
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
		t.log.WithField("type", f.Type).Debug("Ignoring frame")
	}
}

// bind remembers the socket of a live session frames came on, for post.
// A session already lost is not bound again by a frame read before its end.
func (t *Tunnel) bind(via route, sink messages.Sink) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.sinks[via]; !ok && via.epoch > t.ended[via.conn] {
		t.sinks[via] = sink
	}
}

// answer completes the Request waiting for f; a response or error nobody
// waits for goes to the handler, where an embedder doing its own
// correlation finds it.
func (t *Tunnel) answer(f *wire.Frame, via route) {
	msg := t.messageOf(f, via)
	t.mu.Lock()
	p := t.pending[f.MessageID]
	delete(t.pending, f.MessageID)
	t.mu.Unlock()
	if p == nil {
		if f.Type == wire.TypeError {
			t.log.WithFields(logrus.Fields{"message_id": f.MessageID, "error": f.Error, "connection": via.conn}).Warn("Relay reported an error")
		}
		t.handle(msg, via)
		return
	}
	var err error
	if f.Type == wire.TypeError {
		err = fmt.Errorf("%w: %s", ErrRemote, f.Error)
	}
	p.reply <- result{msg: msg, err: err}
}

// messageOf turns a frame into the host's message; a streamed body gets a
// reader that grants window, on the body's own route, as the host consumes
// it.
func (t *Tunnel) messageOf(f *wire.Frame, via route) *messages.TunnelMessage {
	msg := &messages.TunnelMessage{Type: f.Type, MessageID: f.MessageID, Method: f.Method, Path: f.Path,
		Status: f.Status, Headers: f.Headers, Body: f.Body, Error: f.Error}
	if f.Stream {
		id := f.MessageID
		r := wire.NewStreamReader(t.cfg.Window, func(n int64) {
			t.sendAsync(&wire.Frame{Type: wire.TypeWindowUpdate, MessageID: id, Bytes: n}, via)
		})
		t.mu.Lock()
		t.inStreams[key{conn: via.conn, id: id}] = &inStream{r: r, via: via}
		t.mu.Unlock()
		msg.BodyStream = r
	}
	return msg
}

func (t *Tunnel) chunk(c *messages.Chunk, via route) {
	k := key{conn: via.conn, id: c.MessageID}
	t.mu.Lock()
	s := t.inStreams[k]
	t.mu.Unlock()
	if s == nil {
		t.reportUnknownStream(k, via)
		return
	}
	if err := s.r.Push(c.Data); err != nil {
		t.mu.Lock()
		delete(t.inStreams, k)
		t.mu.Unlock()
		s.r.Fail(err)
		t.sendAsync(&wire.Frame{Type: wire.TypeError, MessageID: c.MessageID, Error: err.Error()}, via)
	}
}

// reportUnknownStream answers data for a stream this side does not know
// with one error frame per id, as PROTOCOL.md asks.
func (t *Tunnel) reportUnknownStream(k key, via route) {
	t.mu.Lock()
	seen := t.reported[k]
	if !seen {
		if len(t.reported) >= maxReported {
			t.reported = map[key]bool{}
		}
		t.reported[k] = true
	}
	t.mu.Unlock()
	if !seen {
		t.sendAsync(&wire.Frame{Type: wire.TypeError, MessageID: k.id, Error: "unknown stream"}, via)
	}
}

// handle runs the host's handler for msg in a goroutine of its own, with a
// context that a cancel frame, the loss of the connection the message came
// on, or Stop ends.
func (t *Tunnel) handle(msg *messages.TunnelMessage, via route) {
	if t.stopped.Load() {
		return
	}
	ctx, cancel := context.WithCancel(t.baseCtx)
	isRequest := msg.Type == messages.TypeRequest
	k := key{conn: via.conn, id: msg.MessageID}
	h := &handled{id: msg.MessageID, cancel: cancel, key: k, via: via}
	if isRequest {
		ctx = context.WithValue(ctx, handlerKey{}, h)
	}
	if isRequest {
		t.mu.Lock()
		_, dup := t.handling[k]
		if !dup {
			t.handling[k] = h
		}
		t.mu.Unlock()
		if dup {
			cancel()
			t.sendAsync(&wire.Frame{Type: wire.TypeError, MessageID: msg.MessageID, Error: "duplicate message_id"}, via)
			return
		}
	}
	t.handlers.Add(1)
	go func() {
		defer t.handlers.Done()
		defer cancel()
		if isRequest {
			defer func() {
				t.mu.Lock()
				if t.handling[h.key] == h {
					delete(t.handling, h.key)
				}
				t.mu.Unlock()
			}()
		}
		if c, ok := msg.BodyStream.(io.Closer); ok {
			defer c.Close() // a handler that ignores the body must not hold its window
		}
		if t.cfg.OnMessage == nil {
			if isRequest {
				_ = t.Send(ctx, &messages.TunnelMessage{Type: messages.TypeError, MessageID: msg.MessageID, Error: "no handler for requests on this tunnel"})
			}
			return
		}
		t.cfg.OnMessage(ctx, t, msg)
	}()
}

// lost fails everything bound to a session of conn up to epoch, the one
// that just ended: answers that will never come, streams cut in the
// middle, handlers whose response can no longer reach the relay's waiting
// client. What travels on the tunnel's other connections is untouched.
func (t *Tunnel) lost(conn, epoch int, f *messages.ConnectionFailed) {
	err := fmt.Errorf("%w: %s", messages.ErrConnectionLost, f.Type)
	t.mu.Lock()
	defer t.mu.Unlock()
	if epoch > t.ended[conn] {
		t.ended[conn] = epoch
	}
	on := func(via route) bool { return via.conn == conn && via.epoch <= epoch }
	for via := range t.sinks {
		if on(via) {
			delete(t.sinks, via)
		}
	}
	for id, p := range t.pending {
		if p.sent && on(p.via) {
			p.reply <- result{err: err}
			delete(t.pending, id)
		}
	}
	t.fail(err, on)
	for _, out := range t.unlinger(func(l lingering) bool { return on(l.out.route()) }) {
		t.finish(out)
	}
}

// failAll fails everything in flight with err: the tunnel stopped.
func (t *Tunnel) failAll(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, p := range t.pending {
		p.reply <- result{err: err}
		delete(t.pending, id)
	}
	clear(t.sinks)
	t.fail(err, func(route) bool { return true })
	t.unlinger(func(lingering) bool { return true })
}

// fail fails the streams and handlers whose route matches; t.mu is held.
func (t *Tunnel) fail(err error, match func(route) bool) {
	for k, s := range t.inStreams {
		if match(s.via) {
			s.r.Fail(err)
			delete(t.inStreams, k)
		}
	}
	moving := map[key]bool{}
	for k, out := range t.outStreams {
		if match(out.route()) {
			// A resumable stream's sender, its window closed, moves it to
			// another connection: its handler must go on feeding it.
			moving[k] = out.resumable && !errors.Is(err, messages.ErrStopped)
			if moving[k] {
				// Moved at once, even while its sender waits for its body.
				t.startMove(out, out.route())
			}
			out.window().Close(err)
			delete(t.outStreams, k)
		}
	}
	// A handler's entry stays until it returns: its answer must still find
	// its (now lost) route, and fail, rather than take another connection.
	for k, h := range t.handling {
		if match(h.via) && !moving[k] {
			h.cancel()
		}
	}
}
