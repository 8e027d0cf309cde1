package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

func TestConcurrentRequestsAreMatchedToTheirResponses(t *testing.T) {
	r := startRelay(t, nil)
	connect(t, r, defaultKey, "", echo)
	c := httpClient(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			want := fmt.Sprintf("request %d", i)
			resp, err := c.Post(fmt.Sprintf("%s/r/%d", baseURL(r), i), "text/plain", strings.NewReader(want))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(got) != want || resp.Header.Get("X-Path") != fmt.Sprintf("/r/%d", i) {
				errs <- fmt.Errorf("request %d: status %d, body %q, path %q", i, resp.StatusCode, got, resp.Header.Get("X-Path"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// held is a handler that reports each request and answers only when told,
// or never when its context (the supervisor's cancel) ends first.
type held struct {
	got     chan *wire.Frame
	release chan struct{}
}

func newHeld() *held {
	return &held{got: make(chan *wire.Frame, 16), release: make(chan struct{})}
}

func (h *held) handle(ctx context.Context, req *wire.Frame, _ io.Reader) reply {
	h.got <- req
	select {
	case <-h.release:
		return reply{Status: http.StatusOK, Body: []byte("late")}
	case <-ctx.Done():
		return reply{}
	}
}

func (h *held) next(t *testing.T) *wire.Frame {
	t.Helper()
	select {
	case f := <-h.got:
		return f
	case <-time.After(wait):
		t.Fatal("no request reached the supervisor")
	}
	return nil
}

// get runs a GET in the background; the response comes on the channel.
func get(t *testing.T, ctx context.Context, url string) chan *http.Response {
	out := make(chan *http.Response, 1)
	c := httpClient(t)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			out <- nil
			return
		}
		out <- resp
	}()
	return out
}

func response(t *testing.T, ch chan *http.Response) *http.Response {
	t.Helper()
	select {
	case resp := <-ch:
		if resp == nil {
			t.Fatal("request failed")
		}
		return resp
	case <-time.After(wait):
		t.Fatal("no response")
	}
	return nil
}

// With no retry of idempotent requests, a GET whose tunnel is lost after
// it was sent is 502 (see test/relayha for the retry).
func TestTunnelLostBeforeTheResponseIs502(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.RetryIdempotent = false })
	h := newHeld()
	s := connect(t, r, defaultKey, "", h.handle)
	ch := get(t, context.Background(), baseURL(r)+"/slow")
	h.next(t)
	_ = s.conn.Close()
	resp := response(t, ch)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if text := errorText(t, resp); !strings.Contains(text, "tunnel lost") {
		t.Fatalf("error %q", text)
	}
}

func TestNoResponseInTimeIs504AndCancels(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.RequestTimeout = 300 * time.Millisecond })
	h := newHeld()
	s := connect(t, r, defaultKey, "", h.handle)
	ch := get(t, context.Background(), baseURL(r)+"/slow")
	req := h.next(t)
	resp := response(t, ch)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if text := errorText(t, resp); !strings.Contains(text, "no response") {
		t.Fatalf("error %q", text)
	}
	s.expectCancel(req.MessageID)
}

func TestPublicClientGoneCancels(t *testing.T) {
	r := startRelay(t, nil)
	h := newHeld()
	s := connect(t, r, defaultKey, "", h.handle)
	ctx, cancel := context.WithCancel(context.Background())
	get(t, ctx, baseURL(r)+"/slow")
	req := h.next(t)
	cancel()
	s.expectCancel(req.MessageID)
}

func TestTooManyConcurrentRequestsIs503(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.MaxConcurrent = 1 })
	h := newHeld()
	connect(t, r, defaultKey, "", h.handle)
	first := get(t, context.Background(), baseURL(r)+"/one")
	h.next(t)
	resp, err := httpClient(t).Get(baseURL(r) + "/two")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if text := errorText(t, resp); !strings.Contains(text, "too many requests") {
		t.Fatalf("error %q", text)
	}
	close(h.release)
	if resp := response(t, first); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: status %d", resp.StatusCode)
	} else {
		resp.Body.Close()
	}
}

func TestBodyOverTheLimitIs413(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.MaxBody, c.InlineLimit = 1000, 100 })
	// The streamed case: the supervisor sees the body fail and gets a cancel.
	h := newHeld()
	s := connect(t, r, defaultKey, "", func(ctx context.Context, req *wire.Frame, body io.Reader) reply {
		_, _ = io.Copy(io.Discard, body)
		return h.handle(ctx, req, nil)
	})
	c := httpClient(t)
	for _, tc := range []struct {
		name string
		body io.Reader
	}{
		{"declared length", strings.NewReader(strings.Repeat("x", 2000))},
		{"unknown length, streamed", io.MultiReader(strings.NewReader(strings.Repeat("x", 2000)))},
	} {
		resp, err := c.Post(baseURL(r)+"/upload", "text/plain", tc.body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: status %d", tc.name, resp.StatusCode)
		}
		if text := errorText(t, resp); !strings.Contains(text, "over 1000 bytes") {
			t.Fatalf("%s: error %q", tc.name, text)
		}
	}
	s.expectCancel(h.next(t).MessageID)
}

