package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// copyBuffer is the most of a streamed response body taken out of its
// buffer for one write to the public client. Bytes taken out no longer
// count against -max-buffered, so a client that stops reading holds at
// most this much outside the budget.
const copyBuffer = 32 << 10

// route picks the tunnel of a public request and the path (with its query)
// the supervisor sees, by path alone: routeHost without host routing.
func route(req *http.Request) (tunnel, path string, ok bool) { return routeHost(req, hostRoutes{}) }

// routeHost picks the tunnel of a public request and the path (with its
// query) the supervisor sees, in this order: a Host NAME.{domain} goes to
// tunnel NAME with its path as it is (see hostRoutes); else /t/{name}/rest
// goes to tunnel name as /rest; anything else to the default tunnel
// unchanged. The path is normalised first (see normalPath), so that no dot
// segment reaches a tunnel or its upstream. An empty path (an
// absolute-form target with none) is "/", as RFC 9110 section 4.2.3 says.
// ok is false for a request target that is not a path.
func routeHost(req *http.Request, hosts hostRoutes) (tunnel, path string, ok bool) {
	escaped := req.URL.EscapedPath()
	if escaped == "" && req.URL.Opaque == "" && req.URL.Host != "" {
		escaped = "/"
	}
	path, ok = normalPath(escaped)
	if !ok {
		return "", "", false
	}
	tunnel = wire.DefaultTunnel
	if name, found := hosts.tunnel(req.Host); found {
		tunnel = name
	} else if rest, found := strings.CutPrefix(path, "/t/"); found {
		if name, tail, _ := strings.Cut(rest, "/"); name != "" {
			tunnel, path = name, "/"+tail
		}
	}
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	return tunnel, path, true
}

// normalPath normalises an escaped path as RFC 3986 section 6.2.2 says:
// percent-encoded unreserved characters are decoded (%2E is a dot, %41 an
// A), then dot segments are removed (section 5.2.4), so that
// /t/b/../../admin is /admin and /a/%2e%2e/b is /b. Other escapes, %2F among
// them, stay as they are, and so do repeated slashes. ok is false unless
// the path starts with a slash (an asterisk, say) and every '%' starts an
// escape: decoding around a stray one could make a new escape ("%%32%65"
// would become "%2e"), which the upstream would decode once more.
func normalPath(escaped string) (string, bool) {
	if !strings.HasPrefix(escaped, "/") || !validEscapes(escaped) {
		return "", false
	}
	if !strings.Contains(escaped, "%") && !strings.Contains(escaped, "/.") {
		return escaped, true // nothing to decode, no dot segment: most paths
	}
	segments := strings.Split(decodeUnreserved(escaped)[1:], "/")
	out := make([]string, 0, len(segments))
	for i, seg := range segments {
		last := i == len(segments)-1
		switch seg {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
			continue
		}
		if last {
			out = append(out, "") // "/a/b/.." is "/a/": a directory
		}
	}
	return "/" + strings.Join(out, "/"), true
}

// decodeUnreserved decodes the escapes of unreserved characters (letters,
// digits, '-', '.', '_', '~') and leaves every other byte as it is.
func decodeUnreserved(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil && unreserved(byte(c)) {
				b.WriteByte(byte(c))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// validEscapes reports whether every '%' in s is followed by two hex digits.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		i += 2
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// hopByHop are the headers that describe one connection, not the message,
// and so are not forwarded.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// endToEnd returns a copy of h without its hop-by-hop headers, including
// those the Connection header names.
func endToEnd(h map[string][]string) http.Header {
	out := http.Header(h).Clone()
	if out == nil {
		out = http.Header{}
	}
	for _, v := range out.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			out.Del(textproto.TrimString(name))
		}
	}
	for _, name := range hopByHop {
		out.Del(name)
	}
	return out
}

// publicBody is a public request body that remembers its read error, to
// tell a failing client (or a body over the limit) from a failing tunnel,
// and whether it has been read to the end. Each read must bring something
// within the body timeout: the connection's read deadline is pushed that
// far before every read, and cleared at the end of the body.
type publicBody struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
	eof     atomic.Bool

	mu  sync.Mutex
	err error // the read error, once one came
	cut bool  // cutOff was called: the deadline stays in the past
}

func (b *publicBody) Read(p []byte) (int, error) {
	b.arm()
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.eof.Store(true)
		// net/http goes on reading in the background, to notice the client
		// leaving; a deadline left behind would take it for gone.
		b.deadline(time.Time{})
	case err != nil:
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

// failure is the error a read of the body got, if any.
func (b *publicBody) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *publicBody) arm() { b.deadline(time.Now().Add(b.timeout)) }

