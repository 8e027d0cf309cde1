package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// echo answers with the request's method, path and body, and its headers
// under X-Echo-*; streamed when the request was.
func echo(_ context.Context, req *wire.Frame, body io.Reader) reply {
	h := map[string][]string{"X-Method": {req.Method}, "X-Path": {req.Path}, "Content-Type": {"application/octet-stream"}}
	for name, v := range req.Headers {
		h["X-Echo-"+name] = v
	}
	if body == nil {
		return reply{Status: http.StatusOK, Headers: h}
	}
	if req.Stream {
		return reply{Status: http.StatusOK, Headers: h, Stream: body}
	}
	b, _ := io.ReadAll(body)
	return reply{Status: http.StatusOK, Headers: h, Body: b}
}

func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

func errorText(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	var body struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body: %v", err)
	}
	return body.Error
}

func TestInlineRoundTripKeepsMethodPathQueryAndHeaders(t *testing.T) {
	r := startRelay(t, nil)
	connect(t, r, defaultKey, "", echo)
	req, _ := http.NewRequest(http.MethodPost, baseURL(r)+"/v1/tts?voice=a&x=1", strings.NewReader(`{"text":"hi"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Custom", "kept")
	req.Header.Set("Connection", "keep-alive, X-Hop")
	req.Header.Set("X-Hop", "dropped")
	resp, err := httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(got) != `{"text":"hi"}` {
		t.Fatalf("status %d body %q", resp.StatusCode, got)
	}
	for name, want := range map[string]string{
		"X-Method": "POST", "X-Path": "/v1/tts?voice=a&x=1",
		"X-Echo-Content-Type": "application/json", "X-Echo-X-Custom": "kept", "X-Echo-X-Hop": "", "X-Echo-Connection": "",
		"X-Echo-X-Forwarded-For": "127.0.0.1",
	} {
		if v := resp.Header.Get(name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
}

func TestTunnelPrefixRoutesAndIsStripped(t *testing.T) {
	r := startRelay(t, nil)
	connect(t, r, keyA, "a", echo)
	connect(t, r, keyB, "b", func(context.Context, *wire.Frame, io.Reader) reply {
		return reply{Status: http.StatusTeapot}
	})
	c := httpClient(t)
	for _, tc := range []struct {
		url, path string
		status    int
	}{
		{"/t/a/v1/x?q=1", "/v1/x?q=1", 200},
		{"/t/a", "/", 200},
		{"/t/b/anything", "", http.StatusTeapot},
	} {
		resp, err := c.Get(baseURL(r) + tc.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("X-Path") != tc.path {
			t.Errorf("%s: status %d path %q, want %d %q", tc.url, resp.StatusCode, resp.Header.Get("X-Path"), tc.status, tc.path)
		}
	}
}

func TestTenMebibytesStreamBothWaysByteExact(t *testing.T) {
	r := startRelay(t, nil)
	connect(t, r, defaultKey, "", echo)
	payload := make([]byte, 10<<20)
	_, _ = rand.Read(payload)
	resp, err := httpClient(t).Post(baseURL(r)+"/echo", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !bytes.Equal(got, payload) {
		t.Fatalf("status %d, %d bytes back, equal %v", resp.StatusCode, len(got), bytes.Equal(got, payload))
	}
}

// A tunnel with a key but no session holds the request for the hold
// timeout, then answers 503.
func TestNoTunnelIs503AfterTheHoldTimeout(t *testing.T) {
	const hold = 100 * time.Millisecond
	r := startRelay(t, func(c *relay.Config) { c.HoldTimeout = hold })
	start := time.Now()
	resp, err := httpClient(t).Get(baseURL(r) + "/t/a/x")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || time.Since(start) < hold {
		t.Fatalf("status %d after %v, want 503 after the hold timeout", resp.StatusCode, time.Since(start))
	}
	if text := errorText(t, resp); text != `no tunnel "a" connected` {
		t.Fatalf("error %q", text)
	}
}

// A name no key opens is 404 at once, whatever the hold timeout.
func TestUnknownTunnelIs404(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.HoldTimeout = time.Hour })
	resp, err := httpClient(t).Get(baseURL(r) + "/t/nobody/x")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
	if text := errorText(t, resp); text != `unknown tunnel "nobody"` {
		t.Fatalf("error %q", text)
	}
}
