package datapath_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/supervisor/internal/datapath"
)

// The Plane's contract, with no actors: a fake root that writes every frame
// posted to it on connection 0's session 1, and a fake socket for that
// session.

// root stands in for the supervision tree's root: it writes what is posted.
type root chan *actormsg.Outbound

func (r root) post(o *actormsg.Outbound) {
	if !o.Pinned {
		o.Conn, o.Epoch = 0, 1
	}
	r <- o
	o.Answer(nil)
}

// sink stands in for session 1's socket.
type sink chan *actormsg.Outbound

func (s sink) Push(o *actormsg.Outbound) bool {
	s <- o
	o.Answer(nil)
	return true
}

func newPlane(t *testing.T, handle func(context.Context, *messages.TunnelMessage)) (*datapath.Plane, root) {
	t.Helper()
	logger, _ := logtest.NewNullLogger()
	r := make(root, 16)
	p := datapath.New(datapath.Config{
		InlineLimit: 64 << 10, ChunkSize: 256 << 10, Window: 1 << 20, ResumeTimeout: time.Second,
		Log: logrus.NewEntry(logger), Post: r.post, Handle: handle,
	})
	t.Cleanup(func() {
		p.Close()
		if err := p.Drain(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return p, r
}

func next[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("nothing within 5s")
		panic("unreachable")
	}
}

func TestRequestGetsTheAnswerWithItsID(t *testing.T) {
	p, r := newPlane(t, nil)
	type answer struct {
		msg *messages.TunnelMessage
		err error
	}
	answers := make(chan answer, 1)
	go func() {
		msg, err := p.Request(context.Background(), &messages.TunnelMessage{Method: "POST", Path: "/"})
		answers <- answer{msg, err}
	}()
	req := next(t, r).Frame
	p.Deliver(&actormsg.Inbound{Frame: &wire.Frame{Type: wire.TypeResponse, MessageID: req.MessageID, Status: 201}, Conn: 0, Epoch: 1})
	if a := next(t, answers); a.err != nil || a.msg.Status != 201 {
		t.Fatalf("Request: %+v, %v; want the 201", a.msg, a.err)
	}
}

func TestLostFailsOnlyWhatItsSessionCarried(t *testing.T) {
	p, r := newPlane(t, nil)
	failed := make(chan error, 1)
	go func() {
		_, err := p.Request(context.Background(), &messages.TunnelMessage{Method: "POST", Path: "/"})
		failed <- err
	}()
	next(t, r)
	p.Lost(1, 1, &actormsg.ConnectionFailed{Type: messages.NetworkError})
	select {
	case err := <-failed:
		t.Fatalf("a loss on connection 1 failed a request on connection 0: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	p.Lost(0, 1, &actormsg.ConnectionFailed{Type: messages.NetworkError})
	if err := next(t, failed); !errors.Is(err, messages.ErrConnectionLost) {
		t.Fatalf("Request after its session's loss: %v, want ErrConnectionLost", err)
	}
}

func TestAHandlersAnswerGoesToItsSessionsSocket(t *testing.T) {
	handled := make(chan context.Context, 1)
	var p *datapath.Plane
	p, _ = newPlane(t, func(ctx context.Context, msg *messages.TunnelMessage) {
		if err := p.Send(ctx, &messages.TunnelMessage{Type: messages.TypeResponse, MessageID: msg.MessageID, Status: 200}); err != nil {
			t.Errorf("Send: %v", err)
		}
		handled <- ctx
		<-ctx.Done()
	})
	socket := make(sink, 1)
	p.Deliver(&actormsg.Inbound{Frame: &wire.Frame{Type: wire.TypeRequest, MessageID: "r1", Method: "GET", Path: "/"}, Conn: 0, Epoch: 1, Sink: socket})
	ctx := next(t, handled)
	if o := next(t, socket); !o.Pinned || o.Conn != 0 || o.Epoch != 1 || o.Frame.MessageID != "r1" {
		t.Fatalf("answer %+v, want pinned to connection 0, session 1", o)
	}
	p.Lost(0, 1, &actormsg.ConnectionFailed{Type: messages.NetworkError})
	next(t, ctx.Done())
}