func (b *publicBody) deadline(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.cut {
		_ = b.rc.SetReadDeadline(t)
	}
}

// cutOff makes a read in progress, and every later one, fail at once.
func (b *publicBody) cutOff() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cut = true
	_ = b.rc.SetReadDeadline(time.Now())
}

// bodyError answers a request whose body could not be read.
func bodyError(err error, limit int64, timeout time.Duration) (int, string) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, fmt.Sprintf("no request body data for %v", timeout)
	}
	return http.StatusBadRequest, "reading the request body: " + err.Error()
}

// proxyCall is one public request on its way through a tunnel, on the
// handler's goroutine.
type proxyCall struct {
	r      *Relay
	w      http.ResponseWriter
	req    *http.Request
	rc     *http.ResponseController
	tunnel string
	id     string
	status int         // what the client was answered, for the metrics
	done   bool        // the router was told Done
	duplex bool        // the response may start before the request body is read
	cut    atomic.Bool // the buffer budget gave the response up (see stream)

	body     *publicBody
	uploaded chan error // the upload's result while it runs
	stopUp   context.CancelFunc
}

func (r *Relay) serveProxy(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	var counted *countingWriter // set when this request goes to the access log
	if r.accessLog.sample() {
		counted = &countingWriter{ResponseWriter: w}
		w = counted
	}
	tunnel, path, ok := routeHost(req, r.currentHosts())
	p := &proxyCall{r: r, w: w, req: req, rc: http.NewResponseController(w), tunnel: tunnel}
	defer func() {
		took := time.Since(start)
		r.metrics.observe(tunnel, p.status, took)
		if counted != nil {
			r.logAccess(p, counted.n.Load(), took)
		}
	}()
	switch {
	case !ok:
		p.fail(http.StatusBadRequest, "the request target must be a path")
	case !r.slots.tunnels.has(tunnel):
		// Told apart from a tunnel that is down, which is held for a
		// while: a client that mistyped a name learns it at once.
		p.fail(http.StatusNotFound, unknownTunnel(tunnel))
	case !p.admitted():
		// Refused by the tunnel's access rules (401, 403, 429; see access.go).
	case !r.slots.take(tunnel):
		p.fail(http.StatusServiceUnavailable, r.slots.refusal(tunnel))
	default:
		defer r.slots.give(tunnel)
		if r.fleet != nil && hopProto(req) != "" && r.fleet.fleet.Local(tunnel) == 0 {
			p.noSession()
			return
		}
		p.run(path)
	}
}

// slots counts the public requests each tunnel has in flight, from their
// arrival (before their body is read), through any wait for a session, to
// the end of their response.
type slots struct {
	limit    int
	tunnels  *tunnelSet // the tunnels there are: no other name takes a slot
	inFlight *prometheus.GaugeVec
	mu       sync.Mutex
	taken    map[string]int
}

// take takes a slot of tunnel, if it is a tunnel and has one free.
func (s *slots) take(tunnel string) bool {
	if !s.tunnels.has(tunnel) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taken[tunnel] >= s.limit {
		return false
	}
	if s.taken == nil {
		s.taken = make(map[string]int)
	}
	s.taken[tunnel]++
	s.inFlight.WithLabelValues(tunnel).Inc()
	return true
}

// refusal says why take refused a tunnel: it has too many requests in
// flight.
func (s *slots) refusal(tunnel string) string {
	return fmt.Sprintf("tunnel %q has too many requests in flight (%d)", tunnel, s.limit)
}

// unknownTunnel answers a request for a name no key opens: quoted and cut
// short, since anyone may send any name.
func unknownTunnel(name string) string {
	return fmt.Sprintf("unknown tunnel %q", wire.Excerpt(name))
}

func (s *slots) give(tunnel string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taken[tunnel]--; s.taken[tunnel] == 0 {
		delete(s.taken, tunnel)
	}
	s.inFlight.WithLabelValues(tunnel).Dec()
}

func (p *proxyCall) fail(status int, text string) {
	p.status = status
	p.closeIfUnread()
	if status == http.StatusRequestTimeout {
		p.w.Header().Set("Connection", "close")
	}
	p.armWrite()
	writeError(p.w, status, text)
}

// armWrite gives the next write to the client the send timeout. It is
// called before every write, so the last deadline also bounds the flush
// net/http makes once the handler returns.
func (p *proxyCall) armWrite() {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.r.cfg.SendTimeout))
	if p.cut.Load() {
		// Cut meanwhile (see stream): its deadline of now must stand.
		_ = p.rc.SetWriteDeadline(time.Now())
	}
}

