package hardening_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// The hostile-client suite: each attack that once took the relay down or
// kept others out, tried again with counts and durations that fit a 2-core
// machine, asserting that the legitimate supervisor stays connected and
// served, that the attack is refused or cut within its documented bound,
// and that goroutines and heap come back. These are the helpers the
// attacks share.

// loopback is the client address number n of an attack: 127.0.0.0/8 is all
// loopback on Linux, so each number is another client to the relay.
func loopback(n int) net.IP { return net.IPv4(127, 1, byte(n/250), byte(n%250+1)) }

// dialerFrom dials from ip, with the smallest buffers gorilla takes, so that
// thousands of attack connections cost the test process little.
func dialerFrom(ip net.IP) *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout: wait,
		ReadBufferSize:   256,
		WriteBufferSize:  256,
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}).DialContext,
	}
}

// smallReceiveBuffer is a net.Dialer Control that gives the socket a 4 KiB
// receive buffer: a client that does not read then stalls its sender at
// once, rather than after the megabytes loopback would take.
func smallReceiveBuffer(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); cerr != nil {
		return cerr
	}
	return err
}

// upgrade opens a WebSocket to r's /tunnel from ip. status is the HTTP
// status of a refused upgrade (0 when the upgrade passed or never got an
// answer).
func upgrade(r *relay.Relay, ip net.IP) (conn *websocket.Conn, status int, err error) {
	conn, resp, err := dialerFrom(ip).Dial(harness.TunnelURL(r), nil)
	if err != nil && resp != nil {
		status = resp.StatusCode
		resp.Body.Close()
	}
	return conn, status, err
}

// sendFrame writes f on conn, within wait.
func sendFrame(conn *websocket.Conn, f *wire.Frame) error {
	_ = conn.SetWriteDeadline(time.Now().Add(wait))
	return conn.WriteMessage(websocket.TextMessage, wire.MustEncode(f))
}

// frameType is the type of the frame data holds, or "" if it holds none.
func frameType(data []byte) string {
	f, err := wire.Decode(data)
	if err != nil {
		return ""
	}
	return f.Type
}

// liveHeap is the heap in use after two collections: what is still
// reachable, garbage aside.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// mib is n bytes in MiB, for messages.
func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// metric reads one series of r's admin /metrics, e.g.
// `tunnel_relay_auth_failures_total{reason="timeout"}`; 0 when absent.
func metric(t *testing.T, r *relay.Relay, series string) float64 {
	t.Helper()
	// No keep-alive: an idle connection would count as goroutines left.
	req, err := http.NewRequest(http.MethodGet, harness.AdminURL(r)+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		if value, ok := strings.CutPrefix(lines.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("metric %s: %q", series, value)
			}
			return v
		}
	}
	return 0
}

// settleGoroutines waits until at most want goroutines run, allowing for
// the ones that finish a moment after a Close returns.
func settleGoroutines(t *testing.T, want int) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for runtime.NumGoroutine() > want {
		select {
		case <-tick.C:
		case <-deadline:
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		}
	}
}

// freshClient is a public client that opens a connection per request, so
// that no idle one counts among the goroutines left.
func freshClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true, DisableKeepAlives: true, Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

// rawRequest writes head (an HTTP/1.1 request head, lines ended by CRLF,
// without the blank line) and body to a new connection to addr, and
// returns the connection for the test to go on with.
func rawRequest(t *testing.T, addr, head, body string) net.Conn {
	t.Helper()
	conn, err := (&net.Dialer{Timeout: wait}).DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetWriteDeadline(time.Now().Add(wait))
	if _, err := conn.Write([]byte(head + "\r\n\r\n" + body)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// dialFrom opens a TCP connection to addr from ip, closed when the test ends.
func dialFrom(t *testing.T, ip net.IP, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: ip}}
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// newReader reads conn within wait.
func newReader(conn net.Conn) *bufio.Reader {
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	return bufio.NewReader(conn)
}

// readStatus reads the status code of the response on conn, within wait;
// 0 when the connection ended without one.
func readStatus(conn net.Conn) int {
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
