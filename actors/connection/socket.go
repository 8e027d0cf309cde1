package connection

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/internal/batchconn"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// socket is one connection attempt and, after auth_ok, the connection. Its
// goroutines tag every message they send to the actor with it.
//
// Only the actor goroutine calls its methods, except those marked as called
// by the socket's own goroutines; they share mu's fields.
type socket struct {
	cfg        Config
	started    time.Time // dial start, from which ConnectTime is counted
	cancel     context.CancelFunc
	ctx        context.Context
	queue      *queue
	quit       chan struct{} // closed to stop the writer
	readerDone chan struct{} // closed when the dial-and-read goroutine ends
	wg         sync.WaitGroup
	stopped    bool                 // quit closed and ctx cancelled
	aborted    bool                 // torn down after a failure
	written    []*actormsg.Outbound // the writer's batch awaiting its flush, kept for reuse
	// bin1 is set once auth_ok chose the bin1 encoding, before the writer
	// starts: frames then go out, and may come in, as bin1 binary messages.
	bin1   bool
	encBuf []byte // the writer's bin1 encoding buffer, reused

	mu      sync.Mutex
	netConn *batchconn.Conn
	ws      *websocket.Conn
	closed  bool
}

// Messages of the socket's goroutines to the actor.
type (
	dialed   struct{ sock *socket }
	authSent struct{ sock *socket }
	authOK   struct {
		sock      *socket
		ws        *websocket.Conn
		epoch     int
		sessionID string
		resume    bool // the relay keeps response streams for a stream_resume
	}
	// received is a frame that is the connection's own business
	// (heartbeats, unknown types); application frames go to deliver.
	received struct {
		sock  *socket
		frame *wire.Frame
		at    time.Time
	}
	sockFailed struct {
		sock  *socket
		phase Phase
		err   error
	}
)

func newSocket(cfg Config) *socket {
	ctx, cancel := context.WithCancel(context.Background())
	return &socket{
		cfg: cfg, started: time.Now(), ctx: ctx, cancel: cancel, queue: newQueue(),
		quit: make(chan struct{}), readerDone: make(chan struct{}),
	}
}

// run dials, authenticates and then reads until the connection ends. It is
// the socket's only reader. Runs in its own goroutine: send reaches the
// actor, deliver the data path.
func (s *socket) run(send func(any), deliver func(*actormsg.Inbound)) {
	defer close(s.readerDone)
	deadline := s.started.Add(s.cfg.ConnectTimeout)
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	defer cancel()
	dialer := websocket.Dialer{
		NetDialContext:  s.dial,
		TLSClientConfig: s.cfg.TLSConfig,
		ReadBufferSize:  s.cfg.ReadBufferSize,
		WriteBufferSize: s.cfg.WriteBufferSize,
	}
	ctx, proxyFailure := s.viaProxy(ctx, &dialer)
	ws, resp, err := dialer.DialContext(ctx, s.cfg.URL, nil)
	if err != nil {
		if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
			err = &UpgradeError{StatusCode: resp.StatusCode}
		}
		err = proxyFailure(err)
		send(&sockFailed{sock: s, phase: PhaseDialing, err: err})
		return
	}
	if !s.setWebSocket(ws) {
		ws.Close()
		return
	}
	send(&dialed{sock: s})

	ws.SetReadLimit(s.cfg.ReadLimit)
	_ = ws.SetReadDeadline(deadline)
	_ = ws.SetWriteDeadline(deadline)
	auth := &wire.Frame{Type: wire.TypeAuth, APIKey: s.cfg.APIKey, Tunnel: s.cfg.Tunnel, Client: s.cfg.Client,
		Instance: s.cfg.Instance, Index: s.cfg.Index, Resume: s.cfg.Resume}
	if len(s.cfg.Encodings) > 1 || len(s.cfg.Encodings) == 1 && s.cfg.Encodings[0] != wire.EncodingJSON {
		auth.Encodings = s.cfg.Encodings
	}
	if err := ws.WriteMessage(websocket.TextMessage, wire.MustEncode(auth)); err != nil {
		send(&sockFailed{sock: s, phase: PhaseHandshake, err: err})
		return
	}
	send(&authSent{sock: s})
	ok, err := awaitAuth(ws)
	if err != nil {
		send(&sockFailed{sock: s, phase: PhaseHandshake, err: err})
		return
	}
	s.bin1 = ok.Encoding == wire.EncodingBin1 && slices.Contains(s.cfg.Encodings, wire.EncodingBin1)
	epoch := s.cfg.NewSession()
	send(&authOK{sock: s, ws: ws, epoch: epoch, sessionID: ok.SessionID, resume: ok.Resume})
	err = s.read(ws, send, func(in *actormsg.Inbound) {
		in.Conn, in.Epoch, in.Sink = s.cfg.Index, epoch, s.queue
		deliver(in)
	})
	send(&sockFailed{sock: s, phase: PhaseAuthenticated, err: err})
}

