package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/messages"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sent is one message the fake sender has finished writing.
type sent struct {
	msg  *messages.TunnelMessage
	body []byte // Body, or everything read from BodyStream
	err  error
}

// fakeSender stands in for the tunnel: it reads a streamed body the way the
// tunnel does, one Read per chunk, and reports each chunk as it is read.
type fakeSender struct {
	started chan *messages.TunnelMessage // each message as Send is called
	chunks  chan []byte                  // each read of a streamed body
	sent    chan sent                    // each message once fully written
}

func newFakeSender() *fakeSender {
	return &fakeSender{
		started: make(chan *messages.TunnelMessage, 16),
		chunks:  make(chan []byte, 64),
		sent:    make(chan sent, 16),
	}
}

func (s *fakeSender) Send(_ context.Context, msg *messages.TunnelMessage) error {
	s.started <- msg
	if msg.BodyStream == nil {
		s.sent <- sent{msg: msg, body: msg.Body}
		return nil
	}
	var all []byte
	buf := make([]byte, 256<<10)
	for {
		n, err := msg.BodyStream.Read(buf)
		if n > 0 {
			s.chunks <- bytes.Clone(buf[:n])
			all = append(all, buf[:n]...)
		}
		if err == io.EOF {
			s.sent <- sent{msg: msg, body: all}
			return nil
		}
		if err != nil {
			s.sent <- sent{msg: msg, body: all, err: err}
			return err
		}
	}
}

// observer records every Result.
type observer struct {
	mu      sync.Mutex
	results []Result
}

func (o *observer) Forwarded(r Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.results = append(o.results, r)
}

func (o *observer) only(t *testing.T) Result {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.results) != 1 {
		t.Fatalf("observer saw %d results, want 1: %+v", len(o.results), o.results)
	}
	return o.results[0]
}

func newForwarder(t *testing.T, upstream string) (*Forwarder, *observer) {
	t.Helper()
	obs := &observer{}
	f, err := New(Config{Upstream: upstream, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f, obs
}

func upstream(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// handle runs Handle in its own goroutine, as the tunnel does, and returns
// a channel closed when it returns.
func handle(ctx context.Context, f *Forwarder, s Sender, msg *messages.TunnelMessage) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Handle(ctx, s, msg)
	}()
	return done
}

func errorBody(t *testing.T, b []byte) string {
	t.Helper()
	var v struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("error body %q is not JSON: %v", b, err)
	}
	return v.Error
}

// seen is what the upstream received.
type seen struct {
	method, uri string
	header      http.Header
	body        []byte
	length      int64
	chunked     bool
}

func TestForwardsRequestAndResponse(t *testing.T) {
	const reqBody = `{"text":"hello","voice":"a"}`
	tests := []struct {
		name     string
		base     string // path prefix of the upstream URL
		path     string
		body     []byte
		stream   bool
		length   string // Content-Length header sent along a streamed body
		wantURI  string
		wantLen  int64
		chunked  bool
		respBody string
	}{
		{name: "inline body", path: "/v1/tts?x=1&y=%20z", body: []byte(reqBody),
			wantURI: "/v1/tts?x=1&y=%20z", wantLen: int64(len(reqBody)), respBody: "small answer"},
		{name: "streamed body with length", path: "/v1/tts", stream: true, length: "28",
			wantURI: "/v1/tts", wantLen: 28, respBody: strings.Repeat("a", 100<<10)},
		{name: "streamed body of unknown length", path: "/v1/tts", stream: true,
			wantURI: "/v1/tts", wantLen: -1, chunked: true, respBody: "x"},
		{name: "base URL with a path", base: "/api/", path: "/v1/tts?q", body: []byte(reqBody),
			wantURI: "/api/v1/tts?q", wantLen: int64(len(reqBody)), respBody: ""},
		{name: "no body", path: "", wantURI: "/", wantLen: 0, respBody: "root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan seen, 1)
			srv := upstream(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- seen{r.Method, r.RequestURI, r.Header.Clone(), b, r.ContentLength, len(r.TransferEncoding) > 0}
				w.Header().Set("X-Reply", "yes")
				w.Header().Set("Keep-Alive", "timeout=5")
				w.Header().Set("Proxy-Authenticate", "Basic")
				w.WriteHeader(http.StatusCreated)
				io.WriteString(w, tc.respBody)
			})
			f, obs := newForwarder(t, srv.URL+tc.base)
			s := newFakeSender()
			headers := map[string][]string{
				"Content-Type":        {"application/json"},
				"x-custom":            {"one", "two"},
				"Connection":          {"keep-alive, X-Hop"},
				"X-Hop":               {"gone"},
				"Keep-Alive":          {"timeout=5"},
				"Proxy-Authorization": {"Basic secret"},
				"Te":                  {"trailers"},
				"Upgrade":             {"websocket"},
				"Transfer-Encoding":   {"chunked"},
				"Host":                {"public.example"},
			}
			if tc.length != "" {
				headers["Content-Length"] = []string{tc.length}
			}
			msg := &messages.TunnelMessage{Type: messages.TypeRequest, MessageID: "id-1", Method: http.MethodPost,
				Path: tc.path, Headers: headers, Body: tc.body}
			if tc.stream {
				msg.Body = nil
				msg.BodyStream = strings.NewReader(reqBody)
			}
			<-handle(context.Background(), f, s, msg)

			up := <-got
			wantBody := reqBody
			if tc.body == nil && !tc.stream {
				wantBody = ""
			}
			if up.method != http.MethodPost || up.uri != tc.wantURI || string(up.body) != wantBody {
				t.Errorf("upstream got %s %s body %q, want POST %s body %q", up.method, up.uri, up.body, tc.wantURI, wantBody)
			}
			if up.length != tc.wantLen || up.chunked != tc.chunked {
				t.Errorf("upstream got length %d chunked %v, want %d %v", up.length, up.chunked, tc.wantLen, tc.chunked)
			}
			if v := up.header.Values("X-Custom"); len(v) != 2 || v[0] != "one" || v[1] != "two" {
				t.Errorf("X-Custom = %q, want [one two]", v)
			}
			if v := up.header.Get("Content-Type"); v != "application/json" {
				t.Errorf("Content-Type = %q", v)
			}
			for _, h := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Authorization", "Te", "Upgrade"} {
				if v := up.header.Values(h); len(v) > 0 {
					t.Errorf("hop-by-hop header %s reached the upstream: %q", h, v)
				}
			}

			out := <-s.sent
			if out.err != nil || out.msg.Type != messages.TypeResponse || out.msg.MessageID != "id-1" || out.msg.Status != http.StatusCreated {
				t.Fatalf("response %+v, err %v", out.msg, out.err)
			}
			if string(out.body) != tc.respBody {
				t.Errorf("response body has %d bytes, want %d", len(out.body), len(tc.respBody))
			}
			h := http.Header(out.msg.Headers)
			if h.Get("X-Reply") != "yes" || h.Get("Keep-Alive") != "" || h.Get("Proxy-Authenticate") != "" {
				t.Errorf("response headers %v: want X-Reply kept, hop-by-hop dropped", h)
			}
			r := obs.only(t)
			if r.Status != http.StatusCreated || r.Err != nil ||
				r.BytesIn != int64(len(wantBody)) || r.BytesOut != int64(len(tc.respBody)) || r.Duration <= 0 {
				t.Errorf("result %+v", r)
			}
		})
	}
}

