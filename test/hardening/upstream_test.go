package hardening_test

import (
	"bufio"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// junkServer accepts TCP connections on 127.0.0.1, reads each request's
// head, answers with junk and hangs up. It returns its base URL.
func junkServer(t *testing.T, junk []byte) string {
	t.Helper()
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(wait))
				head := bufio.NewReader(conn)
				for {
					line, err := head.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = conn.Write(junk)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// An upstream that answers garbage instead of HTTP costs the public client a
// 502 from the supervisor, and nothing more: the tunnel stays up.
func TestUpstreamAnsweringGarbageIs502AndTheTunnelStaysUp(t *testing.T) {
	noise := make([]byte, 4096)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(noise)
	for _, tc := range []struct {
		name string
		junk []byte
	}{
		{"text that is not HTTP", []byte("hello, this is not HTTP\r\n\r\n")},
		{"binary noise", noise},
		{"a status line and broken headers", []byte("HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\nbody")},
		{"a status line with a bad code", []byte("HTTP/1.1 2000 Fine\r\n\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, nil)
			tu := startTunnel(t, harness.TunnelURL(r), defaultKey, junkServer(t, tc.junk), nil)
			tu.await(messages.Authenticated)
			c := httpClient(t)
			for i := range 2 {
				status, body := get(t, c, publicURL(r)+"/v1/tts")
				if status != http.StatusBadGateway || !strings.HasPrefix(errorText(t, body), "upstream: ") {
					t.Fatalf("request %d: %d %q, want 502 with an upstream: error", i+1, status, body)
				}
			}
			if st := tu.Status(); st.State != messages.Authenticated || len(st.Health.FailureTypes) != 0 || st.Health.TotalAttempts != 1 {
				t.Fatalf("tunnel %s, failures %v, attempts %d; want it up on its first connection", st.State, st.Health.FailureTypes, st.Health.TotalAttempts)
			}
		})
	}
}

// A public client that hangs up in the middle of a streamed response has
// its request cancelled all the way: the relay sends cancel, the
// supervisor cancels the upstream request, the tunnel stays up.
func TestPublicClientLeavingMidStreamCancelsTheUpstreamRequest(t *testing.T) {
	cancelled := make(chan struct{})
	up := upstream(t, func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/stream" {
			hello(w, req)
			return
		}
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = io.WriteString(w, "first part")
		w.(http.Flusher).Flush()
		select {
		case <-req.Context().Done():
			close(cancelled)
		case <-time.After(wait):
		}
	})
	r := startRelay(t, nil)
	tu := startTunnel(t, harness.TunnelURL(r), defaultKey, up, nil)
	tu.await(messages.Authenticated)

	c := httpClient(t)
	resp, err := c.Get(publicURL(r) + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("first part"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first part" {
		t.Fatalf("first part: %q, %v", buf, err)
	}
	// Closing a body not read to its end closes the connection.
	resp.Body.Close()
	select {
	case <-cancelled:
	case <-time.After(wait):
		t.Fatal("the upstream request was not cancelled")
	}

	if status, body := get(t, c, publicURL(r)+"/after"); status != http.StatusOK || body != "hello" {
		t.Fatalf("next request: %d %q", status, body)
	}
	if st := tu.Status(); st.State != messages.Authenticated || len(st.Health.FailureTypes) != 0 {
		t.Fatalf("tunnel %s, failures %v", st.State, st.Health.FailureTypes)
	}
}