// ProxyError is a failure on the way through the proxy, before the tunnel to
// the relay was open: the proxy could not be reached, or refused the
// CONNECT (its answer's reason, e.g. "Proxy Authentication Required" for a
// missing or wrong password). Its text names the proxy by host and port
// only, never its user or password.
type ProxyError struct {
	Proxy string // the proxy's host[:port]; empty when the setting itself failed
	Err   error
}

func (e *ProxyError) Error() string {
	if e.Proxy == "" {
		return "connection: proxy: " + e.Err.Error()
	}
	return "connection: proxy " + e.Proxy + ": " + e.Err.Error()
}

func (e *ProxyError) Unwrap() error { return e.Err }

// errProxySetting replaces the error of Config.Proxy, whose text may quote
// the setting, password and all.
var errProxySetting = errors.New("the proxy setting is not valid (not repeated here: it may hold a password)")

// viaProxy gives d the configured Proxy and returns ctx, traced, with the
// function that turns d's error into a *ProxyError when it happened before
// the tunnel through the proxy was open. Without a Proxy both are as they
// were. The dialer calls the hooks in the caller's goroutine.
func (s *socket) viaProxy(ctx context.Context, d *websocket.Dialer) (context.Context, func(error) error) {
	if s.cfg.Proxy == nil {
		return ctx, func(err error) error { return err }
	}
	var (
		proxy    *url.URL
		badProxy bool
		through  bool // the dialer has its connection: through the proxy, if any
	)
	d.Proxy = func(r *http.Request) (*url.URL, error) {
		u, err := s.cfg.Proxy(r)
		if err != nil {
			badProxy = true
			return nil, errProxySetting
		}
		proxy = u
		return u, nil
	}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { through = true }})
	return ctx, func(err error) error {
		switch {
		case badProxy:
			return &ProxyError{Err: err}
		case proxy == nil || through:
			return err
		}
		return &ProxyError{Proxy: proxy.Host, Err: err}
	}
}

// dial opens the TCP connection and keeps it, so that Stop can close it even
// in the middle of the upgrade. Called by the dialer in run's goroutine.
func (s *socket) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := s.cfg.NetDialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	s.netConn = batchconn.New(c)
	// A heartbeat goes ahead of queued data in the queue, but not in the
	// kernel: bound what waits there (best effort: a failure only loses
	// the bound).
	_ = s.netConn.LimitUnsent(batchconn.DefaultUnsent)
	return s.netConn, nil
}

// awaitAuth reads the relay's answer to the auth frame.
func awaitAuth(ws *websocket.Conn) (ok *wire.Frame, err error) {
	messageType, data, err := ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	if messageType != websocket.TextMessage {
		return nil, fmt.Errorf("%w: binary message before auth_ok", ErrProtocol)
	}
	f, err := wire.Decode(data)
	if err != nil {
		return nil, err
	}
	switch f.Type {
	case wire.TypeAuthOK:
		return f, nil
	case wire.TypeAuthError:
		return nil, &AuthError{Reason: f.Error}
	}
	return nil, fmt.Errorf("%w: %q frame before auth_ok", ErrProtocol, f.Type)
}

// read forwards every message until one fails; it returns the first cause.
// Application frames and chunks go to deliver, the rest to the actor.
// Every message and every pong gives the relay PongTimeout more.
func (s *socket) read(ws *websocket.Conn, send func(any), deliver func(*actormsg.Inbound)) error {
	extend := func() error { return ws.SetReadDeadline(time.Now().Add(s.cfg.PongTimeout)) }
	_ = extend()
	ws.SetPongHandler(func(string) error { return extend() })
	for {
		messageType, data, err := ws.ReadMessage()
		if err != nil {
			return err
		}
		_ = extend()
		var f *wire.Frame
		switch {
		case messageType == websocket.BinaryMessage && s.bin1 && wire.IsBin1(data):
			f, err = wire.DecodeBin1(data)
		case messageType == websocket.BinaryMessage:
			id, chunk, err := wire.DecodeChunk(data)
			if err != nil {
				return err
			}
			deliver(&actormsg.Inbound{Chunk: &actormsg.Chunk{MessageID: id, Data: chunk}})
			continue
		default:
			f, err = wire.Decode(data)
		}
		if err != nil {
			return err
		}
		switch f.Type {
		case wire.TypeAuth, wire.TypeAuthOK, wire.TypeAuthError:
			return fmt.Errorf("%w: %q frame after auth_ok", ErrProtocol, f.Type)
		case wire.TypeRequest, wire.TypeResponse, wire.TypeError, wire.TypeCancel,
			wire.TypeStreamEnd, wire.TypeStreamError, wire.TypeWindowUpdate, wire.TypeStreamResume:
			deliver(&actormsg.Inbound{Frame: f})
		default:
			send(&received{sock: s, frame: f, at: time.Now()})
		}
	}
}

