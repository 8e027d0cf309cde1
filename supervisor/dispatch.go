package supervisor

import (
	"context"
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
// else to the host's handler. It runs on the root actor's mailbox and never
// blocks: handlers run in goroutines of their own, chunks are buffered within
// the stream's window.
func (t *Tunnel) deliver(in *messages.Inbound) {
	if in.Chunk != nil {
		t.chunk(in.Chunk)
		return
	}
	f := in.Frame
	switch f.Type {
	case wire.TypeRequest:
		t.handle(t.messageOf(f))
	case wire.TypeResponse, wire.TypeError:
		t.answer(f)
	case wire.TypeCancel:
		t.mu.Lock()
		cancel := t.handling[f.MessageID]
		win := t.outStreams[f.MessageID]
		// The body of a cancelled request will never end: whoever reads it
		// (an upstream request being written) must not wait for it.
		body := t.inStreams[f.MessageID]
		delete(t.inStreams, f.MessageID)
		t.mu.Unlock()
		cancelled := fmt.Errorf("supervisor: relay cancelled message %s", f.MessageID)
		if cancel != nil {
			cancel()
		}
		if win != nil {
			win.Close(cancelled)
		}
		if body != nil {
			body.Fail(cancelled)
		}
	case wire.TypeStreamEnd, wire.TypeStreamError:
		t.mu.Lock()
		r := t.inStreams[f.MessageID]
		delete(t.inStreams, f.MessageID)
		t.mu.Unlock()
		switch {
		case r == nil:
			t.reportUnknownStream(f.MessageID)
		case f.Type == wire.TypeStreamEnd:
			r.Finish()
		default:
			r.Fail(fmt.Errorf("supervisor: stream aborted by the relay: %s", f.Error))
		}
	case wire.TypeWindowUpdate:
		t.mu.Lock()
		win := t.outStreams[f.MessageID]
		t.mu.Unlock()
		// A grant for a stream that just ended is normal (it crossed the
		// stream's end on the wire): no error for an unknown id.
		if win != nil && f.Bytes > 0 {
			win.Grant(f.Bytes)
		}
	default:
		t.log.WithField("type", f.Type).Debug("Ignoring frame")
	}
}

// answer completes the Request waiting for f; a response or error nobody
// waits for goes to the handler, where an embedder doing its own
// correlation finds it.
func (t *Tunnel) answer(f *wire.Frame) {
	msg := t.messageOf(f)
	t.mu.Lock()
	p := t.pending[f.MessageID]
	delete(t.pending, f.MessageID)
	t.mu.Unlock()
	if p == nil {
		if f.Type == wire.TypeError {
			t.log.WithFields(logrus.Fields{"message_id": f.MessageID, "error": f.Error}).Warn("Relay reported an error")
		}
		t.handle(msg)
		return
	}
	var err error
	if f.Type == wire.TypeError {
		err = fmt.Errorf("%w: %s", ErrRemote, f.Error)
	}
	p.reply <- result{msg: msg, err: err}
}

// messageOf turns a frame into the host's message; a streamed body gets a
// reader that grants window as the host consumes it.
func (t *Tunnel) messageOf(f *wire.Frame) *messages.TunnelMessage {
	msg := &messages.TunnelMessage{Type: f.Type, MessageID: f.MessageID, Method: f.Method, Path: f.Path,
		Status: f.Status, Headers: f.Headers, Body: f.Body, Error: f.Error}
	if f.Stream {
		id := f.MessageID
		r := wire.NewStreamReader(t.cfg.Window, func(n int64) {
			t.sendAsync(&wire.Frame{Type: wire.TypeWindowUpdate, MessageID: id, Bytes: n})
		})
		t.mu.Lock()
		t.inStreams[id] = r
		t.mu.Unlock()
		msg.BodyStream = r
	}
	return msg
}

func (t *Tunnel) chunk(c *messages.Chunk) {
	t.mu.Lock()
	r := t.inStreams[c.MessageID]
	t.mu.Unlock()
	if r == nil {
		t.reportUnknownStream(c.MessageID)
		return
	}
	if err := r.Push(c.Data); err != nil {
		t.mu.Lock()
		delete(t.inStreams, c.MessageID)
		t.mu.Unlock()
		r.Fail(err)
		t.sendAsync(&wire.Frame{Type: wire.TypeError, MessageID: c.MessageID, Error: err.Error()})
	}
}

// reportUnknownStream answers data for a stream this side does not know
// with one error frame per id, as PROTOCOL.md asks.
func (t *Tunnel) reportUnknownStream(id string) {
	t.mu.Lock()
	seen := t.reported[id]
	if !seen {
		if len(t.reported) >= maxReported {
			t.reported = map[string]bool{}
		}
		t.reported[id] = true
	}
	t.mu.Unlock()
	if !seen {
		t.sendAsync(&wire.Frame{Type: wire.TypeError, MessageID: id, Error: "unknown stream"})
	}
}

// handle runs the host's handler for msg in a goroutine of its own, with a
// context that a cancel frame, the loss of the connection, or Stop ends.
func (t *Tunnel) handle(msg *messages.TunnelMessage) {
	if t.stopped.Load() {
		return
	}
	ctx, cancel := context.WithCancel(t.baseCtx)
	isRequest := msg.Type == messages.TypeRequest
	if isRequest {
		t.mu.Lock()
		_, dup := t.handling[msg.MessageID]
		if !dup {
			t.handling[msg.MessageID] = cancel
		}
		t.mu.Unlock()
		if dup {
			cancel()
			t.sendAsync(&wire.Frame{Type: wire.TypeError, MessageID: msg.MessageID, Error: "duplicate message_id"})
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
				delete(t.handling, msg.MessageID)
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

// lost fails everything bound to the connection that just failed: answers
// that will never come, streams cut in the middle, handlers whose response
// can no longer reach the relay's waiting client.
func (t *Tunnel) lost(f *messages.ConnectionFailed) {
	t.failAll(fmt.Errorf("%w: %s", messages.ErrConnectionLost, f.Type), f.WasAuthenticated)
}

// failAll fails everything in flight with err. Requests still being sent
// stay (they may wait in the queue for the next connection) unless
// wroteOnLost: then they are marked, as their frame may have gone out on the
// connection just lost.
func (t *Tunnel) failAll(err error, wroteOnLost bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, p := range t.pending {
		switch {
		case p.sent || t.stopped.Load():
			p.reply <- result{err: err}
			delete(t.pending, id)
		case wroteOnLost:
			p.lostWhileSending = true
		}
	}
	for id, r := range t.inStreams {
		r.Fail(err)
		delete(t.inStreams, id)
	}
	for id, w := range t.outStreams {
		w.Close(err)
		delete(t.outStreams, id)
	}
	for id, cancel := range t.handling {
		cancel()
		delete(t.handling, id)
	}
}
