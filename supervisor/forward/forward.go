package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Sender writes a message to the relay and returns once it is written (for a
// BodyStream, once the whole body is). *supervisor.Tunnel is a Sender.
type Sender interface {
	Send(ctx context.Context, msg *messages.TunnelMessage) error
}

// Result is what one request came to, for metrics.
type Result struct {
	// Status is the status of the response sent, or being sent when Err
	// happened; 0 when none was sent because the request's context ended
	// first (the relay cancelled, or the tunnel went away).
	Status   int
	BytesIn  int64         // request body bytes passed to the upstream
	BytesOut int64         // response body bytes passed to the tunnel
	Duration time.Duration // from the request's arrival to the end of its response
	Err      error         // nil when the whole response was written to the tunnel
}

// Observer hears about every request handled, once it is done. It is called
// from the handler's goroutine and must not block for long.
type Observer interface {
	Forwarded(Result)
}

// Config configures a Forwarder.
type Config struct {
	// Upstream is the base URL requests are forwarded to, e.g.
	// http://127.0.0.1:8000; a request for /v1/tts?x=1 goes to
	// Upstream + "/v1/tts?x=1" (a path in Upstream is kept as a prefix).
	// With Routes it is the catch-all after them, and may be empty: then a
	// request that no route matches is answered 404.
	Upstream string
	// Routes are the ingress rules (see Rule), tried in order before
	// Upstream; each has a client of its own. Nil: every request goes to
	// Upstream.
	Routes []Rule
	// Client makes the upstream requests (with Routes, those of Upstream
	// only). Nil uses a client that ignores proxy environment variables,
	// asks for no compression (the relay's client negotiates its own), and
	// passes redirects through rather than following them.
	Client *http.Client
	// InlineLimit: a response whose length is known and at most this many
	// bytes is read whole and sent inline; any other is streamed. Zero means
	// wire.DefaultInlineLimit (64 KiB).
	InlineLimit int64
	Observer    Observer       // nil: none
	Logger      *logrus.Logger // nil discards logs
}

// Forwarder forwards the relay's requests to the upstream. It is safe for
// concurrent use; Handle is meant to run once per request, each in its own
// goroutine.
type Forwarder struct {
	base        string // Upstream without a trailing slash
	routes      *router
	client      *http.Client
	inlineLimit int64
	observer    Observer
	log         *logrus.Entry

	mu       sync.Mutex
	inFlight int
	draining bool
	drained  chan struct{} // closed when draining and nothing is in flight
}

// New checks cfg and returns a Forwarder.
func New(cfg Config) (*Forwarder, error) {
	f := &Forwarder{
		client:      cfg.Client,
		inlineLimit: cfg.InlineLimit,
		observer:    cfg.Observer,
		drained:     make(chan struct{}),
	}
	if cfg.Upstream != "" || len(cfg.Routes) == 0 {
		u, err := url.Parse(cfg.Upstream)
		switch {
		case err != nil:
			return nil, fmt.Errorf("forward: upstream URL: %w", err)
		case u.Scheme != "http" && u.Scheme != "https":
			return nil, fmt.Errorf("forward: upstream URL must be http:// or https://, got %q", u.Redacted())
		case u.Host == "":
			return nil, fmt.Errorf("forward: upstream URL %q has no host", u.Redacted())
		case u.RawQuery != "" || u.Fragment != "":
			return nil, fmt.Errorf("forward: upstream URL %q must not have a query or fragment", u.Redacted())
		}
		f.base = strings.TrimSuffix(u.String(), "/")
	}
	if f.client == nil {
		f.client = defaultClient()
	}
	if len(cfg.Routes) > 0 {
		var catchAll http.RoundTripper = clientTransport{f.client}
		if cfg.Client == nil {
			catchAll = f.client.Transport
		}
		r, err := newRouter(cfg.Routes, f.base, catchAll)
		if err != nil {
			return nil, err
		}
		f.routes, f.client = r, r.client()
	}
	if f.inlineLimit == 0 {
		f.inlineLimit = wire.DefaultInlineLimit
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	f.log = logger.WithField("component", "forward")
	return f, nil
}

func defaultClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The upstream is local: an HTTP_PROXY meant for the outside world must
	// not capture it.
	tr.Proxy = nil
	// Go would otherwise ask for gzip itself and hand back the body
	// decompressed, and the relay's client would get what it did not ask for.
	tr.DisableCompression = true
	tr.MaxIdleConnsPerHost = 32
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Handle forwards one request and sends its response with s. Messages other
// than requests are ignored. ctx is the request's lifetime (the tunnel's
// handler context): when it ends the upstream request is cancelled and
// nothing more is sent.
func (f *Forwarder) Handle(ctx context.Context, s Sender, msg *messages.TunnelMessage) {
	if msg.Type != messages.TypeRequest {
		f.log.WithFields(logrus.Fields{"type": msg.Type, "message_id": msg.MessageID}).Debug("Ignoring message that is not a request")
		return
	}
	start := time.Now()
	var r Result
	if f.begin() {
		defer f.end()
		r = f.forward(ctx, s, msg)
	} else {
		r = f.reject(ctx, s, msg.MessageID, http.StatusServiceUnavailable, "draining")
	}
	r.Duration = time.Since(start)
	if f.observer != nil {
		f.observer.Forwarded(r)
	}
	f.logResult(msg, r)
}

func (f *Forwarder) forward(ctx context.Context, s Sender, msg *messages.TunnelMessage) Result {
	var bytesIn atomic.Int64 // the transport may still be reading the body in its own goroutine
	req, err := f.upstreamRequest(ctx, msg, &bytesIn)
	if err != nil {
		return f.reject(ctx, s, msg.MessageID, http.StatusBadRequest, err.Error())
	}
	if msg.Upgrade != "" {
		asUpgrade(req, msg)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return Result{BytesIn: bytesIn.Load(), Err: ctx.Err()}
		}
		r := f.reject(ctx, s, msg.MessageID, http.StatusBadGateway, "upstream: "+describe(err))
		r.BytesIn = bytesIn.Load()
		return r
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols && msg.Upgrade != "" {
		return f.switched(ctx, s, msg, resp, &bytesIn)
	}

	out := &messages.TunnelMessage{
		Type:      messages.TypeResponse,
		MessageID: msg.MessageID,
		Status:    resp.StatusCode,
		Headers:   withoutHopByHop(resp.Header),
	}
	var bytesOut atomic.Int64
	body := &countingReader{r: resp.Body, n: &bytesOut}
	// Trailers come after the body, in the stream's end: a response that
	// announces them is streamed whatever its length.
	if len(resp.Trailer) > 0 {
		out.BodyStream = &trailered{countingReader: body, resp: resp}
	} else if resp.ContentLength >= 0 && resp.ContentLength <= f.inlineLimit {
		b, err := io.ReadAll(body)
		if err != nil {
			if ctx.Err() != nil {
				return Result{BytesIn: bytesIn.Load(), Err: ctx.Err()}
			}
			r := f.reject(ctx, s, msg.MessageID, http.StatusBadGateway, "upstream: reading the body: "+err.Error())
			r.BytesIn = bytesIn.Load()
			return r
		}
		out.Body = b
	} else {
		out.BodyStream = body
	}
	err = s.Send(ctx, out)
	return Result{Status: resp.StatusCode, BytesIn: bytesIn.Load(), BytesOut: bytesOut.Load(), Err: err}
}

// upstreamRequest builds the upstream request for msg; its errors are the
// request's fault (answered 400).
func (f *Forwarder) upstreamRequest(ctx context.Context, msg *messages.TunnelMessage, bytesIn *atomic.Int64) (*http.Request, error) {
	path := msg.Path
	if path == "" {
		path = "/"
	}
	// A path that does not start with a slash could change the upstream's
	// host once appended (e.g. "@evil.example/").
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("bad path %q: must start with /", path)
	}
	method := msg.Method
	if method == "" {
		method = http.MethodGet
	}
	target := f.base + path
	if f.routes != nil {
		// The route travels in the context to f.client's transport.
		ctx, target = f.routes.pick(ctx, msg.Headers, path)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, fmt.Errorf("bad request: %s", describe(err))
	}
	req.Header = withoutHopByHop(msg.Headers)
	req.Header.Del("Host")
	switch {
	case msg.BodyStream != nil:
		req.Body = io.NopCloser(&countingReader{r: msg.BodyStream, n: bytesIn})
		// With a declared length the upstream gets a Content-Length rather
		// than a chunked body, which some servers handle badly.
		req.ContentLength = -1
		if n, err := strconv.ParseInt(req.Header.Get("Content-Length"), 10, 64); err == nil && n > 0 {
			req.ContentLength = n
		}
	case len(msg.Body) > 0:
		req.Body = io.NopCloser(&countingReader{r: bytes.NewReader(msg.Body), n: bytesIn})
		req.ContentLength = int64(len(msg.Body))
	}
	return req, nil
}

// reject answers the request with status and a JSON error body, unless its
// context has ended (the relay wants nothing more for it).
func (f *Forwarder) reject(ctx context.Context, s Sender, id string, status int, reason string) Result {
	if ctx.Err() != nil {
		return Result{Err: ctx.Err()}
	}
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{reason})
	err := s.Send(ctx, &messages.TunnelMessage{
		Type:      messages.TypeResponse,
		MessageID: id,
		Status:    status,
		Headers:   map[string][]string{"Content-Type": {"application/json"}},
		Body:      body,
	})
	return Result{Status: status, BytesOut: int64(len(body)), Err: errors.Join(errors.New(reason), err)}
}

