package ttsdemo

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func noPause(context.Context) error { return nil }

func TestWAVHeader(t *testing.T) {
	h := wavHeader(1000)
	le := binary.LittleEndian
	checks := []struct {
		name      string
		got, want any
	}{
		{"length", len(h), headerSize},
		{"RIFF", string(h[0:4]), "RIFF"},
		{"RIFF size", le.Uint32(h[4:8]), uint32(36 + 2000)},
		{"WAVE fmt", string(h[8:16]), "WAVEfmt "},
		{"fmt size", le.Uint32(h[16:20]), uint32(16)},
		{"PCM", le.Uint16(h[20:22]), uint16(1)},
		{"channels", le.Uint16(h[22:24]), uint16(1)},
		{"sample rate", le.Uint32(h[24:28]), uint32(22050)},
		{"byte rate", le.Uint32(h[28:32]), uint32(44100)},
		{"block align", le.Uint16(h[32:34]), uint16(2)},
		{"bits", le.Uint16(h[34:36]), uint16(16)},
		{"data", string(h[36:40]), "data"},
		{"data size", le.Uint32(h[40:44]), uint32(2000)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestAudioLengthFollowsText(t *testing.T) {
	tests := []struct{ runes, want int }{
		{1, 6615},       // the 300 ms minimum
		{10, 13230},     // 600 ms
		{100, 132300},   // 6 s
		{1000, 1323000}, // 60 s, the longest
	}
	for _, tc := range tests {
		if got := samplesFor(tc.runes); got != tc.want {
			t.Errorf("samplesFor(%d) = %d, want %d", tc.runes, got, tc.want)
		}
	}
}

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url+"/v1/tts", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestTTSAnswersAChunkedWAV(t *testing.T) {
	srv := httptest.NewServer(NewHandler(noPause))
	defer srv.Close()
	resp := post(t, srv.URL, `{"text":"hello from the tunnel","voice":"alto"}`)
	audio, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	samples := samplesFor(len("hello from the tunnel"))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "audio/wav" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || resp.ContentLength != -1 {
		t.Errorf("Transfer-Encoding %v, Content-Length %d: want chunked", resp.TransferEncoding, resp.ContentLength)
	}
	if len(audio) != headerSize+2*samples || !bytes.Equal(audio[:headerSize], wavHeader(samples)) {
		t.Fatalf("got %d bytes, want a header and %d samples", len(audio), samples)
	}
	var peak int16
	for i := headerSize; i < len(audio); i += 2 {
		peak = max(peak, int16(binary.LittleEndian.Uint16(audio[i:])))
	}
	if float64(peak) < amplitude*0.9 {
		t.Errorf("peak %d: want a tone near %.0f", peak, float64(amplitude))
	}
}

func TestTTSStreamsChunkByChunk(t *testing.T) {
	next := make(chan struct{})
	srv := httptest.NewServer(NewHandler(func(ctx context.Context) error {
		select {
		case <-next:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}))
	defer srv.Close()
	resp := post(t, srv.URL, `{"text":"a longer sentence than one chunk"}`)

	// The server is held before its second chunk: the first must be here.
	first := make([]byte, headerSize+2*chunkSamples)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("reading the first chunk: %v", err)
	}
	if string(first[:4]) != "RIFF" {
		t.Fatalf("the stream does not start with a WAV header")
	}
	close(next)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2*samplesFor(len("a longer sentence than one chunk")) - 2*chunkSamples; len(rest) != want {
		t.Errorf("rest of the stream: %d bytes, want %d", len(rest), want)
	}
}

func TestBadRequests(t *testing.T) {
	srv := httptest.NewServer(NewHandler(noPause))
	defer srv.Close()
	for _, body := range []string{`{"text":""}`, `{"voice":"x"}`, `not json`, `{"text":"` + strings.Repeat("a", maxTextRunes+1) + `"}`} {
		if resp := post(t, srv.URL, body); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %.30q = %d, want 400", body, resp.StatusCode)
		}
	}
	resp, err := http.Get(srv.URL + "/v1/tts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/tts = %d, want 405", resp.StatusCode)
	}
}

func TestHealthz(t *testing.T) {
	srv := httptest.NewServer(NewHandler(noPause))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Fatalf("GET /healthz = %d %s", resp.StatusCode, body)
	}
}