// closeIfUnread tells the client not to reuse the connection when the
// answer goes out before the request body was read to the end. In full
// duplex net/http does not drain what is left, and closes the connection
// after the answer: a client told nothing would send its next request on a
// closed connection, and a POST is not retried.
func (p *proxyCall) closeIfUnread() {
	if p.duplex && !p.body.eof.Load() {
		p.w.Header().Set("Connection", "close")
	}
}

// tellDone tells the router, once, that the front is finished with the
// exchange; cancel asks for a cancel frame to the supervisor.
func (p *proxyCall) tellDone(cancel bool) {
	if !p.done && p.id != "" {
		p.done = true
		p.r.system.Root.Send(p.r.router, &relaymsg.Done{MessageID: p.id, Cancel: cancel})
	}
}

func (p *proxyCall) run(path string) {
	if proto := upgradeOf(p.req); proto != "" {
		p.runUpgrade(path, proto)
		return
	}
	cfg := p.r.cfg
	if p.req.ContentLength > cfg.MaxBody {
		p.fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", cfg.MaxBody))
		return
	}
	p.body = &publicBody{r: http.MaxBytesReader(p.w, p.req.Body, cfg.MaxBody), rc: p.rc, timeout: cfg.BodyTimeout}
	inline, stream, err := p.readStart()
	if err != nil {
		p.fail(bodyError(err, cfg.MaxBody, cfg.BodyTimeout))
		return
	}
	if p.r.fleet != nil && hopProto(p.req) == "" && p.r.hop(p, inline, stream) {
		return
	}
	p.id = uuid.NewString()
	frame := &wire.Frame{Type: wire.TypeRequest, MessageID: p.id, Method: p.req.Method, Path: path, Headers: p.requestHeaders()}
	var window *wire.SendWindow
	if stream != nil {
		frame.Stream = true
		window = wire.NewSendWindow(cfg.Window)
		// The response may start before the upload ends (an upstream that
		// answers early, or echoes as it reads).
		p.duplex = p.rc.EnableFullDuplex() == nil
	} else {
		frame.Body = inline
	}
	ex := relaymsg.NewExchange(p.tunnel, frame, window)
	p.r.system.Root.Send(p.r.router, &relaymsg.Forward{Exchange: ex})
	defer p.finish()
	out, ok := p.await(ex, stream)
	if ok {
		p.respond(out)
	}
}

// readStart reads an inline body, or returns the reader of a body to stream:
// one over the inline limit, or of unknown length with more than that.
func (p *proxyCall) readStart() (inline []byte, stream io.Reader, err error) {
	limit := p.r.cfg.InlineLimit
	switch n := p.req.ContentLength; {
	case n == 0:
		return nil, nil, nil
	case n > 0 && n <= int64(limit):
		inline = make([]byte, n)
		_, err = io.ReadFull(p.body, inline)
		return inline, nil, err
	case n > 0:
		return nil, p.body, nil
	}
	buf := make([]byte, limit+1)
	n, err := io.ReadFull(p.body, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return buf[:n], nil, nil
	case err != nil:
		return nil, nil, err
	}
	return nil, io.MultiReader(bytes.NewReader(buf[:n]), p.body), nil
}

// requestHeaders are the headers the supervisor gets: the client's, less
// the hop-by-hop ones, with the forwarding headers written by the relay
// from what it saw. A client's own X-Forwarded-*, Forwarded and X-Real-IP
// are dropped, since anyone can send them, unless the peer is a trusted
// proxy, whose headers are kept and extended.
func (p *proxyCall) requestHeaders() map[string][]string {
	h := endToEnd(p.req.Header)
	client, viaProxy := p.r.proxies.client(p.req)
	peer := peerAddr(p.req)
	proto := "http"
	if p.req.TLS != nil || hopProto(p.req) == "https" {
		proto = "https"
	}
	hop := fmt.Sprintf("for=%s;host=%s;proto=%s", forwardedNode(peer), quote(p.req.Host), proto)
	if viaProxy {
		chain := append(forwardedFor(h), peer.String())
		for i := range chain {
			chain[i] = strings.TrimSpace(chain[i])
		}
		h.Set("X-Forwarded-For", strings.Join(chain, ", "))
		setIfAbsent(h, "X-Forwarded-Host", p.req.Host)
		setIfAbsent(h, "X-Forwarded-Proto", proto)
		if prior := h.Values("Forwarded"); len(prior) > 0 {
			hop = strings.Join(prior, ", ") + ", " + hop
		}
	} else {
		// Any X-Forwarded-* (-Port, -Prefix, -Ssl...) a client sends is
		// its own say, which frameworks would take for a proxy's.
		for name := range h {
			if strings.HasPrefix(name, "X-Forwarded-") {
				delete(h, name)
			}
		}
		h.Set("X-Forwarded-For", addrText(client, p.req.RemoteAddr))
		h.Set("X-Forwarded-Host", p.req.Host)
		h.Set("X-Forwarded-Proto", proto)
	}
	h.Set("Forwarded", hop)
	h.Set("X-Real-IP", addrText(client, p.req.RemoteAddr))
	return h
}