func (f *Forwarder) logResult(msg *messages.TunnelMessage, r Result) {
	failed := r.Status != 0 && r.Err != nil
	if !failed && !f.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		return // not even the fields are worth making
	}
	path, _, _ := strings.Cut(msg.Path, "?") // a query may carry tokens
	entry := f.log.WithFields(logrus.Fields{
		"message_id": msg.MessageID,
		"method":     msg.Method,
		"path":       path,
		"status":     r.Status,
		"bytes_in":   r.BytesIn,
		"bytes_out":  r.BytesOut,
		"duration":   r.Duration.Round(time.Microsecond).String(),
	})
	// One line per request is an access log: at debug, since at a few
	// thousand requests a second its formatting and writes would cost more
	// CPU than forwarding does. Failures stay visible.
	switch {
	case r.Status == 0:
		entry.WithError(r.Err).Debug("Request cancelled")
	case failed:
		entry.WithError(r.Err).Warn("Request failed")
	default:
		entry.Debug("Request forwarded")
	}
}

// describe drops the method and URL that net/http puts around a client
// error: the relay's client knows them, and they would only repeat the
// upstream's address.
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// Drain stops taking new requests (they are answered 503 from now on) and
// waits until none is in flight or ctx ends. It may be called again, for
// instance with a longer deadline.
func (f *Forwarder) Drain(ctx context.Context) error {
	f.mu.Lock()
	if !f.draining {
		f.draining = true
		if f.inFlight == 0 {
			close(f.drained)
		}
		f.log.WithField("in_flight", f.inFlight).Info("Draining: refusing new requests")
	}
	f.mu.Unlock()
	select {
	case <-f.drained:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("forward: %d requests still in flight: %w", f.InFlight(), ctx.Err())
	}
}

