package relay_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// wait bounds every wait of these tests; they assert outcomes, not timings.
const wait = 10 * time.Second

// Keys of the tunnels every test relay knows.
const (
	defaultKey = "key-default-T2ZmIHdlIGdv"
	keyA       = "key-a-SXQncyBhIGtleQ0K"
	keyB       = "key-b-QW5vdGhlciBrZXk"
)

func startRelay(t *testing.T, change func(*relay.Config)) *relay.Relay {
	t.Helper()
	return harness.StartRelay(t, defaultKey, nil, func(c *relay.Config) {
		c.Keys = map[string]string{"a": keyA, "b": keyB}
		if change != nil {
			change(c)
		}
	})
}

func baseURL(r *relay.Relay) string { return "http://" + r.Addr().String() }

// adminURL is the base of the relay's admin endpoints.
func adminURL(r *relay.Relay) string { return "http://" + r.AdminAddr().String() }

// handler answers one request the way an upstream behind a supervisor
// would. body is nil for a request without one.
type handler func(ctx context.Context, req *wire.Frame, body io.Reader) reply

// reply is a handler's answer: Body inline, or Stream streamed.
type reply struct {
	Status  int
	Headers map[string][]string
	Body    []byte
	Stream  io.Reader
}

// sup is a supervisor written from PROTOCOL.md alone: it authenticates,
// answers heartbeats' acks are left to the test, and serves requests with a
// handler, streaming with per-stream flow control both ways. Frames it
// does not handle itself go to frames; cancels go to cancels.
type sup struct {
	t       *testing.T
	conn    *websocket.Conn
	handle  handler
	writeMu sync.Mutex

	mu       sync.Mutex
	inbound  map[string]*wire.StreamReader // request bodies arriving
	outbound map[string]*wire.SendWindow   // response bodies leaving
	cancelFn map[string]context.CancelFunc

	frames  chan *wire.Frame
	cancels chan string
	chunks  chan string // ids of chunks no stream took
	closed  chan struct{}
	code    int // close code received, once closed is closed
	work    sync.WaitGroup
}

// dial opens a WebSocket to the relay from the default local address.
func dial(t *testing.T, r *relay.Relay) (*sup, *http.Response, error) {
	return dialFrom(t, r, nil, nil)
}

// dialFrom opens a WebSocket from local (e.g. 127.0.0.2; nil for any) with
// extra request headers.
func dialFrom(t *testing.T, r *relay.Relay, local net.Addr, header http.Header) (*sup, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{
		HandshakeTimeout: wait,
		WriteBufferSize:  64 << 10,
		NetDialContext:   (&net.Dialer{LocalAddr: local}).DialContext,
	}
	conn, resp, err := d.Dial("ws://"+r.Addr().String()+"/tunnel", header)
	if err != nil {
		return nil, resp, err
	}
	s := &sup{
		t:        t,
		conn:     conn,
		inbound:  make(map[string]*wire.StreamReader),
		outbound: make(map[string]*wire.SendWindow),
		cancelFn: make(map[string]context.CancelFunc),
		frames:   make(chan *wire.Frame, 1024),
		cancels:  make(chan string, 1024),
		chunks:   make(chan string, 1024),
		closed:   make(chan struct{}),
	}
	conn.SetReadLimit(wire.DefaultReadLimit)
	s.work.Add(1)
	go s.read()
	t.Cleanup(s.close)
	return s, resp, nil
}

// connect dials and authenticates for tunnel with key, serving with h.
func connect(t *testing.T, r *relay.Relay, key, tunnel string, h handler) *sup {
	t.Helper()
	s, _, err := dial(t, r)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	s.handle = h
	s.send(&wire.Frame{Type: wire.TypeAuth, APIKey: key, Tunnel: tunnel, Client: "test-supervisor/1"})
	if f := s.expect(wire.TypeAuthOK); f.SessionID == "" {
		t.Fatalf("auth_ok without session_id: %+v", f)
	}
	return s
}

func (s *sup) close() {
	_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = s.conn.Close()
	s.work.Wait()
}

func (s *sup) write(kind int, data []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(wait))
	return s.conn.WriteMessage(kind, data)
}

func (s *sup) send(f *wire.Frame) {
	if err := s.write(websocket.TextMessage, wire.MustEncode(f)); err != nil {
		s.t.Logf("sup: write %s: %v", f.Type, err)
	}
}

func (s *sup) sendChunk(id string, data []byte) {
	b, err := wire.EncodeChunk(id, data)
	if err != nil {
		s.t.Fatal(err)
	}
	_ = s.write(websocket.BinaryMessage, b)
}

// expect returns the next unhandled frame, which must be of type typ.
func (s *sup) expect(typ string) *wire.Frame {
	s.t.Helper()
	select {
	case f := <-s.frames:
		if f.Type != typ {
			s.t.Fatalf("expected a %s frame, got %+v", typ, f)
		}
		return f
	case <-s.closed:
		// Frames read before the close are still there to take.
		select {
		case f := <-s.frames:
			if f.Type != typ {
				s.t.Fatalf("expected a %s frame, got %+v", typ, f)
			}
			return f
		default:
		}
		s.t.Fatalf("expected a %s frame, got the connection closed (%d)", typ, s.code)
	case <-time.After(wait):
		s.t.Fatalf("expected a %s frame, got nothing", typ)
	}
	return nil
}

