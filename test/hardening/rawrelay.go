package hardening

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// writeTimeout bounds the relay's writes, so that a supervisor that stopped
// reading cannot hold a test forever (fake time in a synctest bubble).
const writeTimeout = 10 * time.Second

// RawRelay stands in for a relay and lets a test put any bytes on the wire:
// it answers every auth frame with auth_ok, whatever the key, acks
// heartbeats, and otherwise writes exactly what it is told, malformed or
// not. It serves /tunnel on
// any net.Listener: a pipenet listener inside a synctest bubble, or
// 127.0.0.1:0.
type RawRelay struct {
	listener net.Listener
	server   *http.Server
	sessions chan *RawSession
	served   chan struct{}
	handlers sync.WaitGroup

	mu     sync.Mutex
	count  int
	live   map[*RawSession]struct{}
	closed bool
	done   chan struct{} // closed by Close: handlers stop waiting for the test
}

// RawSession is one authenticated supervisor connection to a RawRelay.
type RawSession struct {
	// ID is the session id sent in auth_ok: raw-1, raw-2...
	ID string
	// Auth is the auth frame the supervisor sent.
	Auth *wire.Frame

	conn    *websocket.Conn
	writeMu sync.Mutex
	in      chan RawMessage
	code    int
}

// RawMessage is one message a supervisor sent after auth_ok. Frame is nil
// for binary messages and for text that does not decode.
type RawMessage struct {
	Binary bool
	Data   []byte
	Frame  *wire.Frame
}

// NewRawRelay serves l until Close, which also closes l.
func NewRawRelay(l net.Listener) *RawRelay {
	r := &RawRelay{
		listener: l,
		sessions: make(chan *RawSession, 16),
		served:   make(chan struct{}),
		live:     make(map[*RawSession]struct{}),
		done:     make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/tunnel", r.handle)
	r.server = &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		defer close(r.served)
		_ = r.server.Serve(l)
	}()
	return r
}

// URL is the relay's tunnel endpoint.
func (r *RawRelay) URL() string { return "ws://" + r.listener.Addr().String() + "/tunnel" }

// Sessions yields each session once its auth_ok is written.
func (r *RawRelay) Sessions() <-chan *RawSession { return r.sessions }

// Close stops serving, drops every connection and returns once every
// goroutine of the relay has ended.
func (r *RawRelay) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.done)
	}
	live := make([]*RawSession, 0, len(r.live))
	for s := range r.live {
		live = append(live, s)
	}
	r.mu.Unlock()
	err := r.server.Close()
	for _, s := range live {
		_ = s.conn.NetConn().Close()
	}
	r.handlers.Wait()
	<-r.served
	return err
}

func (r *RawRelay) handle(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		http.Error(w, "closing", http.StatusServiceUnavailable)
		return
	}
	r.handlers.Add(1)
	r.count++
	s := &RawSession{ID: fmt.Sprintf("raw-%d", r.count), in: make(chan RawMessage, 1024)}
	r.mu.Unlock()
	defer r.handlers.Done()

	conn, err := (&websocket.Upgrader{}).Upgrade(w, req, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	s.conn = conn
	r.mu.Lock()
	r.live[s] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.live, s)
		r.mu.Unlock()
	}()
	conn.SetReadLimit(wire.DefaultReadLimit)

	_, data, err := conn.ReadMessage()
	if err != nil {
		return
	}
	if s.Auth, err = wire.Decode(data); err != nil || s.Auth.Type != wire.TypeAuth {
		return
	}
	if s.Send(&wire.Frame{Type: wire.TypeAuthOK, SessionID: s.ID}) != nil {
		return
	}
	select {
	case r.sessions <- s:
	case <-r.done:
		return
	}
	s.read(r.done)
}

func (s *RawSession) read(done <-chan struct{}) {
	defer close(s.in)
	for {
		kind, data, err := s.conn.ReadMessage()
		if err != nil {
			s.code = websocket.CloseAbnormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				s.code = ce.Code
			}
			return
		}
		m := RawMessage{Binary: kind == websocket.BinaryMessage, Data: data}
		if !m.Binary {
			m.Frame, _ = wire.Decode(data)
		}
		if m.Frame != nil && m.Frame.Type == wire.TypeHeartbeat {
			_ = s.Send(&wire.Frame{Type: wire.TypeHeartbeatAck, MessageID: m.Frame.MessageID, Timestamp: m.Frame.Timestamp})
		}
		select {
		case s.in <- m:
		case <-done:
			return
		}
	}
}

// Write puts data on the wire as one text or binary message.
func (s *RawSession) Write(binary bool, data []byte) error {
	kind := websocket.TextMessage
	if binary {
		kind = websocket.BinaryMessage
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return s.conn.WriteMessage(kind, data)
}

// Send writes f as one text message.
func (s *RawSession) Send(f *wire.Frame) error {
	return s.Write(false, wire.MustEncode(f))
}

// Messages yields what the supervisor sends after auth_ok, pongs aside;
// it is closed when the connection ends.
func (s *RawSession) Messages() <-chan RawMessage { return s.in }

// CloseCode is the close code the supervisor sent, or 1006 when the
// connection ended without one. Read it only once Messages is closed.
func (s *RawSession) CloseCode() int { return s.code }
