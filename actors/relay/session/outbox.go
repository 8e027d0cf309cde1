package session

import (
	"context"
	"sync"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
)

// outbox is the queue between a session and its writer goroutine. The
// actor's frames (control) never block it and go out before request body
// messages (data), whose senders wait for their turn: a heartbeat_ack never
// waits behind megabytes of upload, and a slow socket slows the uploads, not
// the actor.
type outbox struct {
	mu      sync.Mutex
	control [][]byte
	data    []*messages.Outbound
	closed  bool
	code    int
	reason  string
	wake    chan struct{} // capacity 1: the writer has something to do
}

func newOutbox() *outbox {
	return &outbox{wake: make(chan struct{}, 1)}
}

func (o *outbox) notify() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// frame queues a text frame; once the outbox is closed it is dropped.
func (o *outbox) frame(b []byte) {
	o.mu.Lock()
	if !o.closed {
		o.control = append(o.control, b)
	}
	o.mu.Unlock()
	o.notify()
}

// write queues one message behind the others of its kind and waits until it
// is written, ctx ends, or the outbox closes. It is a relaymsg.WriteFunc.
func (o *outbox) write(ctx context.Context, binary bool, data []byte) error {
	out := &messages.Outbound{Ctx: ctx, Binary: binary, Data: data, Reply: make(chan error, 1)}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return relaymsg.ErrTunnelLost
	}
	o.data = append(o.data, out)
	o.mu.Unlock()
	o.notify()
	select {
	case err := <-out.Reply:
		return err
	case <-ctx.Done():
		// The writer skips a message whose context is done.
		return ctx.Err()
	}
}

// close stops taking messages. The writer still sends the text frames
// already queued (an auth_error before its close frame), then a close frame
// with code and reason; waiting writes fail with relaymsg.ErrTunnelLost.
// Only the first close counts.
func (o *outbox) close(code int, reason string) {
	o.mu.Lock()
	var dropped []*messages.Outbound
	if !o.closed {
		o.closed, o.code, o.reason = true, code, reason
		dropped, o.data = o.data, nil
	}
	o.mu.Unlock()
	for _, out := range dropped {
		out.Answer(relaymsg.ErrTunnelLost)
	}
	o.notify()
}

// next returns the next message to write, control frames first; ok is false
// when nothing is queued.
func (o *outbox) next() (binary bool, data []byte, out *messages.Outbound, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.control) > 0 {
		data = o.control[0]
		o.control[0] = nil
		o.control = o.control[1:]
		return false, data, nil, true
	}
	if len(o.data) > 0 {
		out = o.data[0]
		o.data[0] = nil
		o.data = o.data[1:]
		return out.Binary, out.Data, out, true
	}
	return false, nil, nil, false
}

// closing reports whether close was called, and with what.
func (o *outbox) closing() (code int, reason string, closed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.code, o.reason, o.closed
}
