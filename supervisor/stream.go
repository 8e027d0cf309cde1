package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// maxResumes bounds how often one stream moves to another connection: a
// stream that loses connection after connection is given up.
const maxResumes = 3

// outStream is one body this side sends as a stream. A resumable one (a
// response on a session whose relay keeps cut streams, see auth's resume)
// keeps the bytes the relay may not have yet, so that it can go on over
// another connection when its own is lost (stream_resume).
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
	// first (the tunnel, or the sender's failed write), one at a time.
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

// resumeAnswer is how the relay answered a stream_resume.
type resumeAnswer struct {
	err error
	via route
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

// record notes chunk as sent, before it is written: should the write fail
// with the connection, a resume sends it again if the relay lacks it.
func (o *outStream) record(chunk []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sent += int64(len(chunk))
	if o.resumable {
		o.replay = append(o.replay, chunk)
	}
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

// grantedEarly keeps a window_update that came on via while the stream
// waits for the relay's answer to a stream_resume.
func (o *outStream) grantedEarly(via route, n int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.early == nil {
		o.early = map[route]int64{}
	}
	o.early[via] += n
}

// moved takes the relay's stream_resume answer: from here the stream goes
// on over via, from offset, with credit bytes of window. It runs on the
// mailbox of via's path, so that no window_update the relay sends after
// its answer can come before the move.
func (o *outStream) moved(via route, offset, credit int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.resumable || offset < o.base || offset > o.sent {
		return fmt.Errorf("%w: the relay resumed stream %s at byte %d, outside the %d to %d this side still has", messages.ErrConnectionLost, o.id, offset, o.base, o.sent)
	}
	o.via = via
	o.win = wire.NewSendWindow(credit + o.early[via])
	o.early = nil
	o.again = make([]byte, 0, o.sent-offset)
	skip := offset - o.base
	for _, chunk := range o.replay {
		if skip >= int64(len(chunk)) {
			skip -= int64(len(chunk))
			continue
		}
		o.again = append(o.again, chunk[skip:]...)
		skip = 0
	}
	return nil
}

// failedMove is why the last move failed; nil if none did.
func (o *outStream) failedMove() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.moveErr
}

// startMove begins moving the stream off from, unless it already left it or
// a move is under way; it returns the channel the move closes when done.
func (t *Tunnel) startMove(o *outStream, from route) chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.moving != nil {
		return o.moving
	}
	done := make(chan struct{})
	if o.via != from || o.moveErr != nil || o.moves == maxResumes {
		if o.via == from && o.moveErr == nil {
			o.moveErr = fmt.Errorf("%w: stream %s lost its connection %d times", messages.ErrConnectionLost, o.id, o.moves+1)
		}
		close(done)
		return done
	}
	o.moves++
	o.moving = done
	go func() {
		err := t.resume(o, from)
		o.mu.Lock()
		o.moving, o.moveErr = nil, err
		o.mu.Unlock()
		if err != nil {
			// The stream is lost after all: its handler, kept going for
			// the move, stops now (which also ends a body read waiting
			// on the upstream).
			t.mu.Lock()
			h := t.handling[key{conn: from.conn, id: o.id}]
			t.mu.Unlock()
			if h != nil {
				h.cancel()
			}
		}
		close(done)
	}()
	return done
}

// awaitMove waits for the stream to leave from: it returns the new route
// and what to send there first, or why it could not move.
func (t *Tunnel) awaitMove(ctx context.Context, o *outStream, from route) (route, []byte, error) {
	select {
	case <-t.startMove(o, from):
	case <-ctx.Done():
		return route{}, nil, ctx.Err()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.via == from {
		return route{}, nil, o.moveErr
	}
	again := o.again
	o.again = nil
	return o.via, again, nil
}

// sendBody sends body as the stream out.id on out's route and ends it with
// stream_end (stream_error if reading body fails). A resumable stream whose
// connection is lost moves to another connection and goes on; anything
// else that fails the stream ends sendBody with that error.
func (t *Tunnel) sendBody(ctx context.Context, out *outStream, body io.Reader) error {
	p := &pipeline{t: t, via: out.route()}
	buf := make([]byte, t.cfg.ChunkSize)
	var again, unsent []byte
	var bodyErr error // io.EOF once body is read to its end
	for {
		err := t.push(ctx, p, out, &again, false)
		if err == nil {
			err = t.push(ctx, p, out, &unsent, true)
		}
		if err == nil && bodyErr == nil {
			var n int
			n, bodyErr = body.Read(buf)
			unsent = buf[:n]
			continue
		}
		if err == nil {
			end := &wire.Frame{Type: wire.TypeStreamEnd, MessageID: out.id}
			if bodyErr != io.EOF {
				end = &wire.Frame{Type: wire.TypeStreamError, MessageID: out.id, Error: bodyErr.Error()}
			}
			if err = p.write(ctx, end, nil); err == nil {
				err = p.flush(ctx)
			}
			if err == nil {
				if bodyErr == io.EOF {
					return nil
				}
				return bodyErr
			}
		}
		if !out.resumable || !errors.Is(err, messages.ErrConnectionLost) || ctx.Err() != nil {
			// A move that failed cancelled the handler: say why.
			return errors.Join(err, out.failedMove())
		}
		via, resend, moveErr := t.awaitMove(ctx, out, p.via)
		if moveErr != nil {
			return errors.Join(err, moveErr)
		}
		p, again = &pipeline{t: t, via: via}, resend
	}
}

// push sends *data as chunks under the stream's window, consuming it;
// record notes new bytes (not those sent again) for a later resume.
func (t *Tunnel) push(ctx context.Context, p *pipeline, out *outStream, data *[]byte, record bool) error {
	for len(*data) > 0 {
		if out.route() != p.via {
			// The stream moved while this sender waited (for its body,
			// say): the old route is gone.
			return fmt.Errorf("%w: stream %s moved", messages.ErrConnectionLost, out.id)
		}
		k, err := out.window().Acquire(ctx, len(*data))
		if err != nil {
			return err
		}
		encoded, err := wire.EncodeChunk(out.id, (*data)[:k])
		if err != nil {
			return err
		}
		if record {
			out.record(encoded[len(encoded)-k:])
		}
		if err := p.write(ctx, nil, encoded); err != nil {
			return err
		}
		*data = (*data)[k:]
	}
	return nil
}

// resume asks the relay, over any other live connection, to let out go on
// there, and waits for its answer within ResumeTimeout.
func (t *Tunnel) resume(out *outStream, from route) error {
	ctx, cancel := context.WithTimeout(t.baseCtx, t.cfg.ResumeTimeout)
	defer cancel()
	answers := make(chan resumeAnswer, 1)
	t.mu.Lock()
	out.mu.Lock()
	out.answers = answers
	out.mu.Unlock()
	t.resuming[out.id] = out
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if t.resuming[out.id] == out {
			delete(t.resuming, out.id)
		}
		t.mu.Unlock()
	}()
	if _, err := t.write(ctx, &wire.Frame{Type: wire.TypeStreamResume, MessageID: out.id}, nil, anyRoute); err != nil {
		return fmt.Errorf("supervisor: asking to resume stream %s: %w", out.id, err)
	}
	select {
	case a := <-answers:
		if a.err == nil {
			t.log.WithFields(logrus.Fields{"message_id": out.id, "connection": a.via.conn, "from_connection": from.conn}).
				Info("Response stream moved to another connection")
		}
		return a.err
	case <-ctx.Done():
		return fmt.Errorf("supervisor: no connection took stream %s over: %w", out.id, ctx.Err())
	}
}

