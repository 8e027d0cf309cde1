package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// upgradeOf is the protocol a public request asks to switch to, when it is
// one the relay passes through (WebSocket), or "".
func upgradeOf(req *http.Request) string {
	if req.Method != http.MethodGet || !headerHasToken(req.Header, "Connection", "upgrade") {
		return ""
	}
	if proto := strings.ToLower(strings.TrimSpace(req.Header.Get("Upgrade"))); proto == "websocket" {
		return proto
	}
	return ""
}

// headerHasToken says whether a comma-separated header holds token, in any
// case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// runUpgrade passes a WebSocket upgrade through the tunnel. The request
// frame says "upgrade" and opens a request stream; the supervisor answers
// as the local service did. A 101 switches the public connection over: the
// relay takes it from net/http, writes the 101, and from then on the
// client's bytes are the request stream and the service's bytes the
// response stream, each under its own window, so a slow reader slows only
// its own direction. The WebSocket frames inside (text, binary, ping, pong,
// close with its code and reason) go through untouched. Either side's end
// ends the other. Any other answer goes to the client as an ordinary
// response.
func (p *proxyCall) runUpgrade(path, proto string) {
	if p.r.fleet != nil && hopProto(p.req) == "" && p.r.hop(p, nil, nil) {
		return
	}
	cfg := p.r.cfg
	clientBytes, feed := io.Pipe()
	defer feed.Close()
	p.id = uuid.NewString()
	frame := &wire.Frame{Type: wire.TypeRequest, MessageID: p.id, Method: p.req.Method, Path: path,
		Headers: p.requestHeaders(), Upgrade: proto, Stream: true}
	ex := relaymsg.NewExchange(p.tunnel, frame, wire.NewSendWindow(cfg.Window))
	p.r.system.Root.Send(p.r.router, &relaymsg.Forward{Exchange: ex})

	ctx, stopUpload := context.WithCancel(context.Background())
	defer stopUpload()
	var uploaded chan error
	defer func() {
		if uploaded != nil {
			stopUpload()
			_ = feed.Close()
			<-uploaded
		}
	}()
	var out relaymsg.Outcome
	for answered := false; !answered; {
		select {
		case write := <-ex.Accepted:
			if uploaded == nil {
				uploaded = make(chan error, 1)
				go func() {
					_, err := wire.SendStream(ctx, p.id, clientBytes, ex.Upload, cfg.ChunkSize, write)
					uploaded <- err
				}()
			}
		case out = <-ex.Outcome:
			answered = true
		case <-p.req.Context().Done():
			p.tellDone(true)
			p.status = clientGone
			return
		case <-p.r.closing:
			p.tellDone(true)
			p.fail(http.StatusServiceUnavailable, "relay shutting down")
			return
		}
	}
	if out.Response == nil || out.Response.Status != http.StatusSwitchingProtocols {
		// Refused (or not understood: a supervisor that predates upgrades
		// answers as its service does to a plain GET). The request stream
		// ends empty.
		_ = feed.Close()
		defer p.tellDone(false)
		p.respond(out)
		return
	}
	p.switchProtocols(out, proto, feed)
}

// switchProtocols hands the public connection over to the tunnel after a
// 101 (see runUpgrade).
func (p *proxyCall) switchProtocols(out relaymsg.Outcome, proto string, feed *io.PipeWriter) {
	body := out.Body
	if body != nil {
		defer body.Close()
	}
	conn, brw, err := p.rc.Hijack()
	if err != nil {
		p.tellDone(true)
		p.fail(http.StatusInternalServerError, "the connection cannot be switched over")
		return
	}
	defer conn.Close()
	p.status = http.StatusSwitchingProtocols
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h := endToEnd(out.Response.Headers)
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", proto)
	_ = h.Write(&head)
	head.WriteString("\r\n")
	if err := p.writeClient(conn, head.Bytes()); err != nil || body == nil {
		p.tellDone(true)
		return
	}
	// The client's bytes, those net/http had read ahead first.
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		_, err := io.Copy(feed, brw.Reader)
		_ = feed.CloseWithError(err)
	}()
	// A client gone is gone both ways (WebSocket clients do not half-close),
	// and a relay closing closes what net/http no longer tracks.
	go func() {
		select {
		case <-clientDone:
		case <-p.r.closing:
			_ = conn.Close()
			<-clientDone
		}
		_ = body.Close()
	}()
	// A client the buffer budget gives up is cut at once, even while a
	// write to it is blocked (see proxyCall.stream).
	body.OnAbort(func(error) { _ = conn.Close() })
	clean := true
	for {
		chunk, err := body.Next(copyBuffer)
		if len(chunk) > 0 {
			if werr := p.writeClient(conn, chunk); werr != nil {
				clean = false
				break
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			clean = false
			p.r.log.WithFields(logrus.Fields{"tunnel": p.tunnel, "message_id": p.id, "error": err}).
				Debug("Upgraded stream from the service broke off; closing the public connection")
			break
		}
	}
	// The service's side is over: so is the client's.
	_ = conn.Close()
	<-clientDone
	p.tellDone(!clean)
}

// writeClient writes b to a switched-over public connection within the
// send timeout.
func (p *proxyCall) writeClient(conn net.Conn, b []byte) error {
	_ = conn.SetWriteDeadline(time.Now().Add(p.r.cfg.SendTimeout))
	_, err := conn.Write(b)
	if errors.Is(err, net.ErrClosed) {
		return io.EOF
	}
	return err
}
