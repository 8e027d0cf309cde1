package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// inbound is one message a fake relay session read: a frame, or a chunk of
// a stream.
type inbound struct {
	frame *wire.Frame
	id    string
	chunk []byte
}

// relaySession is one supervisor connection to the fake relay.
type relaySession struct {
	conn    *websocket.Conn
	writeMu sync.Mutex
	in      chan inbound // everything but heartbeats, in order
}

func (s *relaySession) send(t *testing.T, f *wire.Frame) {
	t.Helper()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.conn.WriteMessage(websocket.TextMessage, wire.MustEncode(f)); err != nil {
		t.Fatalf("relay: writing %s: %v", f.Type, err)
	}
}

// fakeRelay speaks just enough of PROTOCOL.md to stand in for the relay:
// it accepts the key, answers heartbeats, and hands each session to the test.
type fakeRelay struct {
	url      string
	sessions chan *relaySession
}

func newFakeRelay(t *testing.T, key string) *fakeRelay {
	r := &fakeRelay{sessions: make(chan *relaySession, 4)}
	upgrader := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		conn, err := upgrader.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		s := &relaySession{conn: conn, in: make(chan inbound, 64)}
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if f, err := wire.Decode(data); err != nil || f.Type != wire.TypeAuth || f.APIKey != key {
			t.Errorf("relay: bad auth frame %s", data)
			return
		}
		s.send(t, &wire.Frame{Type: wire.TypeAuthOK, SessionID: "session"})
		r.sessions <- s
		for {
			kind, data, err := conn.ReadMessage()
			if err != nil {
				close(s.in)
				return
			}
			if kind == websocket.BinaryMessage {
				id, chunk, err := wire.DecodeChunk(data)
				if err != nil {
					t.Errorf("relay: bad chunk: %v", err)
				}
				s.in <- inbound{id: id, chunk: chunk}
				continue
			}
			f, err := wire.Decode(data)
			if err != nil {
				t.Errorf("relay: bad frame %s: %v", data, err)
				continue
			}
			if f.Type == wire.TypeHeartbeat {
				s.send(t, &wire.Frame{Type: wire.TypeHeartbeatAck, MessageID: f.MessageID, Timestamp: f.Timestamp})
				continue
			}
			s.in <- inbound{frame: f}
		}
	}))
	t.Cleanup(srv.Close)
	r.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/tunnel"
	return r
}

// recv bounds a wait that would otherwise hang the test on a bug. A closed
// channel gives the zero value.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}

// messageHook closes a channel when the logger logs a given message.
type messageHook struct {
	message string
	seen    chan struct{}
	once    sync.Once
}

