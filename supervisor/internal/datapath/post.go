package datapath

import (
	"context"
	"fmt"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// outbound makes the message for one WebSocket message on route to: the
// frame f, which the connection encodes as its session negotiated, or when
// f is nil the encoded chunk.
func (p *Plane) outbound(ctx context.Context, f *wire.Frame, chunk []byte, to route) *actormsg.Outbound {
	o := &actormsg.Outbound{Ctx: ctx, Frame: f, Reply: make(chan error, 1)}
	if f == nil {
		o.Binary, o.Data = true, chunk
	}
	if to != anyRoute {
		o.Pinned, o.Conn, o.Epoch = true, to.conn, to.epoch
	}
	return o
}

// write hands one WebSocket message to the tree and waits for its answer;
// the route is the one it took.
func (p *Plane) write(ctx context.Context, f *wire.Frame, chunk []byte, to route) (route, error) {
	if p.closed.Load() {
		return route{}, messages.ErrStopped
	}
	o := p.outbound(ctx, f, chunk, to)
	p.post(o)
	select {
	case err := <-o.Reply:
		if err != nil {
			return route{}, err
		}
		return route{conn: o.Conn, epoch: o.Epoch}, nil
	case <-ctx.Done():
		return route{}, ctx.Err()
	case <-p.done:
		return route{}, messages.ErrStopped
	}
}

// sendAsync writes a control frame nobody waits for (cancel, window_update,
// error answers) on route to.
func (p *Plane) sendAsync(f *wire.Frame, to route) {
	if p.closed.Load() {
		return
	}
	p.post(p.outbound(context.Background(), f, nil, to))
}

// post hands o to the socket of the session it is pinned to, when frames
// came in on that session (no mailbox hop: an answer goes back the way its
// request came), and otherwise to the root (Config.Post), which picks a
// connection or queues o.
func (p *Plane) post(o *actormsg.Outbound) {
	if o.Pinned {
		p.mu.Lock()
		sink := p.sinks[route{conn: o.Conn, epoch: o.Epoch}]
		p.mu.Unlock()
		if sink != nil {
			if !sink.Push(o) {
				o.Answer(fmt.Errorf("%w (connection %d, session %d ended)", messages.ErrConnectionLost, o.Conn, o.Epoch))
			}
			return
		}
	}
	p.cfg.Post(o)
}

// bind remembers the socket of a live session frames came on, for post.
// A session already lost is not bound again by a frame read before its end.
func (p *Plane) bind(via route, sink actormsg.Sink) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.sinks[via]; !ok && via.epoch > p.ended[via.conn] {
		p.sinks[via] = sink
	}
}

// streamPipelineDepth is how many chunks of one stream may be on their way
// to the socket at once. Waiting for each chunk's write before reading the
// next would cost a round trip through the actors per chunk; the stream's
// window still bounds the bytes in flight.
const streamPipelineDepth = 8

// pipeline writes a stream's chunks on its route without waiting for each,
// in order, keeping at most streamPipelineDepth unanswered.
type pipeline struct {
	p       *Plane
	via     route
	pending []chan error
}

// write sends the frame f, or when f is nil the encoded chunk.
func (pipe *pipeline) write(ctx context.Context, f *wire.Frame, chunk []byte) error {
	if len(pipe.pending) == streamPipelineDepth {
		if err := pipe.wait(ctx); err != nil {
			return err
		}
	}
	if pipe.p.closed.Load() {
		return messages.ErrStopped
	}
	o := pipe.p.outbound(ctx, f, chunk, pipe.via)
	pipe.p.post(o)
	pipe.pending = append(pipe.pending, o.Reply)
	return nil
}

// wait takes the oldest write's answer.
func (pipe *pipeline) wait(ctx context.Context) error {
	reply := pipe.pending[0]
	pipe.pending = pipe.pending[1:]
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-pipe.p.done:
		return messages.ErrStopped
	}
}

// flush waits until every write is answered; the first error wins.
func (pipe *pipeline) flush(ctx context.Context) error {
	for len(pipe.pending) > 0 {
		if err := pipe.wait(ctx); err != nil {
			return err
		}
	}
	return nil
}
