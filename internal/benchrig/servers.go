package benchrig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// What the servers answer.
const (
	// smallBody is /small's answer and the raw target's small message.
	smallBody = `{"ok":true}`
	// MaxBytes is the largest /bytes?n= answer and "n=" echo: both come
	// from one buffer allocated up front, so that no run pays for it.
	MaxBytes = 16 << 20
	// The progressive body: a first piece, then more pieces each after a
	// pause, every one flushed, as a TTS server streams audio.
	progressivePiece  = 1 << 10
	progressivePieces = 16
	progressivePause  = 2 * time.Millisecond
)

// payload is the buffer behind /bytes and the echo's "n=N" answers.
var payload = func() []byte {
	b := make([]byte, MaxBytes)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

// ServeUpstream serves the upstream's endpoints on listen until ctx ends,
// after writing the bound address and a newline to stdout (the parent
// reads it there, since listen may name port 0):
//
//	/small          {"ok":true}
//	/bytes?n=N      N bytes, N at most MaxBytes
//	/progressive    16 KiB in 1 KiB pieces, each flushed, 2 ms apart
func ServeUpstream(ctx context.Context, listen string, stdout io.Writer) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, smallBody)
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > MaxBytes {
			http.Error(w, fmt.Sprintf("want n=0..%d", MaxBytes), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(payload[:n])
	})
	mux.HandleFunc("/progressive", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		rc := http.NewResponseController(w)
		for i := range progressivePieces {
			if i > 0 {
				time.Sleep(progressivePause)
			}
			if _, err := w.Write(payload[:progressivePiece]); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	})
	return serve(ctx, listen, stdout, mux)
}

// ServeWSEcho serves a bare gorilla/websocket server on listen until ctx
// ends, after writing the bound address to stdout as ServeUpstream does.
// Each text or binary message is answered with one message: N bytes
// (binary) for "n=N", else the message itself.
func ServeWSEcho(ctx context.Context, listen string, stdout io.Writer) error {
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if n, ok := strings.CutPrefix(string(msg), "n="); ok {
				if k, err := strconv.Atoi(n); err == nil && k >= 0 && k <= MaxBytes {
					typ, msg = websocket.BinaryMessage, payload[:k]
				}
			}
			if err := c.WriteMessage(typ, msg); err != nil {
				return
			}
		}
	})
	return serve(ctx, listen, stdout, handler)
}

// serve runs h on listen until ctx ends, announcing the address on stdout.
func serve(ctx context.Context, listen string, stdout io.Writer, h http.Handler) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(stdout, ln.Addr().String()); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
