package hardening_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// endless is an upstream whose /endless streams zeros until its request is
// cancelled, counting the cancellations, and whose /sized?n=N answers N
// bytes of a known pattern; anything else is hello.
type endless struct{ cancelled atomic.Int64 }

func (e *endless) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case "/endless":
		chunk := make([]byte, 32<<10)
		for req.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				break
			}
			w.(http.Flusher).Flush()
		}
		e.cancelled.Add(1)
	case "/sized":
		n, _ := strconv.Atoi(req.URL.Query().Get("n"))
		_, _ = io.Copy(w, io.LimitReader(&pattern{}, int64(n)))
	case "/upload":
		if _, err := io.Copy(io.Discard, req.Body); err != nil || req.Context().Err() != nil {
			e.cancelled.Add(1)
		}
	default:
		hello(w, req)
	}
}

// pattern reads as the bytes 0, 1, ..., 250, 0, 1, ...: a prime period, so
// that a chunk out of place shows.
type pattern struct{ at int64 }

func (s *pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte((s.at + int64(i)) % 251)
	}
	s.at += int64(len(p))
	return len(p), nil
}

// stalled sends GET path to addr from a connection with a small receive
// buffer, and never reads the answer.
func stalled(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: wait, Control: smallReceiveBuffer}
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: relay\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	return conn
}

// mark is where an attack on a public front starts from: a relay with its
// tunnel up and a public client that has been served once (so that the
// supervisor's connection to its upstream is there already), and the
// goroutines and heap at that point.
type mark struct {
	r          *relay.Relay
	legit      *tunnel
	c          *http.Client
	goroutines int
	heap       uint64
}

func markBefore(t *testing.T, r *relay.Relay, legit *tunnel) *mark {
	t.Helper()
	legit.await(messages.Authenticated)
	m := &mark{r: r, legit: legit, c: freshClient(t)}
	if status, _ := get(t, m.c, publicURL(r)+"/warm-up"); status != http.StatusOK {
		t.Fatalf("warm-up: %d", status)
	}
	m.goroutines = runtime.NumGoroutine()
	m.heap = liveHeap()
	return m
}

// recovered checks what must hold once the attack's connections are gone:
// every place free, the tunnel up and serving, goroutines and heap back.
func (m *mark) recovered(t *testing.T, conns []net.Conn) {
	t.Helper()
	harness.Eventually(t, wait, "every place free", func() bool { return inFlight(t, m.r) == 0 })
	if status, body := get(t, m.c, publicURL(m.r)+"/after"); status != http.StatusOK || body != "hello" {
		t.Fatalf("after: %d %q", status, body)
	}
	for _, conn := range conns {
		_ = conn.Close()
	}
	settleGoroutines(t, m.goroutines)
	if after := liveHeap(); after > m.heap+2<<20 {
		t.Errorf("heap %s after, %s before", mib(after), mib(m.heap))
	}
	if st := m.legit.Status(); st.State != messages.Authenticated || len(st.Health.FailureTypes) != 0 {
		t.Fatalf("tunnel %s, failures %v", st.State, st.Health.FailureTypes)
	}
}

func inFlight(t *testing.T, r *relay.Relay) float64 {
	return metric(t, r, `tunnel_relay_requests_in_flight{tunnel="default"}`)
}

// 300 requests whose small body never ends were held for as long as their
// clients liked, 68 KiB each, and took no place among a tunnel's requests
// in flight. Now each takes a place from its arrival, and each read of its
// body must bring something within the body timeout: past it the client is
// answered 408, its place freed, and the upstream request already under
// way (a body large enough to be streamed) cancelled.
func TestRequestBodiesThatNeverEndAreCutAndFreeTheirPlaces(t *testing.T) {
	up := &endless{}
	r := startRelay(t, func(c *relay.Config) { c.BodyTimeout, c.MaxConcurrent = time.Second, 20 })
	m := markBefore(t, r, startTunnel(t, harness.TunnelURL(r), defaultKey, upstream(t, up.ServeHTTP), nil))

	addr := r.Addr().String()
	var conns []net.Conn
	for i := range 19 {
		if i%2 == 0 {
			conns = append(conns, rawRequest(t, addr, "POST /upload HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked", "5\r\nhello\r\n"))
		} else {
			conns = append(conns, rawRequest(t, addr, "POST /upload HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000", "0123456789"))
		}
	}
	// Over the inline limit: this one goes through the tunnel as it comes.
	conns = append(conns, rawRequest(t, addr, "POST /upload HTTP/1.1\r\nHost: relay\r\nContent-Length: 200000", strings.Repeat("x", 70000)))
	harness.Eventually(t, wait, "20 requests in flight", func() bool { return inFlight(t, r) == 20 })
	status, body := get(t, m.c, publicURL(r)+"/one-more")
	if status != http.StatusServiceUnavailable || !strings.Contains(errorText(t, body), "too many requests") {
		t.Fatalf("a request while they hold every place: %d %q, want 503", status, body)
	}

	for i, conn := range conns {
		if status := readStatus(conn); status != http.StatusRequestTimeout {
			t.Errorf("request %d: status %d, want 408", i+1, status)
		}
	}
	harness.Eventually(t, wait, "the streamed request's upstream request cancelled", func() bool { return up.cancelled.Load() == 1 })
	m.recovered(t, conns)
}

