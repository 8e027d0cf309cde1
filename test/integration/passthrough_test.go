package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// TestTrailersReachThePublicClient: a gRPC-style answer keeps its
// grpc-status and grpc-message trailers end to end, after a body of any
// size (inline-sized and streamed).
func TestTrailersReachThePublicClient(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/grpc", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.Header().Set("Content-Type", "application/grpc")
		n := 100
		if r.URL.Query().Get("big") == "1" {
			n = 300 << 10
		}
		_, _ = w.Write([]byte(strings.Repeat("x", n)))
		w.Header().Set("Grpc-Status", "7")
		w.Header().Set("Grpc-Message", "permission denied")
	})
	w, r, _ := connect(t, mux, nil, nil)
	for _, query := range []string{"", "?big=1"} {
		resp, err := w.client.Get(publicURL(r, "/grpc"+query))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /grpc%s: %d, %v", query, resp.StatusCode, err)
		}
		if got := resp.Trailer.Get("Grpc-Status"); got != "7" {
			t.Errorf("GET /grpc%s (%d bytes): trailer grpc-status %q, want 7 (trailers %v)", query, len(body), got, resp.Trailer)
		}
		if got := resp.Trailer.Get("Grpc-Message"); got != "permission denied" {
			t.Errorf("GET /grpc%s: trailer grpc-message %q", query, got)
		}
	}
}

// TestServerSentEventsStreamEventByEvent: each event of a text/event-stream
// reaches the public client before the upstream writes the next.
func TestServerSentEventsStreamEventByEvent(t *testing.T) {
	next := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		for i := range 3 {
			fmt.Fprintf(w, "id: %d\nevent: progress\ndata: chunk %d\n\n", i, i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	w, r, _ := connect(t, mux, nil, nil)
	resp, err := w.client.Get(publicURL(r, "/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := bufio.NewReader(resp.Body)
	for i := range 3 {
		var event []string
		for {
			line, err := events.ReadString('\n')
			if err != nil {
				t.Fatalf("event %d: %v after %q", i, err, event)
			}
			if line == "\n" {
				break
			}
			event = append(event, strings.TrimSuffix(line, "\n"))
		}
		want := []string{fmt.Sprintf("id: %d", i), "event: progress", fmt.Sprintf("data: chunk %d", i)}
		if strings.Join(event, "|") != strings.Join(want, "|") {
			t.Fatalf("event %d: %q, want %q", i, event, want)
		}
		// The upstream writes the next event only now: this one came alone.
		next <- struct{}{}
	}
	harness.Eventually(t, patience, "the end of the stream", func() bool {
		_, err := events.ReadByte()
		return err == io.EOF
	})
}
