package relaystub_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/pipenet"
	"github.com/enhanced-tunnel/tunnel/test/relaystub"
)

func dial(t *testing.T, n *pipenet.Network, url string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{NetDialContext: n.DialContext}
	return d.DialContext(context.Background(), url, nil)
}

func readFrame(t *testing.T, c *websocket.Conn) *wire.Frame {
	t.Helper()
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	f, err := wire.Decode(data)
	if err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
	return f
}

func write(t *testing.T, c *websocket.Conn, f *wire.Frame) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, wire.MustEncode(f)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestSessionAuthHeartbeatSendAndRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		defer n.Close()
		stub := relaystub.New(n.Listener(), relaystub.Options{APIKey: "k"})
		defer stub.Close()

		if err := stub.Send(&wire.Frame{Type: wire.TypeRequest}); !errors.Is(err, relaystub.ErrNoSession) {
			t.Fatalf("Send without session: %v", err)
		}
		c, _, err := dial(t, n, stub.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		write(t, c, &wire.Frame{Type: wire.TypeAuth, APIKey: "k"})
		if f := readFrame(t, c); f.Type != wire.TypeAuthOK || f.SessionID != "session-1" {
			t.Fatalf("auth answer = %+v", f)
		}
		write(t, c, &wire.Frame{Type: wire.TypeHeartbeat, MessageID: "h1", Timestamp: 42})
		if f := readFrame(t, c); f.Type != wire.TypeHeartbeatAck || f.MessageID != "h1" || f.Timestamp != 42 {
			t.Fatalf("heartbeat answer = %+v", f)
		}
		sent := make(chan error, 1)
		// A pipe write waits for its reader, so Send runs while this goroutine reads.
		go func() { sent <- stub.Send(&wire.Frame{Type: wire.TypeRequest, MessageID: "r1"}) }()
		if f := readFrame(t, c); f.Type != wire.TypeRequest || f.MessageID != "r1" {
			t.Fatalf("sent frame arrived as %+v", f)
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}

		auth := <-stub.Frames()
		hb := <-stub.Frames()
		if auth.Frame.Type != wire.TypeAuth || auth.Session != "" || hb.Frame.Type != wire.TypeHeartbeat || hb.Session != "session-1" {
			t.Fatalf("recorded %+v then %+v", auth, hb)
		}
		if got := stub.Connections(); got != 1 {
			t.Fatalf("Connections = %d, want 1", got)
		}
	})
}

func TestWrongKeyGetsAuthErrorAndClose1008(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		defer n.Close()
		stub := relaystub.New(n.Listener(), relaystub.Options{APIKey: "k"})
		defer stub.Close()
		c, _, err := dial(t, n, stub.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		write(t, c, &wire.Frame{Type: wire.TypeAuth, APIKey: "wrong"})
		if f := readFrame(t, c); f.Type != wire.TypeAuthError || f.Error != relaystub.InvalidKey {
			t.Fatalf("auth answer = %+v", f)
		}
		_, _, err = c.ReadMessage()
		if !websocket.IsCloseError(err, wire.ClosePolicy) {
			t.Fatalf("after auth_error: %v, want close 1008", err)
		}
	})
}

func TestHTTPStatusAndDropAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		defer n.Close()
		stub := relaystub.New(n.Listener(), relaystub.Options{})
		defer stub.Close()

		stub.SetHTTPStatus(http.StatusTooManyRequests)
		_, resp, err := dial(t, n, stub.URL())
		if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("dial = %v, %v; want a 429", resp, err)
		}

		stub.SetMode(relaystub.AuthOK)
		c, _, err := dial(t, n, stub.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		write(t, c, &wire.Frame{Type: wire.TypeAuth})
		readFrame(t, c)
		start := time.Now()
		stub.DropAll()
		if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseAbnormalClosure) {
			t.Fatalf("after DropAll: %v, want an abnormal closure", err)
		}
		if time.Since(start) != 0 {
			t.Fatal("DropAll took fake time")
		}
		if got := stub.Connections(); got != 2 {
			t.Fatalf("Connections = %d, want 2", got)
		}
	})
}