// InFlight is the number of requests being forwarded.
func (f *Forwarder) InFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight
}

// Close closes the idle connections to the upstream.
func (f *Forwarder) Close() {
	f.client.CloseIdleConnections()
}

func (f *Forwarder) begin() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.draining {
		return false
	}
	f.inFlight++
	return true
}

func (f *Forwarder) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inFlight--
	// Once draining, inFlight only goes down, so this closes at most once.
	if f.draining && f.inFlight == 0 {
		close(f.drained)
	}
}

// hopByHop are the headers that concern one connection only (RFC 9110
// section 7.6.1), never forwarded.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// withoutHopByHop copies h with canonical names, leaving out hop-by-hop
// headers and those the Connection header names. The copy shares h's value
// slices where a name occurs once: neither side changes them afterwards,
// and on every request this is the forwarder's largest cost of its own.
func withoutHopByHop(h map[string][]string) http.Header {
	out := make(http.Header, len(h))
	var connection []string
	for name, values := range h {
		key := textproto.CanonicalMIMEHeaderKey(name)
		if slices.Contains(hopByHop, key) {
			if key == "Connection" {
				connection = append(connection, values...)
			}
			continue
		}
		if prev, ok := out[key]; ok {
			out[key] = append(slices.Clip(prev), values...)
		} else {
			out[key] = values
		}
	}
	for _, v := range connection {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				out.Del(name)
			}
		}
	}
	return out
}

// countingReader counts the bytes read through it. It adds no buffering, so
// each read of the underlying body is passed on as soon as it returns.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// trailered is a response body that tells its trailers once read to its
// end (wire.Trailered): net/http fills resp.Trailer at the body's EOF.
type trailered struct {
	*countingReader
	resp *http.Response
}

func (t *trailered) Trailers() map[string][]string {
	if len(t.resp.Trailer) == 0 {
		return nil
	}
	return withoutHopByHop(t.resp.Trailer)
}
