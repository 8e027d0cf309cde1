package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// copyBuffer is the size of the reads that copy a streamed response body to
// the public client, each followed by a flush.
const copyBuffer = 32 << 10

// route picks the tunnel of a public request and the path (with its query)
// the supervisor sees: /t/{name}/rest goes to tunnel name as /rest,
// anything else to the default tunnel unchanged.
func route(req *http.Request) (tunnel, path string) {
	tunnel, path = wire.DefaultTunnel, req.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(path, "/t/"); ok {
		if name, tail, _ := strings.Cut(rest, "/"); name != "" {
			tunnel, path = name, "/"+tail
		}
	}
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	return tunnel, path
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
// and whether it has been read to the end.
type publicBody struct {
	r   io.Reader
	err error
	eof atomic.Bool
}

func (b *publicBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.eof.Store(true)
	case err != nil:
		b.err = err
	}
	return n, err
}

// bodyError answers a request whose body could not be read.
func bodyError(err error, limit int64) (int, string) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", limit)
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
	status int  // what the client was answered, for the metrics
	done   bool // the router was told Done
	duplex bool // the response may start before the request body is read

	body     *publicBody
	uploaded chan error // the upload's result while it runs
	stopUp   context.CancelFunc
}

func (r *Relay) serveProxy(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	tunnel, path := route(req)
	p := &proxyCall{r: r, w: w, req: req, rc: http.NewResponseController(w), tunnel: tunnel}
	defer func() { r.metrics.observe(tunnel, p.status, time.Since(start)) }()
	p.run(path)
}

func (p *proxyCall) fail(status int, text string) {
	p.status = status
	p.closeIfUnread()
	writeError(p.w, status, text)
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
		p.r.system.Root.Send(p.r.root, &relaymsg.Done{MessageID: p.id, Cancel: cancel})
	}
}

func (p *proxyCall) run(path string) {
	cfg := p.r.cfg
	if p.req.ContentLength > cfg.MaxBody {
		p.fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", cfg.MaxBody))
		return
	}
	p.body = &publicBody{r: http.MaxBytesReader(p.w, p.req.Body, cfg.MaxBody)}
	inline, stream, err := p.readStart()
	if err != nil {
		p.fail(bodyError(err, cfg.MaxBody))
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
	p.r.system.Root.Send(p.r.root, &relaymsg.Forward{Exchange: ex})
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

func (p *proxyCall) requestHeaders() map[string][]string {
	h := endToEnd(p.req.Header)
	ip := clientIP(p.req)
	if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
		ip = strings.Join(prior, ", ") + ", " + ip
	}
	h.Set("X-Forwarded-For", ip)
	h.Set("X-Forwarded-Host", p.req.Host)
	proto := "http"
	if p.req.TLS != nil {
		proto = "https"
	}
	h.Set("X-Forwarded-Proto", proto)
	return h
}

// await waits for the exchange's outcome while uploading the body, if it
// streams. ok is false when the client has been answered (or is gone).
func (p *proxyCall) await(ex *relaymsg.Exchange, stream io.Reader) (out relaymsg.Outcome, ok bool) {
	for {
		select {
		case write := <-ex.Accepted:
			p.upload(ex, stream, write)
		case err := <-p.uploaded:
			p.uploaded = nil
			if err != nil && p.body.err != nil {
				p.tellDone(true)
				p.fail(bodyError(p.body.err, p.r.cfg.MaxBody))
				return out, false
			}
			// Any other upload failure means the tunnel or the exchange
			// ended: the outcome will say which.
		case out = <-ex.Outcome:
			return out, true
		case <-p.req.Context().Done():
			p.tellDone(true)
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
		_ = p.rc.SetReadDeadline(time.Now())
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

// stream copies a streamed response body to the client, flushing each
// piece, at the client's pace: the body's window fills up and the
// supervisor waits, for this stream only.
func (p *proxyCall) stream(body io.Reader) {
	buf := make([]byte, copyBuffer)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := p.w.Write(buf[:n]); werr != nil {
				p.tellDone(true)
				return
			}
			_ = p.rc.Flush()
		}
		switch {
		case err == io.EOF:
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