func TestSmallKnownLengthResponseIsInline(t *testing.T) {
	srv := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	})
	f, _ := newForwarder(t, srv.URL)
	s := newFakeSender()
	<-handle(context.Background(), f, s, &messages.TunnelMessage{Type: messages.TypeRequest, MessageID: "1", Method: "GET", Path: "/"})
	out := <-s.sent
	if out.msg.BodyStream != nil || string(out.msg.Body) != "hello" {
		t.Fatalf("want inline body %q, got Body %q, stream %v", "hello", out.msg.Body, out.msg.BodyStream != nil)
	}
}

func TestStreamsResponseAsItArrives(t *testing.T) {
	release := make(chan struct{})
	srv := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/wav")
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second")
	})
	f, obs := newForwarder(t, srv.URL)
	s := newFakeSender()
	done := handle(context.Background(), f, s, &messages.TunnelMessage{Type: messages.TypeRequest, MessageID: "1", Method: "POST", Path: "/v1/tts"})

	head := <-s.started
	if head.Status != http.StatusOK || head.BodyStream == nil || http.Header(head.Headers).Get("Content-Type") != "audio/wav" {
		t.Fatalf("want a streamed 200 audio/wav response, got %+v", head)
	}
	// The upstream is still blocked: the first chunk must come through now.
	if c := <-s.chunks; string(c) != "first" {
		t.Fatalf("first chunk %q, want %q", c, "first")
	}
	close(release)
	out := <-s.sent
	<-done
	if out.err != nil || string(out.body) != "firstsecond" {
		t.Fatalf("body %q err %v", out.body, out.err)
	}
	if r := obs.only(t); r.BytesOut != int64(len("firstsecond")) || r.Err != nil {
		t.Errorf("result %+v", r)
	}
}

func TestUpstreamFailureIs502(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	hangUp := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	shortBody := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "only a few bytes")
	})
	for _, tc := range []struct{ name, url string }{
		{"connection refused", closed.URL},
		{"connection closed before the headers", hangUp.URL},
		{"body shorter than its length", shortBody.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, obs := newForwarder(t, tc.url)
			s := newFakeSender()
			<-handle(context.Background(), f, s, &messages.TunnelMessage{Type: messages.TypeRequest, MessageID: "m", Method: "GET", Path: "/x?secret=1"})
			out := <-s.sent
			if out.msg.Status != http.StatusBadGateway || out.msg.MessageID != "m" ||
				http.Header(out.msg.Headers).Get("Content-Type") != "application/json" {
				t.Fatalf("want a 502 JSON response for m, got %+v", out.msg)
			}
			msg := errorBody(t, out.body)
			if !strings.HasPrefix(msg, "upstream: ") || strings.Contains(msg, "secret") {
				t.Errorf("error %q: want an upstream: prefix and no URL", msg)
			}
			if r := obs.only(t); r.Status != http.StatusBadGateway || r.Err == nil {
				t.Errorf("result %+v", r)
			}
		})
	}
}

