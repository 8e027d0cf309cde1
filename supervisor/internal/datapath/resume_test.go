package datapath_test

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/supervisor/internal/datapath"
)

// relaySide stands in for a relay session's socket: it takes frames until
// it is cut, keeping the body bytes of the chunks it took, in order.
type relaySide struct {
	mu    sync.Mutex
	limit int // frames it takes before it is cut; 0: no limit
	taken int
	body  []byte
	ended chan struct{}
	// atEnd, if set, runs when the stream's end is pushed, before it is
	// answered as written.
	atEnd func()
}

func (s *relaySide) Push(o *actormsg.Outbound) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit > 0 && s.taken == s.limit {
		return false
	}
	s.taken++
	if o.Frame == nil {
		_, chunk, err := wire.DecodeChunk(o.Data)
		if err != nil {
			panic(err)
		}
		s.body = append(s.body, chunk...)
	} else if o.Frame.Type == wire.TypeStreamEnd {
		close(s.ended)
		if s.atEnd != nil {
			s.atEnd()
		}
	}
	o.Answer(nil)
	return true
}

func (s *relaySide) received() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.body)
}

// pieces reads as an upstream that produces its body a few bytes at a
// time: each read returns one piece, as progressive audio does.
type pieces struct{ rest []byte }

func (r *pieces) Read(p []byte) (int, error) {
	if len(r.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 4)], r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// A response stream whose session is cut in the middle, with more chunks
// queued behind the cut than its pipeline holds, goes on over the next
// session from the offset the relay names, and the relay gets every byte of
// the body exactly once: a chunk whose write failed is sent again from the
// replay only, never from the replay and as the next chunk both.
func TestAResumedStreamSendsEveryByteOnce(t *testing.T) {
	body := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!?")
	first := &relaySide{limit: 4, ended: make(chan struct{})} // the response head and 3 chunks, then cut
	second := &relaySide{ended: make(chan struct{})}
	p, resumeAsked, _ := resumingPlane(t, body)
	request(p, first)

	id := next(t, resumeAsked)
	p.Lost(0, 1, &actormsg.ConnectionFailed{Type: messages.NetworkError})
	// The relay has what the first session took, and says so.
	has := first.received()
	p.Deliver(&actormsg.Inbound{Frame: &wire.Frame{Type: wire.TypeStreamResume, MessageID: id, Offset: int64(len(has)), Bytes: 1 << 20},
		Conn: 0, Epoch: 2, Sink: second})
	next(t, second.ended)
	if got := append(has, second.received()...); !bytes.Equal(got, body) {
		t.Fatalf("the relay got %q\nwant          %q", got, body)
	}
}

// A session lost while a stream's end is being written starts the stream's
// move at once; the end then counts as written, but the relay may lack the
// tail. The sender must not take the stream for sent whole: it finishes it
// on the new route, from the offset the relay names.
func TestAStreamLostAsItsEndGoesOutIsFinishedOnTheNewRoute(t *testing.T) {
	body := []byte("0123456789abcdefghij")
	first := &relaySide{ended: make(chan struct{})}
	second := &relaySide{ended: make(chan struct{})}
	p, resumeAsked, sent := resumingPlane(t, body)
	first.atEnd = func() { p.Lost(0, 1, &actormsg.ConnectionFailed{Type: messages.NetworkError}) }
	request(p, first)

	id := next(t, resumeAsked)
	// The cut lost the last chunk and the end in the sockets.
	has := len(body) - 4
	p.Deliver(&actormsg.Inbound{Frame: &wire.Frame{Type: wire.TypeStreamResume, MessageID: id, Offset: int64(has), Bytes: 1 << 20},
		Conn: 0, Epoch: 2, Sink: second})
	next(t, second.ended)
	if got := append(first.received()[:has], second.received()...); !bytes.Equal(got, body) {
		t.Fatalf("the relay got %q, want %q", got, body)
	}
	if err := next(t, sent); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// resumingPlane is a Plane whose handler answers every request with body,
// streamed in small pieces, and reports what Send returned on sent. The
// tree's root stands in for a reconnected session 2 of connection 0: the
// stream_resume posted to it is taken there, and its id reported on
// resumeAsked. Session 1 of connection 0 is authenticated, with resume.
func resumingPlane(t *testing.T, body []byte) (p *datapath.Plane, resumeAsked chan string, sent chan error) {
	t.Helper()
	resumeAsked, sent = make(chan string, 1), make(chan error, 1)
	post := func(o *actormsg.Outbound) {
		if o.Frame != nil && o.Frame.Type == wire.TypeStreamResume {
			o.Conn, o.Epoch = 0, 2
			o.Answer(nil)
			resumeAsked <- o.Frame.MessageID
			return
		}
		o.Answer(messages.ErrConnectionLost)
	}
	logger, _ := logtest.NewNullLogger()
	p = datapath.New(datapath.Config{
		InlineLimit: 8, ChunkSize: 4, Window: 1 << 20, ResumeStreams: true, ResumeTimeout: 5 * time.Second,
		Log: logrus.NewEntry(logger), Post: post,
		Handle: func(ctx context.Context, msg *messages.TunnelMessage) {
			sent <- p.Send(ctx, &messages.TunnelMessage{Type: messages.TypeResponse, MessageID: msg.MessageID,
				Status: 200, BodyStream: &pieces{rest: body}})
		},
	})
	t.Cleanup(func() {
		p.Close()
		if err := p.Drain(context.Background()); err != nil {
			t.Error(err)
		}
	})
	p.StateChanged(messages.StateChanged{State: messages.Authenticated, Connection: 0, Epoch: 1, Resume: true})
	return p, resumeAsked, sent
}

// request delivers request r1 on session 1 of connection 0, whose socket
// is sink.
func request(p *datapath.Plane, sink actormsg.Sink) {
	p.Deliver(&actormsg.Inbound{Frame: &wire.Frame{Type: wire.TypeRequest, MessageID: "r1", Method: "GET", Path: "/"},
		Conn: 0, Epoch: 1, Sink: sink})
}
