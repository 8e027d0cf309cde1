// Command tts-demo serves the stand-in TTS server of package ttsdemo, for
// trying the tunnel without a real model.
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

	"github.com/enhanced-tunnel/tunnel/internal/ttsdemo"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "address to serve on")
	chunkDelay := flag.Duration("chunk-delay", 10*time.Millisecond, "pause before each audio chunk after the first, as if synthesising")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: ttsdemo.NewHandler(ttsdemo.Pause(*chunkDelay)), ReadHeaderTimeout: 10 * time.Second}
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
