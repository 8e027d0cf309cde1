package datapath

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// maxResumes bounds how often one stream moves to another connection: a
// stream that loses connection after connection is given up.
const maxResumes = 3

// resumeAnswer is how the relay answered a stream_resume.
type resumeAnswer struct {
	err error
	via route
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
// reader of via's connection, so that no window_update the relay sends
// after its answer can come before the move.
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
func (p *Plane) startMove(o *outStream, from route) chan struct{} {
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
		err := p.resume(o, from)
		o.mu.Lock()
		o.moving, o.moveErr = nil, err
		o.mu.Unlock()
		if err != nil {
			// The stream is lost after all: its handler, kept going for
			// the move, stops now (which also ends a body read waiting
			// on the upstream).
			p.mu.Lock()
			h := p.handling[key{conn: from.conn, id: o.id}]
			p.mu.Unlock()
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
func (p *Plane) awaitMove(ctx context.Context, o *outStream, from route) (route, []byte, error) {
	select {
	case <-p.startMove(o, from):
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

// resume asks the relay, over any other live connection, to let out go on
// there, and waits for its answer within ResumeTimeout.
func (p *Plane) resume(out *outStream, from route) error {
	ctx, cancel := context.WithTimeout(p.baseCtx, p.cfg.ResumeTimeout)
	defer cancel()
	answers := make(chan resumeAnswer, 1)
	p.mu.Lock()
	out.mu.Lock()
	out.answers = answers
	out.mu.Unlock()
	p.resuming[out.id] = out
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if p.resuming[out.id] == out {
			delete(p.resuming, out.id)
		}
		p.mu.Unlock()
	}()
	if _, err := p.write(ctx, &wire.Frame{Type: wire.TypeStreamResume, MessageID: out.id}, nil, anyRoute); err != nil {
		return fmt.Errorf("supervisor: asking to resume stream %s: %w", out.id, err)
	}
	select {
	case a := <-answers:
		if a.err == nil {
			p.log.WithFields(logrus.Fields{"message_id": out.id, "connection": a.via.conn, "from_connection": from.conn}).
				Info("Response stream moved to another connection")
		}
		return a.err
	case <-ctx.Done():
		return fmt.Errorf("supervisor: no connection took stream %s over: %w", out.id, ctx.Err())
	}
}

// resumed handles the relay's answer to a stream_resume (f: stream_resume
// with the offset and credit, or an error frame), on the reader of the
// connection it came on. It reports whether f was such an answer.
func (p *Plane) resumed(f *wire.Frame, via route) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.resuming[f.MessageID]
	if out == nil {
		return false
	}
	delete(p.resuming, f.MessageID)
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
		p.outStreams[k] = out
		if h := p.handling[key{conn: from.conn, id: f.MessageID}]; h != nil {
			delete(p.handling, h.key)
			h.key, h.via = k, via
			p.handling[k] = h
		}
	}
	out.mu.Lock()
	answers := out.answers
	out.mu.Unlock()
	answers <- a
	return true
}
