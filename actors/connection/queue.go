package connection

import (
	"slices"
	"sync"

	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// queue holds the frames waiting for the writer goroutine. The actor pushes
// without ever blocking; the writer pops. Closing it takes back every frame
// the writer has not started.
type queue struct {
	mu     sync.Mutex
	items  []item
	closed bool
	ready  chan struct{} // holds a token while items may be waiting
}

// item is one frame to write. Own frames (heartbeats, error answers) are the
// connection's business: nobody waits for them and they are never handed back.
type item struct {
	out *actormsg.Outbound
	own bool
}

func newQueue() *queue { return &queue{ready: make(chan struct{}, 1)} }

// push appends it and wakes the writer; false once the queue is closed.
// Own frames go ahead of the callers' frames (behind earlier own frames): a
// heartbeat must not wait behind megabytes of streamed audio, or a slow link
// looks stale. Own frames belong to no stream, so no order is broken.
func (q *queue) push(it item) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	at := len(q.items)
	if it.own {
		at = 0
		for at < len(q.items) && q.items[at].own {
			at++
		}
	}
	q.items = slices.Insert(q.items, at, it)
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// Push queues a caller's frame: the queue is the session's actormsg.Sink.
func (q *queue) Push(o *actormsg.Outbound) bool { return q.push(item{out: o}) }

// pop takes the oldest item; false when there is none or the queue is closed.
func (q *queue) pop() (item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return item{}, false
	}
	it := q.items[0]
	q.items[0] = item{}
	q.items = q.items[1:]
	return it, true
}

// close refuses further pushes and returns the callers' frames still
// waiting, oldest first.
func (q *queue) close() []*actormsg.Outbound {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	var out []*actormsg.Outbound
	for _, it := range q.items {
		if !it.own {
			out = append(out, it.out)
		}
	}
	q.items = nil
	return out
}