// Clients that never read a streamed response held 1.1 MiB each and their
// place for as long as they stayed: 50 of them made every other request 503.
// Now a client that takes nothing of its response for the send timeout is
// cut off, its place freed and its upstream request cancelled.
func TestClientsThatNeverReadAreCutAndTheirUpstreamCancelled(t *testing.T) {
	up := &endless{}
	r := startRelay(t, func(c *relay.Config) { c.SendTimeout, c.MaxConcurrent = 2*time.Second, 10 })
	m := markBefore(t, r, startTunnel(t, harness.TunnelURL(r), defaultKey, upstream(t, up.ServeHTTP), nil))

	var conns []net.Conn
	for range 10 {
		conns = append(conns, stalled(t, r.Addr().String(), "/endless"))
	}
	harness.Eventually(t, wait, "10 requests in flight", func() bool { return inFlight(t, r) == 10 })
	if status, _ := get(t, m.c, publicURL(r)+"/one-more"); status != http.StatusServiceUnavailable {
		t.Fatalf("a request while they hold every place: %d, want 503", status)
	}
	harness.Eventually(t, wait, "every stalled client cut and its upstream request cancelled", func() bool {
		return up.cancelled.Load() == 10
	})
	m.recovered(t, conns)
}

// Streamed responses buffered for clients that lag add up to at most the
// relay's budget: past it the stream holding the most is cut (its upstream
// request cancelled), while a client that keeps up gets its 16 MiB whole.
// A laggard is cut at once even while the relay's write to it is blocked on
// a full socket: that used to wait for the send timeout (a minute here),
// and this test failed whenever the kernel took the writes slowly enough
// for every laggard to be in such a write when the budget ran out.
func TestStreamBuffersStayWithinTheBudgetAndTheLaggardsAreCut(t *testing.T) {
	up := &endless{}
	const budget = 1 << 20
	r := startRelay(t, func(c *relay.Config) { c.MaxBuffered, c.SendTimeout = budget, time.Minute })
	m := markBefore(t, r, startTunnel(t, harness.TunnelURL(r), defaultKey, upstream(t, up.ServeHTTP), nil))

	// Each lagging stream comes to hold a good part of its window (1 MiB),
	// behind what the kernel's socket buffers take: six of them would hold
	// some MiB. How many must go depends on how much each holds when the
	// budget runs out, which the kernel decides; that the budget holds, and
	// that the cut ones are laggards, does not.
	var conns []net.Conn
	for range 6 {
		conns = append(conns, stalled(t, r.Addr().String(), "/endless"))
	}
	// Until their kernel buffers are full, they read like anyone: wait until
	// the bytes buffered stop moving, a tenth of a second.
	still, last := 0, -1.0
	harness.Eventually(t, wait, "laggards cut, the rest still", func() bool {
		b := metric(t, r, "tunnel_relay_buffered_bytes")
		if b == last {
			still++
		} else {
			still, last = 0, b
		}
		return up.cancelled.Load() >= 1 && still >= 10
	})
	if b := metric(t, r, "tunnel_relay_buffered_bytes"); b > budget {
		t.Fatalf("%v bytes buffered, budget %d", b, budget)
	}
	const size = 16 << 20
	resp, err := m.c.Get(fmt.Sprintf("%s/sized?n=%d", publicURL(r), size))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(&checker{}, resp.Body)
	if err != nil || n != size {
		t.Fatalf("the client that keeps up got %d bytes, %v; want %d", n, err, size)
	}
	if b := metric(t, r, "tunnel_relay_buffered_bytes"); b > budget {
		t.Fatalf("%v bytes buffered, budget %d", b, budget)
	}
	resp.Body.Close()
	for _, conn := range conns {
		_ = conn.Close() // the two laggards within the budget hold their places until they go
	}
	m.recovered(t, nil)
}

// checker is a writer that fails unless it is written the pattern.
type checker struct{ at int64 }

func (c *checker) Write(p []byte) (int, error) {
	for i, b := range p {
		if b != byte((c.at+int64(i))%251) {
			return i, fmt.Errorf("byte %d is %d, want %d", c.at+int64(i), b, (c.at+int64(i))%251)
		}
	}
	c.at += int64(len(p))
	return len(p), nil
}