func setIfAbsent(h http.Header, name, value string) {
	if h.Get(name) == "" {
		h.Set(name, value)
	}
}

// addrText is addr as text, or remote when addr is not an IP address.
func addrText(addr netip.Addr, remote string) string {
	if !addr.IsValid() {
		return remote
	}
	return addr.String()
}

// forwardedNode is addr as a node of a Forwarded header (RFC 7239): an IPv6
// address in brackets, quoted; "unknown" when addr is not an IP address.
func forwardedNode(addr netip.Addr) string {
	switch {
	case !addr.IsValid():
		return "unknown"
	case addr.Is6():
		return `"[` + addr.String() + `]"`
	}
	return addr.String()
}

// quoting escapes what an HTTP quoted-string cannot hold as it is; made
// once, since a Replacer builds its tables on first use.
var quoting = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// quote is s as an HTTP quoted-string.
func quote(s string) string { return `"` + quoting.Replace(s) + `"` }

// await waits for the exchange's outcome while uploading the body, if it
// streams. ok is false when the client has been answered (or is gone).
func (p *proxyCall) await(ex *relaymsg.Exchange, stream io.Reader) (out relaymsg.Outcome, ok bool) {
	for {
		select {
		case write := <-ex.Accepted:
			p.upload(ex, stream, write)
		case err := <-p.uploaded:
			p.uploaded = nil
			if body := p.body.failure(); err != nil && body != nil {
				p.tellDone(true)
				p.fail(bodyError(body, p.r.cfg.MaxBody, p.r.cfg.BodyTimeout))
				return out, false
			}
			// Any other upload failure means the tunnel or the exchange
			// ended: the outcome will say which.
		case out = <-ex.Outcome:
			return out, true
		case <-p.req.Context().Done():
			p.tellDone(true)
			// net/http ends the request's context when a read of its body
			// fails, a timeout included, before the read returns: once the
			// upload has ended (its read fails, its context is this one),
			// a timed-out client is still there, and is told why.
			if p.uploaded != nil {
				<-p.uploaded
				p.uploaded = nil
			}
			if body := p.body.failure(); errors.Is(body, os.ErrDeadlineExceeded) {
				p.fail(bodyError(body, p.r.cfg.MaxBody, p.r.cfg.BodyTimeout))
				return out, false
			}
			p.status = clientGone
			return out, false
		case <-p.r.closing:
			p.tellDone(true)
			p.fail(http.StatusServiceUnavailable, "relay shutting down")
			return out, false
		}
	}
}

func (p *proxyCall) upload(ex *relaymsg.Exchange, body io.Reader, write relaymsg.WriteFunc) {
	ctx, cancel := context.WithCancel(p.req.Context())
	p.stopUp = cancel
	p.uploaded = make(chan error, 1)
	done := p.uploaded
	go func() {
		_, err := wire.SendStream(ctx, p.id, body, ex.Upload, p.r.cfg.ChunkSize, write)
		done <- err
	}()
}

// finish lets go of the exchange: the router hears Done (with a cancel if
// the upload is still running), and an upload still blocked reading the
// client is cut off and waited for, so nothing reads the body after the
// handler returns.
func (p *proxyCall) finish() {
	if p.uploaded != nil {
		select {
		case <-p.uploaded:
			p.uploaded = nil
		default:
		}
	}
	if p.uploaded == nil {
		p.tellDone(false)
		if p.stopUp != nil {
			p.stopUp()
		}
		return
	}
	p.tellDone(true)
	p.stopUp()
	// Only a read of the client's body can outlast stopUp. Once the body
	// is read to the end, net/http reads the connection in the background
	// to notice the client leaving, and a deadline would fail that read:
	// net/http would take the client for gone and cancel the context of
	// every later request on this keep-alive connection. (A body not read
	// to the end had its answer sent with Connection: close.)
	if !p.body.eof.Load() {
		p.body.cutOff()
	}
	<-p.uploaded
}

