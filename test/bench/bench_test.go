// Package bench measures what the tunnel costs: each benchmark runs the same
// work once straight against the upstream (the baseline) and once through
// the relay and the tunnel, in the same process and the same run, so that
// `make bench` can print the ratio of the two on whatever machine it runs.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/forward"
)

const key = "bench-key-YmVuY2htYXJrIGtleQ"

// upstream answers /small with a short body and /bytes?n=N with N bytes.
func upstream() *httptest.Server {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for n > 0 {
			k := min(n, len(payload))
			if _, err := w.Write(payload[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	return httptest.NewServer(mux)
}

// tunnelTo starts a relay and a supervisor forwarding to target, and returns
// the relay's public base URL and a stop function.
func tunnelTo(b *testing.B, target string) (string, func()) {
	b.Helper()
	rcfg := relay.DefaultConfig()
	rcfg.Listen, rcfg.AdminListen = "127.0.0.1:0", ""
	rcfg.AuthToken = key
	r, err := relay.Start(rcfg)
	if err != nil {
		b.Fatal(err)
	}
	fw, err := forward.New(forward.Config{Upstream: target})
	if err != nil {
		b.Fatal(err)
	}
	up := make(chan struct{}, 1)
	cfg := supervisor.DefaultConfig()
	cfg.Connections = 1 // the one-connection behaviour under test
	cfg.RelayURL = "ws://" + r.Addr().String() + "/tunnel"
	cfg.APIKey = key
	cfg.OnMessage = func(ctx context.Context, t *supervisor.Tunnel, msg *messages.TunnelMessage) { fw.Handle(ctx, t, msg) }
	cfg.OnStateChange = func(s messages.StateChanged) {
		if s.State == messages.Authenticated {
			select {
			case up <- struct{}{}:
			default:
			}
		}
	}
	t, err := supervisor.Start(nil, cfg)
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-up:
	case <-time.After(10 * time.Second):
		b.Fatal("tunnel not up within 10s")
	}
	return "http://" + r.Addr().String(), func() {
		ctx := context.Background()
		_ = t.Stop(ctx)
		fw.Close()
		_ = r.Close(ctx)
	}
}

func get(b *testing.B, client *http.Client, url string) int64 {
	resp, err := client.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d, %v", url, resp.StatusCode, err)
	}
	return n
}

// run measures path on the upstream directly and through the tunnel.
func run(b *testing.B, path string, size int64) {
	up := upstream()
	defer up.Close()
	base, stop := tunnelTo(b, up.URL)
	defer stop()
	for _, via := range []struct{ name, base string }{{"direct", up.URL}, {"tunnel", base}} {
		b.Run(via.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			defer client.CloseIdleConnections()
			if size > 0 {
				b.SetBytes(size)
			}
			b.ReportAllocs()
			for b.Loop() {
				if n := get(b, client, via.base+path); size > 0 && n != size {
					b.Fatalf("got %d bytes, want %d", n, size)
				}
			}
		})
	}
}

func BenchmarkSmallRequest(b *testing.B) { run(b, "/small", 0) }

func BenchmarkStream10MiB(b *testing.B) {
	const size = 10 << 20
	run(b, fmt.Sprintf("/bytes?n=%d", size), size)
}

func BenchmarkParallelSmallRequests(b *testing.B) {
	up := upstream()
	defer up.Close()
	base, stop := tunnelTo(b, up.URL)
	defer stop()
	for _, via := range []struct{ name, base string }{{"direct", up.URL}, {"tunnel", base}} {
		b.Run(via.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			defer client.CloseIdleConnections()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b, client, via.base+"/small")
				}
			})
		})
	}
}
