package forward

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/enhanced-tunnel/tunnel/messages"
)

// asUpgrade makes req ask the upstream to switch to msg.Upgrade (a
// WebSocket handshake): the Connection and Upgrade headers the relay left
// out as hop-by-hop are put back, and the request has no body, msg's body
// stream being the client's bytes after a 101 (see switched).
func asUpgrade(req *http.Request, msg *messages.TunnelMessage) {
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", msg.Upgrade)
	req.Body, req.ContentLength = http.NoBody, 0
}

// switched carries an upgraded connection through the tunnel: the client's
// bytes (msg.BodyStream) are written to the upstream as they come, and the
// upstream's bytes go back as the 101 response's body stream, each under
// its stream's window. Either side's end ends the other: the client's
// stream ending closes the upstream connection, and the upstream closing
// ends the response stream (cleanly, since for an upgraded connection that
// is the end).
func (f *Forwarder) switched(ctx context.Context, s Sender, msg *messages.TunnelMessage, resp *http.Response, bytesIn *atomic.Int64) Result {
	conn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		return f.reject(ctx, s, msg.MessageID, http.StatusBadGateway, "upstream: switched protocols without a connection")
	}
	defer conn.Close()
	var clientGone atomic.Bool
	uploaded := make(chan struct{})
	go func() {
		defer close(uploaded)
		if msg.BodyStream != nil {
			_, _ = io.Copy(conn, &countingReader{r: msg.BodyStream, n: bytesIn})
		}
		clientGone.Store(true)
		_ = conn.Close()
	}()
	var bytesOut atomic.Int64
	out := &messages.TunnelMessage{
		Type:       messages.TypeResponse,
		MessageID:  msg.MessageID,
		Status:     http.StatusSwitchingProtocols,
		Upgrade:    msg.Upgrade,
		Headers:    withoutHopByHop(resp.Header),
		BodyStream: &upgradedBody{r: &countingReader{r: conn, n: &bytesOut}, closed: &clientGone},
	}
	err := s.Send(ctx, out)
	_ = conn.Close()
	<-uploaded
	return Result{Status: http.StatusSwitchingProtocols, BytesIn: bytesIn.Load(), BytesOut: bytesOut.Load(), Err: err}
}

// upgradedBody is the upstream's side of a switched connection: once the
// client's side has ended (and closed the connection), a read error is
// the end of the stream, not its failure.
type upgradedBody struct {
	r      io.Reader
	closed *atomic.Bool
}

func (b *upgradedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.closed.Load() {
		err = io.EOF
	}
	return n, err
}
