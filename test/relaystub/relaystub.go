// Package relaystub is a small in-process relay for client tests. It speaks
// the handshake and heartbeat of PROTOCOL.md on /tunnel over any
// net.Listener (a pipenet listener inside a testing/synctest bubble, or a
// real 127.0.0.1:0 listener), and misbehaves on request: each Mode is one
// way a relay can answer a connection.
//
// It records every message clients send (Frames), can send frames to the
// latest authenticated session (Send, SendBinary), drop every session
// (DropAll) and count connections. It is not a relay: it routes nothing.
package relaystub

import (
	"bytes"
	"crypto/subtle"
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

// Mode is how the stub answers a connection. A mode set with SetMode applies
// from the next connection on.
type Mode int

const (
	// AuthOK answers a valid auth frame with auth_ok and a session id, then
	// acks heartbeats. The default.
	AuthOK Mode = iota
	// AuthError answers the auth frame with auth_error "Invalid API key" and
	// closes with code 1008.
	AuthError
	// HTTPStatus answers the upgrade request with the status given to
	// SetHTTPStatus instead of upgrading.
	HTTPStatus
	// NoAuthReply upgrades, reads the auth frame and never answers it.
	NoAuthReply
	// Garbage answers the auth frame with a text message that is not JSON.
	Garbage
	// Oversized answers the auth frame with a message of more than
	// Options.OversizeBytes bytes.
	Oversized
	// UnknownType answers auth_ok, then sends a frame of type "bogus" with
	// message_id "bogus-1".
	UnknownType
	// DropAfterAuth answers auth_ok, then closes the TCP connection without a
	// close frame.
	DropAfterAuth
)

var modeNames = [...]string{"AuthOK", "AuthError", "HTTPStatus", "NoAuthReply", "Garbage", "Oversized", "UnknownType", "DropAfterAuth"}

func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return fmt.Sprintf("Mode(%d)", int(m))
	}
	return modeNames[m]
}

// InvalidKey is the error text of the stub's auth_error frames.
const InvalidKey = "Invalid API key"

// writeTimeout bounds every write of the stub, so a client that stopped
// reading a pipe cannot hold a stub goroutine forever. Control frames wait
// less: a client that failed stops reading, and they are a courtesy.
const (
	writeTimeout   = 10 * time.Second
	controlTimeout = time.Second
)

// Options configures a stub.
type Options struct {
	// APIKey, when set, is the only key accepted; any other gets auth_error
	// as in AuthError mode. Empty accepts every key.
	APIKey string
	// OversizeBytes is the least size of the Oversized mode's message.
	// Default wire.DefaultReadLimit + 1.
	OversizeBytes int
	// Resume makes auth_ok say the stub keeps cut response streams for a
	// stream_resume (which the test then answers by hand).
	Resume bool
}

// Received is one message a client sent.
type Received struct {
	// Session is the session id given by auth_ok, empty before it.
	Session string
	Binary  bool
	Data    []byte
	// Frame is the decoded text message; nil for binary messages and for
	// text that is not a frame.
	Frame *wire.Frame
}

// Stub is a running relay stub. Create it with New, stop it with Close.
type Stub struct {
	opts     Options
	listener net.Listener
	server   *http.Server
	upgrader websocket.Upgrader
	received chan Received
	served   chan struct{}
	handlers sync.WaitGroup

	mu            sync.Mutex
	mode          Mode
	status        int
	ackHeartbeats bool
	answerPings   bool
	connections   int
	pings         int
	sessions      map[*session]struct{}
	current       *session // latest authenticated session, the target of Send
	closed        bool
}

type session struct {
	conn    *websocket.Conn
	id      string
	writeMu sync.Mutex // the handler and Send both write
}

