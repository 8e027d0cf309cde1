package session

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
)

// outbox is the queue between a session and its writer goroutine. The
// actor's frames (control) never block it and go out before request body
// messages (data), whose senders wait for their turn: a heartbeat_ack never
// waits behind megabytes of upload, and a slow socket slows the uploads, not
// the actor.
//
// Replies (answers to the supervisor's own frames) are bounded: a supervisor
// could otherwise send heartbeats and never read the acks, and grow the
// queue without end. The relay's own frames need no such bound, since the
// requests in flight and their streams bound them.
//
// The outbox knows which request frames never reached the socket: those
// still queued when it closes (they are dropped, not written before the
// close frame, since no answer could come back), those queued after, and
// the one whose write failed (a WebSocket message cut short is never
// delivered). Their exchanges may go through another session whole.
type outbox struct {
	mu         sync.Mutex
	control    []controlFrame
	replies    int // bytes of replies in control
	maxReplies int
	overflow   func() // called once, outside the lock, when replies would exceed maxReplies
	data       []*actormsg.Outbound
	closed     bool
	code       int
	reason     string
	// The writer goroutine runs only while there is something to write:
	// enabled once the actor lets it (auth_ok, or a close to send),
	// running while one drains the queue. An idle session holds no
	// writer, and no stack for one.
	enabled, running bool
	spawn            func() // starts a writer; called outside the lock
	// unsent holds the message_ids of request frames that never reached
	// the socket; made on first use.
	unsent map[string]bool
}

type controlFrame struct {
	encoded
	reply bool
	// id is the message_id of a request frame, "" for other frames.
	id string
	// accepted, for a request whose body streams, receives the outbox's
	// write once the request frame is written: the body may then follow.
	accepted chan<- relaymsg.WriteFunc
	// ping is a WebSocket ping (every ping interval, when one is set).
	ping bool
}

// newOutbox returns an outbox whose writer, once enabled, spawn starts
// whenever there is something to write and none runs.
func newOutbox(maxReplies int, overflow, spawn func()) *outbox {
	return &outbox{maxReplies: maxReplies, overflow: overflow, spawn: spawn}
}

// wakeLocked reports whether a writer must be started for what is queued
// (or for the close frame), and counts it as running; o.mu is held.
func (o *outbox) wakeLocked() bool {
	if !o.enabled || o.running || (!o.closed && len(o.control) == 0 && len(o.data) == 0) {
		return false
	}
	o.running = true
	return true
}

// unlockAndWake releases o.mu and starts a writer if one is needed.
func (o *outbox) unlockAndWake() {
	start := o.wakeLocked()
	o.mu.Unlock()
	if start {
		o.spawn()
	}
}

// enable lets writers run, and starts one if there is anything to write.
func (o *outbox) enable() {
	o.mu.Lock()
	o.enabled = true
	o.unlockAndWake()
}

// idle ends a writer that found the queue empty: it reports true, and the
// writer returns, unless something came meanwhile or the outbox closed.
func (o *outbox) idle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || len(o.control) > 0 || len(o.data) > 0 {
		return false
	}
	o.running = false
	return true
}

// ping queues a WebSocket ping, unless one waits already.
func (o *outbox) ping() {
	o.mu.Lock()
	if o.closed || slices.ContainsFunc(o.control, func(f controlFrame) bool { return f.ping }) {
		o.mu.Unlock()
		return
	}
	o.control = append(o.control, controlFrame{ping: true})
	o.unlockAndWake()
}

// frame queues a frame of the relay's own; once the outbox is closed
// it is dropped.
func (o *outbox) frame(e encoded) {
	o.push(controlFrame{encoded: e})
}

// reply queues an answer to a frame of the supervisor's. If the replies
// waiting would then exceed their bound, the outbox closes instead,
// dropping all it holds, and calls its overflow function.
func (o *outbox) reply(e encoded) {
	o.push(controlFrame{encoded: e, reply: true})
}