func (p *proxyCall) respond(out relaymsg.Outcome) {
	if out.Response == nil {
		p.fail(out.Status, out.Error)
		return
	}
	resp := out.Response
	if out.Body != nil {
		defer out.Body.Close()
		// A client that leaves while the handler waits for chunks must
		// wake it.
		stop := context.AfterFunc(p.req.Context(), func() { _ = out.Body.Close() })
		defer stop()
	}
	if resp.Status < 200 || resp.Status > 999 {
		p.tellDone(true)
		p.fail(http.StatusBadGateway, fmt.Sprintf("tunnel answered with invalid status %d", resp.Status))
		return
	}
	h := p.w.Header()
	for name, values := range endToEnd(resp.Headers) {
		h[name] = values
	}
	p.closeIfUnread()
	p.status = resp.Status
	p.armWrite()
	if out.Body == nil {
		if len(resp.Body) > 0 {
			h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
		}
		p.w.WriteHeader(resp.Status)
		if _, err := p.w.Write(resp.Body); err != nil {
			p.tellDone(true)
		}
		return
	}
	p.w.WriteHeader(resp.Status)
	_ = p.rc.Flush()
	p.stream(out.Body)
}

// stream copies a streamed response body to the client, in pieces of at
// most copyBuffer taken from the chunks without a copy, each written and
// flushed, at the client's pace: the body's window fills up and the
// supervisor waits, for this stream only. A client that takes nothing for
// the send timeout is cut off, and the supervisor told to cancel. So is
// one whose stream the buffer budget gives up (-max-buffered) at once, even
// while a write to it is blocked: its place and its upstream request are
// freed then, not a send timeout later.
func (p *proxyCall) stream(body *wire.StreamReader) {
	// Guarded so that a late abort cannot touch the connection once this
	// response is done with it: a kept-alive connection serves another.
	var mu sync.Mutex
	live := true
	defer func() {
		mu.Lock()
		live = false
		mu.Unlock()
	}()
	body.OnAbort(func(error) {
		mu.Lock()
		defer mu.Unlock()
		if live {
			p.cut.Store(true)
			_ = p.rc.SetWriteDeadline(time.Now())
		}
	})
	for {
		chunk, err := body.Next(copyBuffer)
		if len(chunk) > 0 {
			p.armWrite()
			_, werr := p.w.Write(chunk)
			if werr == nil {
				werr = p.rc.Flush()
			}
			if werr != nil {
				p.tellDone(true)
				if p.cut.Load() {
					p.r.log.WithFields(logrus.Fields{"tunnel": p.tunnel, "message_id": p.id}).
						Warn("Response buffer budget ran out and this public client lagged the most; cutting it off")
					return
				}
				if errors.Is(werr, os.ErrDeadlineExceeded) {
					p.r.log.WithFields(logrus.Fields{"tunnel": p.tunnel, "message_id": p.id, "delay": p.r.cfg.SendTimeout.String()}).
						Warn("Public client took nothing of its response for the send timeout; cutting it off")
				}
				return
			}
		}
		switch {
		case err == io.EOF:
			p.trailers(body.Trailers())
			return
		case err != nil && p.req.Context().Err() != nil:
			p.tellDone(true)
			return
		case err != nil:
			p.r.log.WithFields(logrus.Fields{"tunnel": p.tunnel, "message_id": p.id, "error": err}).
				Warn("Response stream broke off; aborting the public connection")
			p.tellDone(true)
			// The status line is out: the only honest signal left is to
			// cut the connection, so the client sees a truncated response.
			panic(http.ErrAbortHandler)
		}
	}
}

// trailers sends a stream's trailers to the client after its body
// (net/http writes them when the handler returns): gRPC-style answers keep
// their grpc-status. Fields that must not be trailers (RFC 9110 6.5.1:
// framing, routing, authentication) are left out.
func (p *proxyCall) trailers(t map[string][]string) {
	if len(t) == 0 {
		return
	}
	h := p.w.Header()
	for name, values := range endToEnd(t) {
		switch http.CanonicalHeaderKey(name) {
		case "Content-Length", "Content-Type", "Content-Encoding", "Content-Range", "Host",
			"Authorization", "Set-Cookie", "Cache-Control", "Expires", "Date", "Location":
			continue
		}
		h[http.TrailerPrefix+name] = values
	}
}