// New starts serving /tunnel on l in AuthOK mode with heartbeat acks on.
// The stub owns l from now on: Close closes it.
func New(l net.Listener, opts Options) *Stub {
	if opts.OversizeBytes <= 0 {
		opts.OversizeBytes = wire.DefaultReadLimit + 1
	}
	s := &Stub{
		opts:          opts,
		listener:      l,
		received:      make(chan Received, 4096),
		served:        make(chan struct{}),
		ackHeartbeats: true,
		answerPings:   true,
		status:        http.StatusUnauthorized,
		sessions:      make(map[*session]struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/tunnel", s.handle)
	s.server = &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0)}
	// Without keep-alive, a refused upgrade ends its connection at once.
	s.server.SetKeepAlivesEnabled(false)
	go func() {
		defer close(s.served)
		_ = s.server.Serve(l)
	}()
	return s
}

// URL is the stub's tunnel endpoint, ws://<listener address>/tunnel.
func (s *Stub) URL() string { return "ws://" + s.listener.Addr().String() + "/tunnel" }

// SetMode sets how the next connections are answered.
func (s *Stub) SetMode(m Mode) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

// SetHTTPStatus switches to HTTPStatus mode: the next upgrades are answered
// with code (401, 403, 429, 503...).
func (s *Stub) SetHTTPStatus(code int) {
	s.mu.Lock()
	s.mode, s.status = HTTPStatus, code
	s.mu.Unlock()
}

// SetAckHeartbeats turns heartbeat_ack answers on (the default) or off, for
// stale-connection tests.
func (s *Stub) SetAckHeartbeats(on bool) {
	s.mu.Lock()
	s.ackHeartbeats = on
	s.mu.Unlock()
}

// SetAnswerPings turns pong answers to WebSocket pings on (the default) or
// off, from the next connection on, for pong-timeout tests.
func (s *Stub) SetAnswerPings(on bool) {
	s.mu.Lock()
	s.answerPings = on
	s.mu.Unlock()
}

// Pings counts the WebSocket pings received from clients.
func (s *Stub) Pings() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pings
}

// Frames yields every message clients send, auth and heartbeats included, in
// the order each connection sent them. It holds 4096 messages; later ones
// are dropped until the test reads.
func (s *Stub) Frames() <-chan Received { return s.received }

// Connections counts the requests made to /tunnel, refused upgrades included.
func (s *Stub) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

// ErrNoSession is returned by Send and SendBinary when no session is up.
var ErrNoSession = errors.New("relaystub: no authenticated session")

// Send writes f to the latest authenticated session. Over pipenet a write
// waits for the client to read it (up to 10 s).
func (s *Stub) Send(f *wire.Frame) error {
	data, err := wire.Encode(f)
	if err != nil {
		return err
	}
	return s.sendCurrent(websocket.TextMessage, data)
}

// SendBinary writes data as one binary message to the latest authenticated
// session.
func (s *Stub) SendBinary(data []byte) error {
	return s.sendCurrent(websocket.BinaryMessage, data)
}

// DropAll closes the TCP connection of every session, without a close frame,
// as a crashed relay or a cut cable would.
func (s *Stub) DropAll() {
	for _, sess := range s.liveSessions() {
		_ = sess.conn.NetConn().Close()
	}
}

// Close stops serving, closes every connection and returns once every
// goroutine of the stub has ended.
func (s *Stub) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.server.Close()
	s.DropAll()
	s.handlers.Wait()
	<-s.served
	return err
}

func (s *Stub) sendCurrent(messageType int, data []byte) error {
	s.mu.Lock()
	sess := s.current
	s.mu.Unlock()
	if sess == nil {
		return ErrNoSession
	}
	return sess.write(messageType, data)
}

func (s *Stub) liveSessions() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		out = append(out, sess)
	}
	return out
}