// resumed handles the relay's answer to a stream_resume (f: stream_resume
// with the offset and credit, or an error frame), on the mailbox of the
// connection it came on. It reports whether f was such an answer.
func (t *Tunnel) resumed(f *wire.Frame, via route) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.resuming[f.MessageID]
	if out == nil {
		return false
	}
	delete(t.resuming, f.MessageID)
	from := out.route()
	a := resumeAnswer{via: via}
	if f.Type == wire.TypeStreamResume {
		a.err = out.moved(via, f.Offset, f.Bytes)
	} else {
		a.err = fmt.Errorf("%w: the relay could not resume stream %s: %s", messages.ErrConnectionLost, f.MessageID, f.Error)
	}
	if a.err == nil {
		// Window updates and a cancel for the stream now come on via.
		k := key{conn: via.conn, id: f.MessageID}
		t.outStreams[k] = out
		if h := t.handling[key{conn: from.conn, id: f.MessageID}]; h != nil {
			delete(t.handling, h.key)
			h.key, h.via = k, via
			t.handling[k] = h
		}
	}
	out.mu.Lock()
	answers := out.answers
	out.mu.Unlock()
	answers <- a
	return true
}

// maxLingerBytes bounds the bytes kept by streams that are sent whole but
// whose end the relay may not have read yet: past it the oldest give up
// their protection.
const maxLingerBytes = 32 << 20

// lingering is a resumable stream sent to its end at endAt. Written is
// not read: should its connection be lost before the relay reads the end
// (a reset drops what the sockets held), the stream moves like any other
// and its tail and end go again. The relay's ack of a heartbeat sent after
// endAt proves the end was read (one connection's frames are read in
// order).
type lingering struct {
	out   *outStream
	endAt time.Time
	size  int64
}

// linger keeps out, sent whole, until its end is surely read.
func (t *Tunnel) linger(out *outStream) {
	out.mu.Lock()
	size := out.kept()
	out.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lingering = append(t.lingering, lingering{out: out, endAt: time.Now(), size: size})
	t.lingerSize += size
	for t.lingerSize > maxLingerBytes && len(t.lingering) > 0 {
		t.lingerSize -= t.lingering[0].size
		t.lingering = t.lingering[1:]
	}
}

// acked lets go of the streams on conn whose end came before the
// heartbeat the relay acked.
func (t *Tunnel) acked(conn int, ack *messages.HeartbeatAck) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.unlinger(func(l lingering) bool {
		return l.out.route().conn == conn && l.endAt.UnixMilli() < ack.Timestamp
	})
}

// unlinger drops the lingering streams that match; t.mu is held.
func (t *Tunnel) unlinger(match func(lingering) bool) []*outStream {
	var dropped []*outStream
	kept := t.lingering[:0]
	for _, l := range t.lingering {
		if match(l) {
			t.lingerSize -= l.size
			dropped = append(dropped, l.out)
			continue
		}
		kept = append(kept, l)
	}
	clear(t.lingering[len(kept):])
	t.lingering = kept
	return dropped
}

// finish moves a stream that was sent whole off a lost connection, and
// sends there what the relay lacks of it, and its end. t.mu is held.
func (t *Tunnel) finish(out *outStream) {
	if t.stopped.Load() {
		return
	}
	t.handlers.Add(1)
	go func() {
		defer t.handlers.Done()
		if err := t.sendBody(t.baseCtx, out, eof{}); err != nil {
			t.log.WithError(err).WithField("message_id", out.id).Debug("A stream's end was lost with its connection")
		}
	}()
}

// eof is an empty body: finish only sends what a move finds missing.
type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }
