package datapath

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/google/uuid"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Send writes msg to the relay, as supervisor.Tunnel.Send documents: nil
// once the frame, and a streamed body's every chunk and end, are written.
// A request takes any connection; an answer to the relay's request (or a
// cancel of this side's) takes the route of that request and fails with
// messages.ErrConnectionLost once its session is gone. A request without
// MessageID gets a new random one, set on msg.
func (p *Plane) Send(ctx context.Context, msg *messages.TunnelMessage) error {
	_, err := p.send(ctx, msg)
	return err
}

// send is Send, returning the route the message took.
func (p *Plane) send(ctx context.Context, msg *messages.TunnelMessage) (route, error) {
	f, body, err := p.frameOf(msg)
	if err != nil {
		return route{}, err
	}
	to := p.routeOf(ctx, f)
	if body == nil {
		return p.write(ctx, f, nil, to)
	}
	// A request's stream takes the connection that took its first frame,
	// so that frame must be written before the body. An answer's route is
	// known: its first frame goes out through the stream's pipeline, and
	// the body is read meanwhile, which saves the first bytes a wait.
	via, head := to, f
	if to == anyRoute {
		var err error
		if via, err = p.write(ctx, f, nil, to); err != nil {
			return via, err
		}
		head = nil
	}
	k := key{conn: via.conn, id: f.MessageID}
	out := &outStream{id: f.MessageID, win: wire.NewSendWindow(p.cfg.Window), via: via}
	p.mu.Lock()
	if _, dup := p.outStreams[k]; dup {
		p.mu.Unlock()
		return via, fmt.Errorf("%w: stream %s is already being sent", messages.ErrDuplicateID, f.MessageID)
	}
	out.resumable = f.Type == wire.TypeResponse && p.cfg.ResumeStreams && p.resumable[via.conn]
	p.outStreams[k] = out
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		for k, o := range p.outStreams {
			if o == out { // under its first key, or the one a resume moved it to
				delete(p.outStreams, k)
			}
		}
		p.mu.Unlock()
	}()
	if err := p.sendBody(ctx, out, head, body); err != nil {
		return via, err
	}
	return out.route(), nil
}

// routeOf pins an answer to the route of the request it answers: the
// relay's request the host is handling, or the host's own request being
// cancelled. Anything else may take any connection.
func (p *Plane) routeOf(ctx context.Context, f *wire.Frame) route {
	if f.Type == wire.TypeRequest {
		return anyRoute
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pend := p.pending[f.MessageID]; pend != nil && pend.sent && f.Type == wire.TypeCancel {
		return pend.via
	}
	// A handler answers on its own request's route, which its context
	// carries: the relay may have sent the same id on another connection
	// too (a retry).
	if h, ok := ctx.Value(handlerKey{}).(*handled); ok && h.id == f.MessageID {
		return h.via
	}
	// An answer from outside a handler: the route of a request with that
	// id still being handled, if there is one.
	for k, h := range p.handling {
		if k.id == f.MessageID {
			return h.via
		}
	}
	return anyRoute
}

// frameOf checks msg and builds its frame; body is non-nil when the body
// must be streamed.
func (p *Plane) frameOf(msg *messages.TunnelMessage) (*wire.Frame, io.Reader, error) {
	if msg == nil {
		return nil, nil, fmt.Errorf("%w: nil message", messages.ErrInvalidMessage)
	}
	switch msg.Type {
	case messages.TypeRequest:
		if msg.MessageID == "" {
			msg.MessageID = uuid.NewString()
		}
	case messages.TypeResponse, messages.TypeError, messages.TypeCancel:
		if msg.MessageID == "" && msg.Type != messages.TypeError {
			return nil, nil, fmt.Errorf("%w: a %s needs the message_id it answers", messages.ErrInvalidMessage, msg.Type)
		}
	default:
		return nil, nil, fmt.Errorf("%w: type %q (want request, response, error or cancel)", messages.ErrInvalidMessage, msg.Type)
	}
	if len(msg.MessageID) > wire.MaxIDLength {
		return nil, nil, fmt.Errorf("%w: message_id longer than %d bytes", messages.ErrInvalidMessage, wire.MaxIDLength)
	}
	f := &wire.Frame{Type: msg.Type, MessageID: msg.MessageID, Method: msg.Method, Path: msg.Path,
		Status: msg.Status, Headers: msg.Headers, Error: msg.Error, Upgrade: msg.Upgrade}
	switch {
	case msg.BodyStream != nil:
		f.Stream = true
		return f, msg.BodyStream, nil
	case len(msg.Body) > p.cfg.InlineLimit:
		f.Stream = true
		return f, bytes.NewReader(msg.Body), nil
	}
	f.Body = msg.Body
	return f, nil, nil
}
