// Command tts-demo is a stand-in TTS server for trying the tunnel without a
// real model: POST /v1/tts with {"text":"...","voice":"..."} answers a WAV
// (16-bit mono, 22050 Hz) of a sine tone as long as the text would take to
// say, streamed in 100 ms chunks; GET /healthz answers {"status":"ok"}.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "address to serve on")
	chunkDelay := flag.Duration("chunk-delay", 10*time.Millisecond, "pause before each audio chunk after the first, as if synthesising")
	flag.Parse()

	pace := func(ctx context.Context) error {
		t := time.NewTimer(*chunkDelay)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: newHandler(pace), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutDown := make(chan struct{})
	go func() {
		defer close(shutDown)
		<-ctx.Done()
		deadline, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(deadline)
	}()
	fmt.Fprintf(os.Stderr, "tts-demo listening on http://%s\n", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-shutDown // Serve returns at once; Shutdown returns when the answers in progress are done
}