func TestStreamCutOffMidBodyAbortsThePublicConnection(t *testing.T) {
	r := startRelay(t, nil)
	started := make(chan struct{})
	s := connect(t, r, defaultKey, "", func(ctx context.Context, _ *wire.Frame, _ io.Reader) reply {
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write([]byte("first part"))
			close(started)
			<-ctx.Done()
			pw.CloseWithError(ctx.Err())
		}()
		return reply{Status: http.StatusOK, Stream: pr}
	})
	resp, err := httpClient(t).Get(baseURL(r) + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, len("first part"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first part" {
		t.Fatalf("first part: %q, %v", buf, err)
	}
	<-started
	_ = s.conn.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("the public response ended cleanly; want it cut off")
	}
}

// A public client that does not read holds back its own stream only: the
// tunnel keeps answering heartbeats and other requests, and when the client
// leaves, the supervisor is told to cancel.
func TestSlowPublicClientSlowsOnlyItsOwnStream(t *testing.T) {
	r := startRelay(t, nil)
	streamID := make(chan string, 1)
	s := connect(t, r, defaultKey, "", func(ctx context.Context, req *wire.Frame, body io.Reader) reply {
		if req.Path != "/endless" {
			return echo(ctx, req, body)
		}
		streamID <- req.MessageID
		return reply{Status: http.StatusOK, Stream: io.LimitReader(zeros{}, 1<<30)}
	})
	slow, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(slow, "GET /endless HTTP/1.1\r\nHost: relay\r\n\r\n")
	// Read the status line only, then stop reading.
	if line, err := bufio.NewReader(slow).ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	id := <-streamID

	for i := range 3 {
		s.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: fmt.Sprint("hb", i)})
		s.expect(wire.TypeHeartbeatAck)
		resp, err := httpClient(t).Get(baseURL(r) + "/other")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("other request: status %d", resp.StatusCode)
		}
	}
	_ = slow.Close()
	s.expectCancel(id)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestDuplicateResponseIsAnError(t *testing.T) {
	r := startRelay(t, nil)
	s := connect(t, r, defaultKey, "", nil)
	ch := get(t, context.Background(), baseURL(r)+"/manual")
	req := s.expect(wire.TypeRequest)
	s.send(&wire.Frame{Type: wire.TypeResponse, MessageID: req.MessageID, Status: 200, Stream: true})
	s.send(&wire.Frame{Type: wire.TypeResponse, MessageID: req.MessageID, Status: 500})
	if f := s.expect(wire.TypeError); f.MessageID != req.MessageID || !strings.Contains(f.Error, "duplicate") {
		t.Fatalf("error frame %+v", f)
	}
	s.sendChunk(req.MessageID, []byte("body"))
	s.send(&wire.Frame{Type: wire.TypeStreamEnd, MessageID: req.MessageID})
	resp := response(t, ch)
	defer resp.Body.Close()
	if got, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(got) != "body" {
		t.Fatalf("status %d body %q", resp.StatusCode, got)
	}
}

func TestSupervisorErrorBeforeTheResponseIs502(t *testing.T) {
	r := startRelay(t, nil)
	s := connect(t, r, defaultKey, "", nil)
	ch := get(t, context.Background(), baseURL(r)+"/manual")
	req := s.expect(wire.TypeRequest)
	s.send(&wire.Frame{Type: wire.TypeError, MessageID: req.MessageID, Error: "upstream refused"})
	resp := response(t, ch)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if text := errorText(t, resp); !strings.Contains(text, "upstream refused") {
		t.Fatalf("error %q", text)
	}
}

func TestOversizedHeaderIs431(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.MaxHeaderBytes = 1024 })
	connect(t, r, defaultKey, "", echo)
	req, _ := http.NewRequest(http.MethodGet, baseURL(r)+"/x", nil)
	req.Header.Set("X-Big", strings.Repeat("h", 16<<10))
	resp, err := httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// Close lets a request in progress finish before it closes the tunnels.
func TestCloseIsGraceful(t *testing.T) {
	r := startRelay(t, nil)
	h := newHeld()
	connect(t, r, defaultKey, "", h.handle)
	ch := get(t, context.Background(), baseURL(r)+"/in-flight")
	h.next(t)
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		closed <- r.Close(ctx)
	}()
	close(h.release)
	resp := response(t, ch)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "late" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// A request waiting for a session when the relay closes is answered 503
// at once: the hold timeout is an hour, the close bound far shorter.
func TestCloseAnswersTheHeldRequests(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.HoldTimeout = time.Hour })
	ch := get(t, context.Background(), baseURL(r)+"/t/a/held")
	c := httpClient(t)
	deadline := time.Now().Add(wait)
	for !strings.Contains(metricsText(t, c, r), `tunnel_relay_held_requests{tunnel="a"} 1`) {
		if time.Now().After(deadline) {
			t.Fatal("the request was never held")
		}
		runtime.Gosched()
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	resp := response(t, ch)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if text := errorText(t, resp); text != "relay shutting down" {
		t.Fatalf("error %q", text)
	}
}

func metricsText(t *testing.T, c *http.Client, r *relay.Relay) string {
	t.Helper()
	resp, err := c.Get(adminURL(r) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return string(text)
}
