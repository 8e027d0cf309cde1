package datapath

import (
	"context"
	"io"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// handled is a request of the relay in the host's handler, under key in
// Plane.handling until the handler returns.
type handled struct {
	id     string
	cancel context.CancelFunc
	key    key // where it is in handling: its response stream may move it
	via    route
}

// handlerKey is the context key of the request a handler is answering.
type handlerKey struct{}

// handle runs the host's handler for msg in a goroutine of its own, with a
// context that a cancel frame, the loss of the connection the message came
// on, or Drain ends.
func (p *Plane) handle(msg *messages.TunnelMessage, via route) {
	if p.closed.Load() {
		return
	}
	ctx, cancel := context.WithCancel(p.baseCtx)
	isRequest := msg.Type == messages.TypeRequest
	k := key{conn: via.conn, id: msg.MessageID}
	h := &handled{id: msg.MessageID, cancel: cancel, key: k, via: via}
	if isRequest {
		ctx = context.WithValue(ctx, handlerKey{}, h)
	}
	if isRequest {
		p.mu.Lock()
		_, dup := p.handling[k]
		if !dup {
			p.handling[k] = h
		}
		p.mu.Unlock()
		if dup {
			cancel()
			p.sendAsync(&wire.Frame{Type: wire.TypeError, MessageID: msg.MessageID, Error: "duplicate message_id"}, via)
			return
		}
	}
	p.handlers.Add(1)
	go func() {
		defer p.handlers.Done()
		defer cancel()
		if isRequest {
			defer func() {
				p.mu.Lock()
				if p.handling[h.key] == h {
					delete(p.handling, h.key)
				}
				p.mu.Unlock()
			}()
		}
		if c, ok := msg.BodyStream.(io.Closer); ok {
			defer c.Close() // a handler that ignores the body must not hold its window
		}
		if p.cfg.Handle == nil {
			if isRequest {
				_ = p.Send(ctx, &messages.TunnelMessage{Type: messages.TypeError, MessageID: msg.MessageID, Error: "no handler for requests on this tunnel"})
			}
			return
		}
		p.cfg.Handle(ctx, msg)
	}()
}