func TestCancelCancelsTheUpstreamRequest(t *testing.T) {
	for _, midStream := range []bool{false, true} {
		name := map[bool]string{false: "before the headers", true: "mid-stream"}[midStream]
		t.Run(name, func(t *testing.T) {
			started := make(chan struct{})
			cancelled := make(chan struct{})
			srv := upstream(t, func(w http.ResponseWriter, r *http.Request) {
				if midStream {
					io.WriteString(w, "first")
					w.(http.Flusher).Flush()
				}
				close(started)
				<-r.Context().Done()
				close(cancelled)
			})
			f, obs := newForwarder(t, srv.URL)
			s := newFakeSender()
			ctx, cancel := context.WithCancel(context.Background())
			done := handle(ctx, f, s, &messages.TunnelMessage{Type: messages.TypeRequest, MessageID: "1", Method: "POST", Path: "/v1/tts"})
			<-started
			if midStream {
				<-s.chunks
			}
			cancel()
			<-cancelled
			<-done
			r := obs.only(t)
			if midStream {
				if out := <-s.sent; out.err == nil {
					t.Error("the stream ended without an error after the cancel")
				}
				if r.Status != http.StatusOK || r.Err == nil {
					t.Errorf("result %+v, want status 200 with an error", r)
				}
				return
			}
			if len(s.started) != 0 {
				t.Errorf("a response was sent after the cancel: %+v", <-s.started)
			}
			if r.Status != 0 || !errors.Is(r.Err, context.Canceled) {
				t.Errorf("result %+v, want status 0 and context.Canceled", r)
			}
		})
	}
}

func TestDrain(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	srv := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	f, _ := newForwarder(t, srv.URL)
	s := newFakeSender()
	first := handle(context.Background(), f, s, &messages.TunnelMessage{Type: messages.TypeRequest, MessageID: "1", Method: "GET", Path: "/"})
	<-started
	if n := f.InFlight(); n != 1 {
		t.Fatalf("InFlight = %d, want 1", n)
	}

	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Drain(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain with a request in flight and an ended context = %v, want context.Canceled", err)
	}

	<-handle(context.Background(), f, s, &messages.TunnelMessage{Type: messages.TypeRequest, MessageID: "2", Method: "GET", Path: "/"})
	out := <-s.sent
	if out.msg.MessageID != "2" || out.msg.Status != http.StatusServiceUnavailable || errorBody(t, out.body) != "draining" {
		t.Fatalf("a request while draining got %+v %q, want 503 draining", out.msg, out.body)
	}

	drained := make(chan error, 1)
	go func() { drained <- f.Drain(context.Background()) }()
	close(release)
	if err := <-drained; err != nil {
		t.Fatalf("Drain = %v", err)
	}
	<-first
	if out := <-s.sent; out.msg.MessageID != "1" || string(out.body) != "done" {
		t.Fatalf("the in-flight request got %+v %q", out.msg, out.body)
	}
	if n := f.InFlight(); n != 0 {
		t.Errorf("InFlight = %d after Drain, want 0", n)
	}
	if err := f.Drain(context.Background()); err != nil {
		t.Errorf("a second Drain = %v", err)
	}
}

func TestDrainWithNothingInFlightReturnsAtOnce(t *testing.T) {
	f, _ := newForwarder(t, "http://127.0.0.1:1")
	if err := f.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBadRequests(t *testing.T) {
	srv := upstream(t, func(w http.ResponseWriter, r *http.Request) { t.Errorf("upstream reached with %s", r.RequestURI) })
	for _, tc := range []struct{ name, method, path string }{
		{"path without a leading slash", "GET", "@evil.example/"},
		{"invalid method", "GE T", "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newForwarder(t, srv.URL)
			s := newFakeSender()
			<-handle(context.Background(), f, s, &messages.TunnelMessage{Type: messages.TypeRequest, MessageID: "1", Method: tc.method, Path: tc.path})
			if out := <-s.sent; out.msg.Status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", out.msg.Status)
			}
		})
	}
}

func TestIgnoresMessagesThatAreNotRequests(t *testing.T) {
	f, obs := newForwarder(t, "http://127.0.0.1:1")
	s := newFakeSender()
	<-handle(context.Background(), f, s, &messages.TunnelMessage{Type: messages.TypeResponse, MessageID: "1", Status: 200})
	if len(s.started) != 0 || len(obs.results) != 0 {
		t.Fatal("a response was handled as a request")
	}
}

func TestNewChecksTheUpstream(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8000", true},
		{"https://tts.local/api/", true},
		{"", false},
		{"ws://127.0.0.1:8000", false},
		{"http://", false},
		{"http://127.0.0.1:8000/?x=1", false},
		{"http://[::1", false},
	} {
		f, err := New(Config{Upstream: tc.url})
		if (err == nil) != tc.ok {
			t.Errorf("New(%q) error = %v, want ok %v", tc.url, err, tc.ok)
		}
		if f != nil {
			f.Close()
		}
	}
}
