package relayha_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// wait bounds every wait of these tests; they assert outcomes, not timings.
const wait = 10 * time.Second

// key opens the tunnel "default" of every test relay.
const key = "relayha-default-key-7Q2bX9mK4pL1"

// startRelay runs a relay on loopback with free ports, closed when the
// test ends.
func startRelay(t *testing.T, change func(*relay.Config)) *relay.Relay {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen, cfg.AdminListen, cfg.AuthToken = "127.0.0.1:0", "127.0.0.1:0", key
	if change != nil {
		change(&cfg)
	}
	r, err := relay.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("relay Close: %v", err)
		}
	})
	return r
}

func publicURL(r *relay.Relay) string { return "http://" + r.Addr().String() }

// handler answers the request frames a rawSupervisor receives, on its
// reader goroutine.
type handler func(s *rawSupervisor, req *wire.Frame)

// rawSupervisor is one supervisor connection written from PROTOCOL.md: it
// authenticates with an instance and an index, hands each request frame to
// its handler (or to frames, without one), and answers nothing else. Its
// reader answers the relay's pings, as gorilla does by default.
type rawSupervisor struct {
	t      *testing.T
	name   string
	conn   *websocket.Conn
	handle handler
	frames chan *wire.Frame

	writeMu sync.Mutex
	closed  chan struct{} // closed when the reader has returned
	code    int           // the close the relay sent (1006: none), once closed
	reason  string
}

// dialRaw connects to r and sends the auth frame of instance and index
// (none, for an empty instance, as a supervisor from before HA would).
func dialRaw(t *testing.T, r *relay.Relay, name, instance string, index int, h handler) *rawSupervisor {
	t.Helper()
	return dialAuth(t, r, name, &wire.Frame{Type: wire.TypeAuth, APIKey: key, Client: "relayha-raw/1", Instance: instance, Index: index}, h)
}

// dialAuth connects to r and sends auth.
func dialAuth(t *testing.T, r *relay.Relay, name string, auth *wire.Frame, h handler) *rawSupervisor {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: wait}
	conn, _, err := d.Dial("ws://"+r.Addr().String()+"/tunnel", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	s := &rawSupervisor{t: t, name: name, conn: conn, handle: h, frames: make(chan *wire.Frame, 64), closed: make(chan struct{})}
	conn.SetReadLimit(wire.DefaultReadLimit)
	go s.read()
	t.Cleanup(s.close)
	s.send(auth)
	return s
}

// connect is dialRaw that expects auth_ok.
func connect(t *testing.T, r *relay.Relay, name, instance string, index int, h handler) *rawSupervisor {
	t.Helper()
	s := dialRaw(t, r, name, instance, index, h)
	if f := s.expect(wire.TypeAuthOK); f.SessionID == "" {
		t.Fatalf("auth_ok without a session_id: %+v", f)
	}
	return s
}

func (s *rawSupervisor) read() {
	defer close(s.closed)
	for {
		_, data, err := s.conn.ReadMessage()
		if err != nil {
			s.code = websocket.CloseAbnormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				s.code, s.reason = ce.Code, ce.Text
			}
			return
		}
		f, err := wire.Decode(data)
		if err != nil {
			s.t.Errorf("%s: %v", s.name, err)
			continue
		}
		if f.Type == wire.TypeRequest && s.handle != nil {
			s.handle(s, f)
			continue
		}
		s.frames <- f
	}
}

func (s *rawSupervisor) send(f *wire.Frame) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(wait))
	// A write to a connection the test dropped fails; the relay's answer
	// is what the test looks at.
	_ = s.conn.WriteMessage(websocket.TextMessage, wire.MustEncode(f))
}

// chunk sends data as a binary chunk of the stream id.
func (s *rawSupervisor) chunk(id string, data []byte) {
	b, err := wire.EncodeChunk(id, data)
	if err != nil {
		s.t.Error(err)
		return
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(wait))
	_ = s.conn.WriteMessage(websocket.BinaryMessage, b)
}

// respond answers request id with status and body, inline.
func (s *rawSupervisor) respond(id string, status int, body string) {
	s.send(&wire.Frame{Type: wire.TypeResponse, MessageID: id, Status: status,
		Headers: map[string][]string{"Content-Type": {"text/plain"}}, Body: []byte(body)})
}

// drop cuts the connection with no close frame: a supervisor that crashed,
// or a network path that failed.
func (s *rawSupervisor) drop() { _ = s.conn.NetConn().Close() }

func (s *rawSupervisor) close() {
	_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = s.conn.Close()
	<-s.closed
}

// expect returns the next frame the handler did not take, which must be
// of type typ.
func (s *rawSupervisor) expect(typ string) *wire.Frame {
	s.t.Helper()
	select {
	case f := <-s.frames:
		if f.Type != typ {
			s.t.Fatalf("%s: got %+v, want a %s frame", s.name, f, typ)
		}
		return f
	case <-s.closed:
		s.t.Fatalf("%s: closed (%d %q), want a %s frame", s.name, s.code, s.reason, typ)
	case <-time.After(wait):
		s.t.Fatalf("%s: nothing, want a %s frame", s.name, typ)
	}
	return nil
}

// expectClosed waits for the relay to close the connection and returns its
// close code and reason.
func (s *rawSupervisor) expectClosed() (int, string) {
	s.t.Helper()
	select {
	case <-s.closed:
		return s.code, s.reason
	case f := <-s.frames:
		s.t.Fatalf("%s: got %+v, want the connection closed", s.name, f)
	case <-time.After(wait):
		s.t.Fatalf("%s: still open, want it closed", s.name)
	}
	return 0, ""
}

// isOpen reports whether the relay has not closed the connection.
func (s *rawSupervisor) isOpen() bool {
	select {
	case <-s.closed:
		return false
	default:
		return true
	}
}

// client is an HTTP client for the public front, whose idle connections
// are closed when the test ends.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 2 * wait}
}

// do sends a public request and returns its status and body.
func do(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	status, text, err := fetch(c, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, text
}

// fetch is do for goroutines other than the test's.
func fetch(c *http.Client, method, url, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metrics returns the text of the relay's /metrics.
func metrics(t *testing.T, c *http.Client, r *relay.Relay) string {
	t.Helper()
	_, body := do(t, c, http.MethodGet, "http://"+r.AdminAddr().String()+"/metrics", "")
	return body
}

// eventually polls cond until it holds, failing the test after wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("still not so after %v: %s", wait, what)
		}
	}
}
