package session_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay/session"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/pipenet"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

// wsPair returns the two ends of an in-memory WebSocket, which runs on a
// synctest bubble's fake time.
func wsPair(t *testing.T) (server, client *websocket.Conn) {
	t.Helper()
	n := pipenet.New()
	t.Cleanup(func() { _ = n.Close() })
	upgraded := make(chan *websocket.Conn, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		upgraded <- c
	})}
	ln := n.Listener()
	served := make(chan struct{})
	go func() {
		_ = srv.Serve(ln)
		close(served)
	}()
	d := websocket.Dialer{NetDialContext: n.DialContext}
	client, _, err := d.Dial("ws://pipe/tunnel", nil)
	if err != nil {
		t.Fatal(err)
	}
	server = <-upgraded
	_ = srv.Close()
	<-served
	return server, client
}

// harness runs one session, child of a probe that stands in for the relay's
// root (and so for the auth manager and the router), with a test client on
// the other end of its socket.
type harness struct {
	t       *testing.T
	system  *actor.ActorSystem
	p       *probe.Probe
	session *actor.PID
	client  *websocket.Conn
	frames  chan *wire.Frame
	chunks  chan []byte
	pings   chan time.Time
	closed  chan int // the close code the client received (1006: none)
	// deaf makes the client stop reading once it has read auth_ok, until
	// resume is closed (resumeReading, or the harness's cleanup).
	deaf       bool
	resume     chan struct{}
	resumeOnce sync.Once
}

// harnessOption changes the test client of a harness.
type harnessOption func(*harness)

// deafAfterAuthOK makes the client a supervisor that stops reading once it
// has read auth_ok: over the synchronous pipe, the session's writer then
// blocks on its next message. The client still writes (the session's
// reader reads on), and reads again after resumeReading, or when the
// harness cleans up.
func deafAfterAuthOK(h *harness) { h.deaf = true }

// newHarness must run in a probe.Bubble. answerPings false makes the client
// a peer that never answers pings.
func newHarness(t *testing.T, system *actor.ActorSystem, cfg session.Config, answerPings bool, opts ...harnessOption) *harness {
	t.Helper()
	var running sync.WaitGroup
	cfg.Running = &running
	h := &harness{
		t:      t,
		system: system,
		frames: make(chan *wire.Frame, 64),
		chunks: make(chan []byte, 64),
		pings:  make(chan time.Time, 64),
		closed: make(chan int, 1),
		resume: make(chan struct{}),
	}
	for _, opt := range opts {
		opt(h)
	}
	server, client := wsPair(t)
	h.client = client
	readerDone := make(chan struct{})
	// Registered before the probe, so it runs after the probe (and with it
	// the session) has stopped.
	t.Cleanup(func() {
		running.Wait()
		_ = client.Close()
		h.resumeReading()
		<-readerDone
	})
	h.p = probe.New(t, h.system)
	h.p.Wait = time.Hour
	client.SetPingHandler(func(data string) error {
		h.pings <- time.Now()
		if !answerPings {
			return nil
		}
		return client.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go h.read(readerDone)
	h.session = h.p.SpawnChild(session.Props(server, "192.0.2.1", cfg))
	return h
}

func (h *harness) read(done chan struct{}) {
	defer close(done)
	for {
		kind, data, err := h.client.ReadMessage()
		if err != nil {
			code := websocket.CloseAbnormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			h.closed <- code
			return
		}
		if kind == websocket.BinaryMessage {
			h.chunks <- data
			continue
		}
		f, err := wire.Decode(data)
		if err != nil {
			h.t.Errorf("client: %v", err)
			continue
		}
		h.frames <- f
		if h.deaf && f.Type == wire.TypeAuthOK {
			<-h.resume
		}
	}
}

// resumeReading lets a deaf client read again.
func (h *harness) resumeReading() {
	h.resumeOnce.Do(func() { close(h.resume) })
}

func (h *harness) send(f *wire.Frame) {
	h.t.Helper()
	if err := h.client.WriteMessage(websocket.TextMessage, wire.MustEncode(f)); err != nil {
		h.t.Fatalf("client write: %v", err)
	}
}

func (h *harness) expect(typ string) *wire.Frame {
	h.t.Helper()
	select {
	case f := <-h.frames:
		if f.Type != typ {
			h.t.Fatalf("client got %+v, want a %s frame", f, typ)
		}
		return f
	case code := <-h.closed:
		// The reader queues frames before the close: take those first.
		select {
		case f := <-h.frames:
			h.closed <- code
			if f.Type != typ {
				h.t.Fatalf("client got %+v, want a %s frame", f, typ)
			}
			return f
		default:
		}
		h.t.Fatalf("client got close %d, want a %s frame", code, typ)
	case <-time.After(time.Hour):
		h.t.Fatalf("client got nothing, want a %s frame", typ)
	}
	return nil
}

// expectClosed returns the close code and when the client saw it.
func (h *harness) expectClosed() (int, time.Time) {
	h.t.Helper()
	select {
	case code := <-h.closed:
		return code, time.Now()
	case f := <-h.frames:
		h.t.Fatalf("client got %+v, want the connection closed", f)
	case <-time.After(time.Hour):
		h.t.Fatal("connection not closed")
	}
	return 0, time.Time{}
}

// authenticate runs the handshake with the probe answering for the auth
// manager and the router.
func (h *harness) authenticate() *wire.Frame {
	h.t.Helper()
	h.send(&wire.Frame{Type: wire.TypeAuth, APIKey: "k", Tunnel: "a"})
	_, env := probe.Expect[*relaymsg.Authenticate](h.p)
	h.system.Root.Send(env.Sender, &relaymsg.AuthResult{OK: true, Tunnel: "a"})
	_, env = probe.Expect[*relaymsg.SessionUp](h.p)
	h.system.Root.Send(env.Sender, &relaymsg.Registered{})
	return h.expect(wire.TypeAuthOK)
}
