package datapath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// outStream is one body this side sends as a stream. A resumable one (a
// response on a session whose relay keeps cut streams, see auth's resume)
// keeps the bytes the relay may not have yet, so that it can go on over
// another connection when its own is lost (stream_resume, resume.go).
type outStream struct {
	id        string
	resumable bool

	mu  sync.Mutex
	win *wire.SendWindow
	via route
	// replay holds the stream's bytes from offset base to sent: those sent
	// and not yet granted back, which the relay may not have. They are the
	// encoded chunks' own bytes, shared with the writer, which never
	// changes them: keeping them copies nothing. Only a resumable stream
	// keeps them; the window bounds them.
	replay       [][]byte
	base, sent   int64
	grantedTotal int64
	// A move to another connection: started by whoever notices the loss
	// first (the data path, or the sender's failed write), one at a time.
	moves   int
	moving  chan struct{} // closed when the move in progress ends; nil when none is
	moveErr error         // why the last move failed
	again   []byte        // what the relay lacks after the last move, for the sender to send first
	answers chan resumeAnswer
	// early counts window_updates that came on a route before the relay's
	// stream_resume answer there: the relay grants through the new
	// connection as soon as it has the stream, and its answer's credit
	// does not count those grants.
	early map[route]int64
}

func (o *outStream) window() *wire.SendWindow {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.win
}

func (o *outStream) route() route {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.via
}

// recordOn notes chunk as sent on via, before it is written, if the
// stream still goes that way: from then on the chunk is the replay's, and a
// move sends it again if the relay lacks it. Checked and noted under one
// lock, so that a move either comes first (and the chunk is not noted: it
// waits for the new route) or after (and finds it in the replay).
func (o *outStream) recordOn(via route, chunk []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.via != via {
		return false
	}
	o.sent += int64(len(chunk))
	if o.resumable {
		o.replay = append(o.replay, chunk)
	}
	return true
}

// windowOn is the stream's window while it goes on via; nil once it has
// moved. Taken with the route under one lock: credit taken from the window
// of the next route by a sender still on the last one would be credit the
// relay never gave back, and the stream would stall short of its end.
func (o *outStream) windowOn(via route) *wire.SendWindow {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.via != via {
		return nil
	}
	return o.win
}

// unrecordOn takes back the last n bytes recordOn noted, if the stream
// still goes on via; false when it has moved since (the move's resend then
// holds them).
func (o *outStream) unrecordOn(via route, n int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.via != via {
		return false
	}
	o.sent -= int64(n)
	if o.resumable && len(o.replay) > 0 {
		last := o.replay[len(o.replay)-1]
		if len(last) <= n {
			o.replay[len(o.replay)-1] = nil
			o.replay = o.replay[:len(o.replay)-1]
		} else {
			o.replay[len(o.replay)-1] = last[:len(last)-n]
		}
	}
	return true
}

// kept is how many bytes replay holds; o.mu is held.
func (o *outStream) kept() int64 { return o.sent - o.base }

// granted takes a window_update: the relay's consumer has read n more
// bytes, which therefore never need sending again.
func (o *outStream) granted(n int64) {
	o.mu.Lock()
	o.grantedTotal += n
	if o.resumable {
		for drop := min(o.grantedTotal, o.sent) - o.base; drop > 0 && len(o.replay) > 0; {
			first := o.replay[0]
			if int64(len(first)) > drop {
				o.replay[0] = first[drop:]
				o.base += drop
				break
			}
			o.replay[0] = nil
			o.replay = o.replay[1:]
			o.base += int64(len(first))
			drop -= int64(len(first))
		}
	}
	win := o.win
	o.mu.Unlock()
	win.Grant(n)
}

// sendBody sends head first, when it is not nil, then body as the stream
// out.id on out's route, and ends it with stream_end (stream_error if
// reading body fails). A resumable stream whose
// connection is lost moves to another connection and goes on; anything
// else that fails the stream ends sendBody with that error.
func (p *Plane) sendBody(ctx context.Context, out *outStream, head *wire.Frame, body io.Reader) error {
	pipe := &pipeline{p: p, via: out.route()}
	if head != nil {
		if err := pipe.write(ctx, head, nil); err != nil {
			return err
		}
	}
	buf := make([]byte, p.cfg.ChunkSize)
	var again, unsent []byte
	var bodyErr error // io.EOF once body is read to its end
	for {
		err := p.push(ctx, pipe, out, &again, false)
		if err == nil {
			err = p.push(ctx, pipe, out, &unsent, true)
		}
		if err == nil && bodyErr == nil {
			var n int
			n, bodyErr = body.Read(buf)
			unsent = buf[:n]
			continue
		}
		if err == nil {
			end := &wire.Frame{Type: wire.TypeStreamEnd, MessageID: out.id}
			if t, ok := body.(wire.Trailered); ok {
				end.Trailers = t.Trailers()
			}
			if bodyErr != io.EOF {
				end = &wire.Frame{Type: wire.TypeStreamError, MessageID: out.id, Error: bodyErr.Error()}
			}
			if err = pipe.write(ctx, end, nil); err == nil {
				err = pipe.flush(ctx)
			}
			if err == nil && bodyErr != io.EOF {
				return bodyErr
			}
			if err == nil {
				if !out.resumable || p.linger(out, pipe.via) {
					return nil
				}
				// Its connection was lost while the end went out: the move
				// it started may find the relay without the tail.
				err = fmt.Errorf("%w: stream %s moved as it ended", messages.ErrConnectionLost, out.id)
			}
		}
		if !out.resumable || !errors.Is(err, messages.ErrConnectionLost) || ctx.Err() != nil {
			// A move that failed cancelled the handler: say why.
			return errors.Join(err, out.failedMove())
		}
		via, resend, moveErr := p.awaitMove(ctx, out, pipe.via)
		if moveErr != nil {
			return errors.Join(err, moveErr)
		}
		pipe, again = &pipeline{p: p, via: via}, resend
	}
}

// push sends *data as chunks under the stream's window, consuming it;
// record notes new bytes (not those sent again) for a later resume.
func (p *Plane) push(ctx context.Context, pipe *pipeline, out *outStream, data *[]byte, record bool) error {
	for len(*data) > 0 {
		win := out.windowOn(pipe.via)
		if win == nil {
			// The stream moved while this sender waited (for its body,
			// say): the old route is gone.
			return fmt.Errorf("%w: stream %s moved", messages.ErrConnectionLost, out.id)
		}
		k, err := win.Acquire(ctx, len(*data))
		if err != nil {
			return err
		}
		encoded, err := wire.EncodeChunk(out.id, (*data)[:k])
		if err != nil {
			return err
		}
		if record && !out.recordOn(pipe.via, encoded[len(encoded)-k:]) {
			return fmt.Errorf("%w: stream %s moved", messages.ErrConnectionLost, out.id)
		}
		if err := pipe.write(ctx, nil, encoded); err != nil {
			// The error may be an earlier write's: this chunk was never
			// posted. Sent from the replay and again as unsent data it
			// would go twice; so it is either taken back, while the stream
			// has not moved (it goes after the move's resend, as unsent
			// data), or, when the move came after it was noted and so
			// resends it, let go.
			if record && !out.unrecordOn(pipe.via, k) {
				*data = (*data)[k:]
			}
			return err
		}
		*data = (*data)[k:]
	}
	return nil
}
