package datapath

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// pendingRequest is a Request call waiting for its answer, under its
// message_id in Plane.pending.
type pendingRequest struct {
	reply chan result
	// sent: the request is on the wire, on via; losing that session loses
	// its answer.
	sent bool
	via  route
}

type result struct {
	msg *messages.TunnelMessage
	err error
}

// Request sends a request and waits for the answer with its message_id, as
// supervisor.Tunnel.Request documents: an error frame in answer returns
// the message and an error wrapping messages.ErrRemote; ctx ending first sends a
// cancel; a lost session fails it with messages.ErrConnectionLost, after
// one more try when Config.RetryIdempotent allows (see retryable).
func (p *Plane) Request(ctx context.Context, msg *messages.TunnelMessage) (*messages.TunnelMessage, error) {
	if msg != nil && msg.Type == "" {
		msg.Type = messages.TypeRequest
	}
	if msg == nil || msg.Type != messages.TypeRequest {
		return nil, fmt.Errorf("%w: Request takes a request", messages.ErrInvalidMessage)
	}
	if msg.MessageID == "" {
		msg.MessageID = uuid.NewString()
	}
	answer, err := p.request(ctx, msg)
	if errors.Is(err, messages.ErrConnectionLost) && ctx.Err() == nil && p.retryable(msg) {
		p.log.WithFields(logrus.Fields{"message_id": msg.MessageID, "method": msg.Method}).Info("Connection lost before the answer; sending the idempotent request again")
		answer, err = p.request(ctx, msg)
	}
	return answer, err
}

// request is one try of Request.
func (p *Plane) request(ctx context.Context, msg *messages.TunnelMessage) (*messages.TunnelMessage, error) {
	id := msg.MessageID
	pend := &pendingRequest{reply: make(chan result, 1)}
	p.mu.Lock()
	if _, dup := p.pending[id]; dup {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: request %s is already waiting", messages.ErrDuplicateID, id)
	}
	p.pending[id] = pend
	p.mu.Unlock()
	forget := func() {
		p.mu.Lock()
		if p.pending[id] == pend {
			delete(p.pending, id)
		}
		p.mu.Unlock()
	}
	via, err := p.send(ctx, msg)
	if err != nil {
		forget()
		return nil, err
	}
	p.mu.Lock()
	ended, seen := p.ended[via.conn]
	lost := seen && ended >= via.epoch
	pend.sent, pend.via = true, via
	p.mu.Unlock()
	if lost {
		// The session ended between the write and now: its loss did not
		// see this request, and its answer cannot come.
		forget()
		return nil, fmt.Errorf("%w while the request was being sent; its answer cannot come", messages.ErrConnectionLost)
	}
	select {
	case r := <-pend.reply:
		return r.msg, r.err
	case <-ctx.Done():
		forget()
		p.sendAsync(&wire.Frame{Type: wire.TypeCancel, MessageID: id}, via)
		return nil, ctx.Err()
	case <-p.done:
		return nil, messages.ErrStopped
	}
}

// idempotent lists the methods whose requests may be sent twice with the
// effect of once (RFC 9110, section 9.2.2), less TRACE, which nobody tunnels.
var idempotent = map[string]bool{
	"GET": true, "HEAD": true, "OPTIONS": true, "PUT": true, "DELETE": true,
}

// retryable reports whether msg may be sent again on another connection
// after the one it went out on was lost before its answer: an idempotent
// method and a body kept whole in the frame.
func (p *Plane) retryable(msg *messages.TunnelMessage) bool {
	return p.cfg.RetryIdempotent && idempotent[strings.ToUpper(msg.Method)] &&
		msg.BodyStream == nil && len(msg.Body) <= p.cfg.InlineLimit
}

// answer completes the Request waiting for f; a response or error nobody
// waits for goes to the handler, where an embedder doing its own
// correlation finds it.
func (p *Plane) answer(f *wire.Frame, via route) {
	msg := p.messageOf(f, via)
	p.mu.Lock()
	pend := p.pending[f.MessageID]
	delete(p.pending, f.MessageID)
	p.mu.Unlock()
	if pend == nil {
		if f.Type == wire.TypeError {
			p.log.WithFields(logrus.Fields{"message_id": f.MessageID, "error": f.Error, "connection": via.conn}).Warn("Relay reported an error")
		}
		p.handle(msg, via)
		return
	}
	var err error
	if f.Type == wire.TypeError {
		err = fmt.Errorf("%w: %s", messages.ErrRemote, f.Error)
	}
	pend.reply <- result{msg: msg, err: err}
}