func (h *messageHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *messageHook) Fire(e *logrus.Entry) error {
	if e.Message == h.message {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// TestSupervise runs the command's core against a fake relay and a real
// upstream: a request streamed back through the tunnel, SIGHUP, and a
// SIGTERM that drains.
func TestSupervise(t *testing.T) {
	const key = "e2e-key"
	relay := newFakeRelay(t, key)
	release := make(chan struct{})
	slowStarted := make(chan struct{})
	finishSlow := make(chan struct{})
	// A failing test must not leave the upstream's handlers blocked, or
	// closing the upstream would hang.
	testDone := make(chan struct{})
	wait := func(gate chan struct{}) {
		select {
		case <-gate:
		case <-testDone:
		}
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/tts":
			body, _ := io.ReadAll(r.Body)
			if r.Method != http.MethodPost || r.URL.RawQuery != "x=1" || string(body) != `{"text":"hi"}` {
				t.Errorf("upstream got %s %s %q", r.Method, r.URL, body)
			}
			w.Header().Set("Content-Type", "audio/wav")
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			wait(release)
			io.WriteString(w, "second")
		case "/slow":
			close(slowStarted)
			wait(finishSlow)
			io.WriteString(w, "slow done")
		}
	}))
	defer upstream.Close()
	defer close(testDone)

	var logs strings.Builder
	// One connection: the fake relay's sessions come one at a time.
	o, err := parseOptions([]string{"-relay-url", relay.url, "-connections", "1", "-forward", upstream.URL},
		env(map[string]string{"TUNNEL_API_KEY": key}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log := newLogger(o, &syncWriter{w: &logs})
	draining := &messageHook{message: "Draining: refusing new requests", seen: make(chan struct{})}
	log.AddHook(draining)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api := "http://" + ln.Addr().String()
	sigs := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- supervise(o, log, ln, sigs) }()

	// A request whose answer streams back chunk by chunk.
	s := recv(t, relay.sessions, "the supervisor's connection")
	s.send(t, &wire.Frame{Type: wire.TypeRequest, MessageID: "r1", Method: "POST", Path: "/v1/tts?x=1",
		Headers: map[string][]string{"Content-Type": {"application/json"}}, Body: []byte(`{"text":"hi"}`)})
	head := recv(t, s.in, "the response").frame
	if head == nil || head.Type != wire.TypeResponse || head.MessageID != "r1" || head.Status != 200 || !head.Stream ||
		http.Header(head.Headers).Get("Content-Type") != "audio/wav" {
		t.Fatalf("want a streamed 200 audio/wav response to r1, got %+v", head)
	}
	if c := recv(t, s.in, "the first chunk"); c.id != "r1" || string(c.chunk) != "first" {
		t.Fatalf("first chunk %+v, want r1 %q while the upstream is still writing", c, "first")
	}
	close(release)
	var rest []byte
	for m := recv(t, s.in, "the rest of the stream"); m.frame == nil || m.frame.Type != wire.TypeStreamEnd; m = recv(t, s.in, "the stream end") {
		if m.frame != nil && m.frame.Type != wire.TypeWindowUpdate {
			t.Fatalf("unexpected frame mid-stream: %+v", m.frame)
		}
		rest = append(rest, m.chunk...)
	}
	if string(rest) != "second" {
		t.Errorf("rest of the stream %q, want %q", rest, "second")
	}

	var health map[string]any
	if code := getJSON(t, api+"/health", &health); code != 200 || health["status"] != "healthy" {
		t.Errorf("GET /health = %d %v", code, health)
	}

	// SIGHUP: a new connection.
	sigs <- syscall.SIGHUP
	s = recv(t, relay.sessions, "the connection after SIGHUP")

	// SIGTERM with a request in flight: new requests get 503, the one in
	// flight finishes, then the tunnel closes and supervise returns.
	s.send(t, &wire.Frame{Type: wire.TypeRequest, MessageID: "r2", Method: "GET", Path: "/slow"})
	recv(t, slowStarted, "the slow request upstream")
	sigs <- syscall.SIGTERM
	recv(t, draining.seen, "the drain to start")
	s.send(t, &wire.Frame{Type: wire.TypeRequest, MessageID: "r3", Method: "GET", Path: "/v1/tts"})
	if f := recv(t, s.in, "the answer to r3").frame; f == nil || f.MessageID != "r3" || f.Status != 503 || string(f.Body) != `{"error":"draining"}` {
		t.Fatalf("a request while draining got %+v, want 503 draining", f)
	}
	var status map[string]any
	if code := getJSON(t, api+"/status", &status); code != 200 || status["state"] != "AUTHENTICATED" {
		t.Errorf("GET /status while draining = %d %v", code, status["state"])
	}
	close(finishSlow)
	if f := recv(t, s.in, "the answer to r2").frame; f == nil || f.MessageID != "r2" || f.Status != 200 || string(f.Body) != "slow done" {
		t.Fatalf("the request in flight got %+v", f)
	}
	if err := recv(t, done, "supervise to return"); err != nil {
		t.Fatalf("supervise = %v", err)
	}
	for range s.in {
		// The connection closes once the tunnel has stopped.
	}
	if strings.Contains(logs.String(), key) {
		t.Error("the API key appears in the logs")
	}
}

// syncWriter serialises writes from the logger's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestSecondSignalCutsTheDrainShort: with a request that never finishes, a
// second SIGTERM ends the drain, and stopping the tunnel cancels the
// upstream request.
func TestSecondSignalCutsTheDrainShort(t *testing.T) {
	const key = "e2e-key"
	relay := newFakeRelay(t, key)
	started := make(chan struct{})
	cancelled := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(cancelled)
	}))
	defer upstream.Close()

	o, err := parseOptions([]string{"-relay-url", relay.url, "-connections", "1", "-forward", upstream.URL, "-drain-timeout", "1h"},
		env(map[string]string{"TUNNEL_API_KEY": key}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log := newLogger(o, io.Discard)
	draining := &messageHook{message: "Draining: refusing new requests", seen: make(chan struct{})}
	log.AddHook(draining)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- supervise(o, log, ln, sigs) }()

	s := recv(t, relay.sessions, "the supervisor's connection")
	s.send(t, &wire.Frame{Type: wire.TypeRequest, MessageID: "r1", Method: "GET", Path: "/forever"})
	recv(t, started, "the request upstream")
	sigs <- syscall.SIGTERM
	recv(t, draining.seen, "the drain to start")
	sigs <- syscall.SIGINT
	recv(t, cancelled, "the upstream request to be cancelled")
	if err := recv(t, done, "supervise to return"); err != nil {
		t.Fatalf("supervise = %v", err)
	}
}
