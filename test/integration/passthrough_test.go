package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/test/harness"
	"github.com/gorilla/websocket"
)

// TestTrailersReachThePublicClient: a gRPC-style answer keeps its
// grpc-status and grpc-message trailers end to end, after a body of any
// size (inline-sized and streamed).
func TestTrailersReachThePublicClient(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/grpc", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.Header().Set("Content-Type", "application/grpc")
		n := 100
		if r.URL.Query().Get("big") == "1" {
			n = 300 << 10
		}
		_, _ = w.Write([]byte(strings.Repeat("x", n)))
		w.Header().Set("Grpc-Status", "7")
		w.Header().Set("Grpc-Message", "permission denied")
	})
	w, r, _ := connect(t, mux, nil, nil)
	for _, query := range []string{"", "?big=1"} {
		resp, err := w.client.Get(publicURL(r, "/grpc"+query))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /grpc%s: %d, %v", query, resp.StatusCode, err)
		}
		if got := resp.Trailer.Get("Grpc-Status"); got != "7" {
			t.Errorf("GET /grpc%s (%d bytes): trailer grpc-status %q, want 7 (trailers %v)", query, len(body), got, resp.Trailer)
		}
		if got := resp.Trailer.Get("Grpc-Message"); got != "permission denied" {
			t.Errorf("GET /grpc%s: trailer grpc-message %q", query, got)
		}
	}
}

// TestServerSentEventsStreamEventByEvent: each event of a text/event-stream
// reaches the public client before the upstream writes the next.
func TestServerSentEventsStreamEventByEvent(t *testing.T) {
	next := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		for i := range 3 {
			fmt.Fprintf(w, "id: %d\nevent: progress\ndata: chunk %d\n\n", i, i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	w, r, _ := connect(t, mux, nil, nil)
	resp, err := w.client.Get(publicURL(r, "/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := bufio.NewReader(resp.Body)
	for i := range 3 {
		var event []string
		for {
			line, err := events.ReadString('\n')
			if err != nil {
				t.Fatalf("event %d: %v after %q", i, err, event)
			}
			if line == "\n" {
				break
			}
			event = append(event, strings.TrimSuffix(line, "\n"))
		}
		want := []string{fmt.Sprintf("id: %d", i), "event: progress", fmt.Sprintf("data: chunk %d", i)}
		if strings.Join(event, "|") != strings.Join(want, "|") {
			t.Fatalf("event %d: %q, want %q", i, event, want)
		}
		// The upstream writes the next event only now: this one came alone.
		next <- struct{}{}
	}
	harness.Eventually(t, patience, "the end of the stream", func() bool {
		_, err := events.ReadByte()
		return err == io.EOF
	})
}

// ttsSocket is a TTS-like WebSocket service: each text message "speak N"
// is answered with N binary audio frames, the first at once and the rest
// once release is closed; "bye" is answered with a close frame 4000
// "done". "flood N" sends N binary frames of 64 KiB at once. What the
// service saw last of a client's close is sent on closes.
type ttsSocket struct {
	release chan struct{}
	closes  chan *websocket.CloseError
}

func (s *ttsSocket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	for {
		kind, msg, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				s.closes <- ce
			}
			return
		}
		if kind != websocket.TextMessage {
			continue
		}
		var n int
		scan := func(format string) bool {
			_, err := fmt.Sscanf(string(msg), format, &n)
			return err == nil
		}
		switch {
		case string(msg) == "bye":
			_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "done"))
		case scan("speak %d"):
			for i := range n {
				if i == 1 {
					<-s.release
				}
				_ = conn.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{byte(i)}, 4096))
			}
			_ = conn.WriteMessage(websocket.TextMessage, []byte("spoken"))
		case scan("flood %d"):
			go func() {
				for range n {
					if conn.WriteMessage(websocket.BinaryMessage, make([]byte, 64<<10)) != nil {
						return
					}
				}
			}()
		}
	}
}

// TestWebSocketPassthrough: a public WebSocket client reaches the local
// service's WebSocket through the relay and the supervisor: text in,
// binary audio frames out, the first before the service has finished;
// pings answered end to end; close codes and reasons carried both ways; a
// client that does not read slows only its own socket.
func TestWebSocketPassthrough(t *testing.T) {
	svc := &ttsSocket{release: make(chan struct{}), closes: make(chan *websocket.CloseError, 4)}
	mux := http.NewServeMux()
	mux.Handle("/ws", svc)
	_, r, _ := connect(t, mux, nil, nil)
	url := "ws://" + r.Addr().String() + "/ws"
	dial := func() *websocket.Conn {
		conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatalf("dial %s: %v (%v)", url, err, resp)
		}
		t.Cleanup(func() { conn.Close() })
		_ = conn.SetReadDeadline(time.Now().Add(patience))
		return conn
	}

	// A client that asks for a flood and reads nothing: its own window
	// fills, nobody else's.
	idle := dial()
	if err := idle.WriteMessage(websocket.TextMessage, []byte("flood 256")); err != nil {
		t.Fatal(err)
	}

	conn := dial()
	pongs := make(chan string, 1)
	conn.SetPongHandler(func(data string) error { pongs <- data; return nil })
	if err := conn.WriteMessage(websocket.TextMessage, []byte("speak 3")); err != nil {
		t.Fatal(err)
	}
	kind, first, err := conn.ReadMessage()
	if err != nil || kind != websocket.BinaryMessage || len(first) != 4096 || first[0] != 0 {
		t.Fatalf("first frame: kind %d, %d bytes, %v", kind, len(first), err)
	}
	// The service has not finished: it sends the rest only now.
	close(svc.release)
	for i := 1; i < 3; i++ {
		kind, frame, err := conn.ReadMessage()
		if err != nil || kind != websocket.BinaryMessage || len(frame) != 4096 || frame[0] != byte(i) {
			t.Fatalf("frame %d: kind %d, %d bytes, %v", i, kind, len(frame), err)
		}
	}
	if kind, msg, err := conn.ReadMessage(); err != nil || kind != websocket.TextMessage || string(msg) != "spoken" {
		t.Fatalf("text frame: kind %d %q, %v", kind, msg, err)
	}

	// A ping is answered by the service, through the tunnel.
	if err := conn.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}
	go func() { _, _, _ = conn.NextReader() }() // the pong handler runs from a read
	select {
	case got := <-pongs:
		if got != "are you there" {
			t.Fatalf("pong %q", got)
		}
	case <-time.After(patience):
		t.Fatal("no pong")
	}

	// The service's close code and reason reach the client.
	other := dial()
	if err := other.WriteMessage(websocket.TextMessage, []byte("bye")); err != nil {
		t.Fatal(err)
	}
	_, _, err = other.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 || ce.Text != "done" {
		t.Fatalf("the service's close: %v, want 4000 done", err)
	}

	// The client's close code and reason reach the service.
	last := dial()
	if err := last.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "client leaves")); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case got := <-svc.closes:
			if got.Code == 4001 {
				if got.Text != "client leaves" {
					t.Fatalf("the client's close reached the service as %v", got)
				}
				return
			}
		case <-time.After(patience):
			t.Fatal("the client's close never reached the service")
		}
	}
}