// request queues the request frame b of exchange id. accepted, if not nil,
// receives the outbox's write once the frame is written. Once the outbox
// is closed the frame is dropped and id counted unsent.
func (o *outbox) request(id string, e encoded, accepted chan<- relaymsg.WriteFunc) {
	o.push(controlFrame{encoded: e, id: id, accepted: accepted})
}

func (o *outbox) push(f controlFrame) {
	o.mu.Lock()
	if o.closed {
		if f.id != "" {
			o.markUnsent(f.id)
		}
		o.mu.Unlock()
		return
	}
	if f.reply && o.replies+len(f.data) > o.maxReplies {
		dropped := o.shut(websocket.CloseAbnormalClosure, "")
		o.control, o.replies = nil, 0
		o.unlockAndWake()
		answerLost(dropped)
		o.overflow()
		return
	}
	o.control = append(o.control, f)
	if f.reply {
		o.replies += len(f.data)
	}
	o.unlockAndWake()
}

// write queues one message behind the others of its kind and waits until it
// is written, ctx ends, or the outbox closes. It is a relaymsg.WriteFunc.
func (o *outbox) write(ctx context.Context, binary bool, data []byte) error {
	out := &actormsg.Outbound{Ctx: ctx, Binary: binary, Data: data, Reply: make(chan error, 1)}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return relaymsg.ErrTunnelLost
	}
	o.data = append(o.data, out)
	o.unlockAndWake()
	select {
	case err := <-out.Reply:
		return err
	case <-ctx.Done():
		// The writer skips a message whose context is done.
		return ctx.Err()
	}
}

// close stops taking messages. The writer still sends the text frames
// already queued (an auth_error before its close frame), request frames
// aside, then a close frame with code and reason; waiting writes fail with
// relaymsg.ErrTunnelLost. Only the first close counts.
func (o *outbox) close(code int, reason string) {
	o.mu.Lock()
	dropped := o.shut(code, reason)
	o.unlockAndWake()
	answerLost(dropped)
}

// shut marks the outbox closed, if it is not, drops the request frames
// queued (counted unsent) and returns the data messages it dropped; o.mu
// is held.
func (o *outbox) shut(code int, reason string) []*actormsg.Outbound {
	if o.closed {
		return nil
	}
	o.closed, o.code, o.reason = true, code, reason
	kept := o.control[:0]
	for _, f := range o.control {
		if f.id != "" {
			o.markUnsent(f.id)
			continue
		}
		if f.ping {
			continue
		}
		kept = append(kept, f)
	}
	clear(o.control[len(kept):])
	o.control = kept
	dropped := o.data
	o.data = nil
	return dropped
}

// markUnsent counts the request frame of id as never written; o.mu is held.
func (o *outbox) markUnsent(id string) {
	if o.unsent == nil {
		o.unsent = make(map[string]bool)
	}
	o.unsent[id] = true
}

// failed counts the request frame of id, whose write failed, as never
// written.
func (o *outbox) failed(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.markUnsent(id)
}

// unsentIDs returns the message_ids of the request frames that never
// reached the socket. Once the outbox is closed, every other request frame
// queued has been written or is being written.
func (o *outbox) unsentIDs() map[string]bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.unsent)
}

func answerLost(dropped []*actormsg.Outbound) {
	for _, out := range dropped {
		out.Answer(relaymsg.ErrTunnelLost)
	}
}

// next returns the next message to write, control frames first: a control
// frame f, or a data message out; ok is false when nothing is queued.
func (o *outbox) next() (f controlFrame, out *actormsg.Outbound, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.control) > 0 {
		f = o.control[0]
		o.control[0] = controlFrame{}
		o.control = o.control[1:]
		if f.reply {
			o.replies -= len(f.data)
		}
		return f, nil, true
	}
	if len(o.data) > 0 {
		out = o.data[0]
		o.data[0] = nil
		o.data = o.data[1:]
		return f, out, true
	}
	return f, nil, false
}

// closing reports whether close was called, and with what.
func (o *outbox) closing() (code int, reason string, closed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.code, o.reason, o.closed
}