// expectClosed waits for the relay to close the connection and returns the
// close code (1006 if there was no close frame).
func (s *sup) expectClosed() int {
	s.t.Helper()
	select {
	case <-s.closed:
		return s.code
	case <-time.After(wait):
		s.t.Fatal("expected the relay to close the connection")
	}
	return 0
}

func (s *sup) expectCancel(id string) {
	s.t.Helper()
	select {
	case got := <-s.cancels:
		if got != id {
			s.t.Fatalf("cancel for %q, want %q", got, id)
		}
	case <-time.After(wait):
		s.t.Fatalf("expected a cancel for %q", id)
	}
}

func (s *sup) read() {
	defer s.work.Done()
	defer close(s.closed)
	for {
		kind, data, err := s.conn.ReadMessage()
		if err != nil {
			s.code = websocket.CloseAbnormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				s.code = ce.Code
			}
			s.failStreams(err)
			return
		}
		if kind == websocket.BinaryMessage {
			id, chunk, err := wire.DecodeChunk(data)
			if err != nil {
				s.t.Errorf("sup: bad chunk: %v", err)
				continue
			}
			s.mu.Lock()
			in := s.inbound[id]
			s.mu.Unlock()
			if in == nil {
				s.chunks <- id
				continue
			}
			if err := in.Push(chunk); err != nil {
				s.t.Errorf("sup: relay overran the window: %v", err)
			}
			continue
		}
		f, err := wire.Decode(data)
		if err != nil {
			s.t.Errorf("sup: bad frame %q: %v", data, err)
			continue
		}
		s.dispatch(f)
	}
}

func (s *sup) failStreams(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.inbound {
		in.Fail(err)
	}
	for _, out := range s.outbound {
		out.Close(err)
	}
	for _, cancel := range s.cancelFn {
		cancel()
	}
}

func (s *sup) dispatch(f *wire.Frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case f.Type == wire.TypeRequest && s.handle != nil:
		var body io.Reader
		if f.Stream {
			id := f.MessageID
			in := wire.NewStreamReader(wire.DefaultWindow, func(n int64) {
				s.send(&wire.Frame{Type: wire.TypeWindowUpdate, MessageID: id, Bytes: n})
			})
			s.inbound[id] = in
			body = in
		} else if len(f.Body) > 0 {
			body = bytes.NewReader(f.Body)
		}
		ctx, cancel := context.WithCancel(context.Background())
		s.cancelFn[f.MessageID] = cancel
		s.work.Add(1)
		go s.serve(ctx, f, body)
	case f.Type == wire.TypeStreamEnd && s.inbound[f.MessageID] != nil:
		s.inbound[f.MessageID].Finish()
		delete(s.inbound, f.MessageID)
	case f.Type == wire.TypeStreamError && s.inbound[f.MessageID] != nil:
		s.inbound[f.MessageID].Fail(errors.New(f.Error))
		delete(s.inbound, f.MessageID)
	case f.Type == wire.TypeWindowUpdate && s.outbound[f.MessageID] != nil:
		s.outbound[f.MessageID].Grant(f.Bytes)
	case f.Type == wire.TypeCancel:
		if cancel := s.cancelFn[f.MessageID]; cancel != nil {
			cancel()
		}
		if in := s.inbound[f.MessageID]; in != nil {
			in.Fail(context.Canceled)
		}
		if out := s.outbound[f.MessageID]; out != nil {
			out.Close(context.Canceled)
		}
		s.cancels <- f.MessageID
	default:
		s.frames <- f
	}
}

func (s *sup) serve(ctx context.Context, req *wire.Frame, body io.Reader) {
	defer s.work.Done()
	id := req.MessageID
	rep := s.handle(ctx, req, body)
	if ctx.Err() != nil {
		return
	}
	resp := &wire.Frame{Type: wire.TypeResponse, MessageID: id, Status: rep.Status, Headers: rep.Headers}
	if rep.Stream == nil {
		resp.Body = rep.Body
		s.send(resp)
		return
	}
	win := wire.NewSendWindow(wire.DefaultWindow)
	s.mu.Lock()
	s.outbound[id] = win
	s.mu.Unlock()
	resp.Stream = true
	s.send(resp)
	_, err := wire.SendStream(ctx, id, rep.Stream, win, 256<<10, func(_ context.Context, binary bool, data []byte) error {
		kind := websocket.TextMessage
		if binary {
			kind = websocket.BinaryMessage
		}
		return s.write(kind, data)
	})
	if err != nil && ctx.Err() == nil && !strings.Contains(err.Error(), "close") {
		s.t.Logf("sup: streaming %s: %v", id, err)
	}
}