// write is the socket's only writer once authenticated: queued frames in
// order, and a ping every PingInterval if it is set. Runs in its own
// goroutine.
func (s *socket) write(ws *websocket.Conn, send func(any)) {
	var pings <-chan time.Time
	if s.cfg.PingInterval > 0 {
		ping := time.NewTicker(s.cfg.PingInterval)
		defer ping.Stop()
		pings = ping.C
	}
	for {
		var err error
		select {
		case <-s.quit:
			return
		case <-pings:
			err = ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.cfg.WriteTimeout))
		case <-s.queue.ready:
			err = s.writeQueued(ws)
		}
		if err != nil {
			// ErrCloseSent means a close frame went out first: the reader,
			// or the actor, already holds the real cause.
			if !errors.Is(err, websocket.ErrCloseSent) {
				send(&sockFailed{sock: s, phase: PhaseAuthenticated, err: err})
			}
			return
		}
	}
}

// writeQueued writes every queued frame, skipping those whose caller gave
// up. Frames queued together leave in one system call (see batchconn); each
// sender hears once its frame is on its way, or why not.
func (s *socket) writeQueued(ws *websocket.Conn) error {
	conn := s.batchConn()
	conn.Hold()
	written := s.written[:0]
	var err error
	for err == nil {
		it, ok := s.queue.pop()
		if !ok {
			break
		}
		o := it.out
		if o.Ctx != nil && o.Ctx.Err() != nil {
			o.Answer(o.Ctx.Err())
			continue
		}
		messageType, data := s.encode(o)
		_ = ws.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if err = ws.WriteMessage(messageType, data); err != nil {
			o.Answer(fmt.Errorf("%w: %w", messages.ErrConnectionLost, err))
			break
		}
		written = append(written, o)
	}
	if ferr := conn.Flush(); err == nil {
		err = ferr
	}
	var answer error
	if err != nil {
		answer = fmt.Errorf("%w: %w", messages.ErrConnectionLost, err)
	}
	for i, o := range written {
		o.Answer(answer)
		written[i] = nil
	}
	s.written = written[:0]
	return err
}

// encode lays out o as its WebSocket message: a frame in the session's
// encoding (bin1 when negotiated, for the types it covers; else JSON text),
// or the data o already holds. A bin1 frame is built in the writer's buffer,
// which the WebSocket has copied or written by the time it is reused.
func (s *socket) encode(o *actormsg.Outbound) (messageType int, data []byte) {
	if o.Frame == nil {
		if o.Binary {
			return websocket.BinaryMessage, o.Data
		}
		return websocket.TextMessage, o.Data
	}
	if s.bin1 {
		if b, err := wire.AppendBin1(s.encBuf[:0], o.Frame); err == nil {
			s.encBuf = b
			return websocket.BinaryMessage, b
		}
	}
	return websocket.TextMessage, wire.MustEncode(o.Frame)
}

func (s *socket) batchConn() *batchconn.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.netConn
}

func (s *socket) setWebSocket(ws *websocket.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ws = ws
	return !s.closed
}

func (s *socket) webSocket() *websocket.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ws
}

// stop cancels a dial in progress and stops the writer.
func (s *socket) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	s.cancel()
	close(s.quit)
}

// closeNow closes the network connection, which ends every blocked read
// and write at once. Safe from any goroutine.
func (s *socket) closeNow() {
	s.mu.Lock()
	s.closed = true
	c := s.netConn
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// abort tears the socket down after a failure without waiting for the
// relay: the close frame (code) is written in the background, bounded by
// CloseTimeout, and the connection closed right after it.
func (s *socket) abort(code int) {
	s.aborted = true
	s.stop()
	ws := s.webSocket()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if ws != nil {
			_ = s.writeClose(ws, code)
		}
		s.closeNow()
	}()
}

// writeClose writes a close frame with code, bounded by CloseTimeout, and
// puts it on the wire at once. The writer may be in the middle of a batch
// (see writeQueued), which would otherwise keep the frame until its Flush:
// after abort's close the connection is gone by then, and release would wait
// CloseTimeout for an answer to a frame the relay never saw.
func (s *socket) writeClose(ws *websocket.Conn, code int) error {
	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(s.cfg.CloseTimeout)); err != nil {
		return err
	}
	if conn := s.batchConn(); conn != nil {
		return conn.Flush()
	}
	return nil
}

// release ends the socket for good and returns once its goroutines have
// ended. A socket that did not fail says goodbye first: close 1000, then up
// to CloseTimeout for the relay's close to reach the reader.
func (s *socket) release() {
	s.stop()
	if ws := s.webSocket(); ws != nil && !s.aborted {
		if err := s.writeClose(ws, wire.CloseNormal); err == nil {
			wait := time.NewTimer(s.cfg.CloseTimeout)
			select {
			case <-s.readerDone:
			case <-wait.C:
			}
			wait.Stop()
		}
	}
	s.closeNow()
	s.wg.Wait()
}
