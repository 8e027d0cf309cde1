package hardening_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// closeCode reads from conn until the relay closes it, and returns the
// close code (1006 when the connection ended without one).
func closeCode(conn *websocket.Conn) int {
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return websocket.CloseAbnormalClosure
		}
	}
}

// An auth frame with a 1 MiB tunnel name and client string put 3 MiB in the
// log, the 16 MiB read limit applying before auth. Now a connection gets 4
// KiB before auth_ok (1009 beyond), and a frame within that has its fields
// logged cut short.
func TestHugeAuthFramesAreCutBeforeTheyReachTheLog(t *testing.T) {
	logger, logs := debugLogger()
	r := startRelay(t, func(c *relay.Config) { c.Logger = logger })

	huge, _, err := upgrade(r, loopback(0))
	if err != nil {
		t.Fatal(err)
	}
	defer huge.Close()
	oneMiB := strings.Repeat("n", 1<<20)
	_ = sendFrame(huge, &wire.Frame{Type: wire.TypeAuth, APIKey: wrongKey, Tunnel: oneMiB, Client: oneMiB})
	if code := closeCode(huge); code != wire.CloseTooBig {
		t.Fatalf("a 2 MiB auth frame closed with %d, want 1009", code)
	}

	// Just under the auth read limit: read, refused, and logged.
	long, _, err := upgrade(r, loopback(1))
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	name, client := strings.Repeat("t", 1900), strings.Repeat("c", 1900)
	_ = sendFrame(long, &wire.Frame{Type: wire.TypeAuth, APIKey: wrongKey, Tunnel: name, Client: client})
	if code := closeCode(long); code != wire.ClosePolicy {
		t.Fatalf("a 3.8 KiB auth frame with a wrong key closed with %d, want 1008", code)
	}
	harness.Eventually(t, wait, "the refusal logged", func() bool { return logs.Count("Authentication failed") == 1 })
	text := logs.String()
	if len(text) > 16<<10 || strings.Contains(text, name) || strings.Contains(text, client) {
		t.Fatalf("%d bytes of log for two auth frames, their fields whole: %v", len(text), strings.Contains(text, name))
	}
	for _, line := range strings.Split(text, "\n") {
		if len(line) > 1024 {
			t.Fatalf("a log line of %d bytes: %.200s...", len(line), line)
		}
	}
}

// An authenticated supervisor that stops reading and sends heartbeats with
// large ids made the relay queue every ack: 300 MB in 8 s, until the write
// timeout. Now the answers waiting for a supervisor are bounded (1 MiB): one
// that lets more pile up is dropped, long before its write timeout, and the
// heap comes back.
func TestASupervisorThatDoesNotReadIsDroppedNotBuffered(t *testing.T) {
	logger, logs := debugLogger()
	r := startRelay(t, func(c *relay.Config) {
		c.WriteTimeout = time.Minute // the reply bound must act, not the write timeout
		c.Logger = logger
	})
	base := liveHeap()
	d := dialerFrom(loopback(0))
	d.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: loopback(0)}, Control: smallReceiveBuffer}).DialContext
	conn, _, err := d.DialContext(context.Background(), harness.TunnelURL(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := sendFrame(conn, &wire.Frame{Type: wire.TypeAuth, APIKey: defaultKey}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	if _, data, err := conn.ReadMessage(); err != nil || frameType(data) != wire.TypeAuthOK {
		t.Fatalf("auth answered %q, %v", data, err)
	}

	// From here on the supervisor reads nothing.
	const idSize, most = 256 << 10, 256 << 20
	hb := wire.MustEncode(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: strings.Repeat("h", idSize), Timestamp: 1})
	sent := 0
	for sent < most {
		_ = conn.SetWriteDeadline(time.Now().Add(wait))
		if err := conn.WriteMessage(websocket.TextMessage, hb); err != nil {
			break
		}
		sent += len(hb)
	}
	if sent >= most {
		t.Fatalf("the relay took %d MiB of heartbeats without being read and never dropped the supervisor", sent>>20)
	}
	harness.Eventually(t, wait, "the session dropped as a slow reader", func() bool {
		return logs.Count("SLOW_READER") > 0 && metric(t, r, "tunnel_relay_sessions") == 0
	})
	t.Logf("dropped after %d MiB of heartbeats", sent>>20)
	if sent > 64<<20 {
		t.Errorf("dropped only after %d MiB of heartbeats, want under 64 MiB", sent>>20)
	}
	if after := liveHeap(); after > base+4<<20 {
		t.Errorf("heap %s after, %s before", mib(after), mib(base))
	}
}
