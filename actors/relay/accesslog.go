package relay

// The access log: one line per public request (Config.AccessLog), written
// where the metrics observe the request (serveProxy).

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// accessLog decides which public requests are logged and writes their
// lines. A nil *accessLog logs nothing.
type accessLog struct {
	fraction float64
	// random draws in [0, 1); rand.Float64 but in tests.
	random func() float64
	log    *logrus.Entry
}

// newAccessLog logs fraction of the requests into l (with no rate limit:
// the relay's sampled logger would drop most lines of a busy relay); nil
// when fraction is 0.
func newAccessLog(fraction float64, l *logrus.Logger) *accessLog {
	if fraction <= 0 {
		return nil
	}
	return &accessLog{fraction: fraction, random: rand.Float64, log: sampled(l, 0).WithField("actor", "access")}
}

// ParseAccessLog reads the -access-log flag: "off" (or "", "0", "false"),
// "on" (or "1", "true"), or a fraction of the requests to log between 0
// and 1, such as "0.1".
func ParseAccessLog(s string) (float64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "off", "false", "no":
		return 0, nil
	case "on", "true", "yes":
		return 1, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(f >= 0 && f <= 1) {
		return 0, fmt.Errorf("want off, on or a fraction from 0 to 1, got %q", s)
	}
	return f, nil
}

// FormatAccessLog writes a fraction as ParseAccessLog reads it.
func FormatAccessLog(f float64) string {
	switch {
	case f <= 0:
		return "off"
	case f >= 1:
		return "on"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// sample decides whether one request is logged.
func (a *accessLog) sample() bool {
	switch {
	case a == nil:
		return false
	case a.fraction >= 1:
		return true
	}
	return a.random() < a.fraction
}

// accessEntry is what the line of one request says.
type accessEntry struct {
	tunnel, method, path, client, messageID string
	status                                  int
	bytes                                   int64
	took                                    time.Duration
}

// write logs e. The path has no query: a query may carry a token.
func (a *accessLog) write(e accessEntry) {
	fields := logrus.Fields{
		"tunnel":      e.tunnel,
		"method":      e.method,
		"path":        e.path,
		"status":      e.status,
		"bytes_out":   e.bytes,
		"duration_ms": float64(e.took.Microseconds()) / 1000,
		"remote_addr": e.client,
	}
	if e.messageID != "" {
		fields["message_id"] = e.messageID
	}
	a.log.WithFields(fields).Info("Public request")
}

// accessPath is the path of req as logged: escaped, without its query,
// cut to a length a log line can hold.
func accessPath(req *http.Request) string {
	p := req.URL.EscapedPath()
	if p == "" {
		p = "/"
	}
	const most = 512
	if len(p) > most {
		p = p[:most] + fmt.Sprintf("...(%d bytes)", len(p))
	}
	return p
}

// countingWriter counts the bytes of the response body written through it.
// It unwraps, so that http.ResponseController reaches the connection
// (deadlines, flushes, full duplex, the hijack of an upgrade).
type countingWriter struct {
	http.ResponseWriter
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// Flush lets callers that assert http.Flusher (httputil.ReverseProxy of a
// fleet hop) flush.
func (c *countingWriter) Flush() { _ = http.NewResponseController(c.ResponseWriter).Flush() }

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// logAccess writes the access line of p: the client address is the one
// the forwarding headers name (through -trusted-proxies), the tunnel name
// cut short (anyone may send any name).
func (r *Relay) logAccess(p *proxyCall, bytes int64, took time.Duration) {
	client, _ := r.proxies.client(p.req)
	r.accessLog.write(accessEntry{
		tunnel:    wire.Excerpt(p.tunnel),
		method:    wire.Excerpt(p.req.Method),
		path:      accessPath(p.req),
		client:    addrText(client, p.req.RemoteAddr),
		messageID: p.id,
		status:    p.status,
		bytes:     bytes,
		took:      took,
	})
}