func (s *Stub) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "closing", http.StatusServiceUnavailable)
		return
	}
	s.connections++
	mode, status, answerPings := s.mode, s.status, s.answerPings
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	if mode == HTTPStatus {
		http.Error(w, http.StatusText(status), status)
		return
	}
	c, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	sess := &session{conn: c}
	if !s.add(sess) {
		return
	}
	defer s.remove(sess)
	c.SetReadLimit(wire.DefaultReadLimit)
	c.SetPingHandler(func(data string) error {
		s.mu.Lock()
		s.pings++
		s.mu.Unlock()
		if answerPings {
			// A pong that cannot be written is no reason to stop reading.
			_ = c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(controlTimeout))
		}
		return nil
	})

	auth, ok := s.read(sess)
	if !ok {
		return
	}
	if auth == nil || auth.Type != wire.TypeAuth {
		sess.close(wire.ClosePolicy)
		return
	}
	switch {
	case mode == NoAuthReply:
	case mode == Garbage:
		_ = sess.write(websocket.TextMessage, []byte("this is not json"))
	case mode == Oversized:
		pad := bytes.Repeat([]byte("x"), s.opts.OversizeBytes)
		_ = sess.write(websocket.TextMessage, wire.MustEncode(&wire.Frame{Type: wire.TypeError, Error: string(pad)}))
	case mode == AuthError || !s.keyAccepted(auth.APIKey):
		_ = sess.write(websocket.TextMessage, wire.MustEncode(&wire.Frame{Type: wire.TypeAuthError, Error: InvalidKey}))
		sess.close(wire.ClosePolicy)
		return
	default:
		s.authenticate(sess)
		if mode == UnknownType {
			_ = sess.write(websocket.TextMessage, []byte(`{"type":"bogus","message_id":"bogus-1"}`))
		}
		if mode == DropAfterAuth {
			return
		}
	}
	for {
		f, ok := s.read(sess)
		if !ok {
			return
		}
		if f != nil && f.Type == wire.TypeHeartbeat && s.acking() {
			ack := &wire.Frame{Type: wire.TypeHeartbeatAck, MessageID: f.MessageID, Timestamp: f.Timestamp}
			_ = sess.write(websocket.TextMessage, wire.MustEncode(ack))
		}
	}
}

// read reads and records one message; f is nil unless it is a text frame.
func (s *Stub) read(sess *session) (f *wire.Frame, ok bool) {
	messageType, data, err := sess.conn.ReadMessage()
	if err != nil {
		return nil, false
	}
	rec := Received{Binary: messageType == websocket.BinaryMessage, Data: data}
	if !rec.Binary {
		rec.Frame, _ = wire.Decode(data)
	}
	s.mu.Lock()
	rec.Session = sess.id
	s.mu.Unlock()
	select {
	case s.received <- rec:
	default:
	}
	return rec.Frame, true
}

func (s *Stub) authenticate(sess *session) {
	s.mu.Lock()
	sess.id = fmt.Sprintf("session-%d", s.connections)
	s.current = sess
	id := sess.id
	s.mu.Unlock()
	_ = sess.write(websocket.TextMessage, wire.MustEncode(&wire.Frame{Type: wire.TypeAuthOK, SessionID: id, Resume: s.opts.Resume}))
}

func (s *Stub) keyAccepted(key string) bool {
	return s.opts.APIKey == "" || subtle.ConstantTimeCompare([]byte(key), []byte(s.opts.APIKey)) == 1
}

func (s *Stub) acking() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ackHeartbeats
}

// add registers a new session, or refuses it once Close has begun.
func (s *Stub) add(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions[sess] = struct{}{}
	return true
}

func (s *Stub) remove(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	if s.current == sess {
		s.current = nil
	}
	s.mu.Unlock()
}

func (sess *session) write(messageType int, data []byte) error {
	sess.writeMu.Lock()
	defer sess.writeMu.Unlock()
	_ = sess.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return sess.conn.WriteMessage(messageType, data)
}

// close sends a close frame with code; the deferred Close in the handler
// then ends the connection.
func (sess *session) close(code int) {
	_ = sess.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(controlTimeout))
}
