package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
)

// TestAccessLogLinePerRequest: with the access log on, every public
// request has one line with its tunnel, method, path, status, bytes,
// duration, client address and message id, and no query string,
// Authorization, cookie or key.
func TestAccessLogLinePerRequest(t *testing.T) {
	const (
		querySecret  = "itest-query-secret-5b9e"
		bearerSecret = "itest-authorization-secret-7c1d"
		cookieSecret = "itest-cookie-secret-3f8a"
	)
	w, r, _ := connect(t, http.HandlerFunc(func(resp http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(resp, "twelve bytes")
	}), func(c *relay.Config) { c.AccessLog = 1; c.HoldTimeout = 0 }, nil)
	w.secrets = append(w.secrets, querySecret, bearerSecret, cookieSecret)
	for range 3 {
		req, _ := http.NewRequest(http.MethodGet, publicURL(r, "/v1/tts?token="+querySecret), nil)
		req.Header.Set("Authorization", "Bearer "+bearerSecret)
		req.Header.Set("Cookie", "session="+cookieSecret)
		resp, body, err := w.do(req)
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "twelve bytes" {
			t.Fatalf("request: %v %v %q", resp, err, body)
		}
	}
	if code, _ := w.get(publicURL(r, "/t/nosuch/x")); code != http.StatusNotFound {
		t.Fatalf("unknown tunnel: %d", code)
	}
	var lines []string
	for _, line := range strings.Split(w.logs.String(), "\n") {
		if strings.Contains(line, `msg="Public request"`) {
			lines = append(lines, line)
		}
	}
	if len(lines) != 4 {
		t.Fatalf("%d access lines, want 4:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, want := range []string{"level=info", "actor=access", "tunnel=default", "method=GET", "path=/v1/tts", "status=200",
		"bytes_out=12", "duration_ms=", "remote_addr=127.0.0.1", "message_id="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the line lacks %q: %s", want, lines[0])
		}
	}
	if !strings.Contains(lines[3], "status=404") || !strings.Contains(lines[3], "tunnel=nosuch") {
		t.Errorf("the 404's line: %s", lines[3])
	}
	for _, line := range lines {
		for _, s := range []string{querySecret, bearerSecret, cookieSecret, "token=", "Authorization", "Cookie"} {
			if strings.Contains(line, s) {
				t.Errorf("%q in the access line %s", s, line)
			}
		}
	}
}

// TestAccessLogOffByDefault: no access line without -access-log.
func TestAccessLogOffByDefault(t *testing.T) {
	w, r, _ := connect(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), nil, nil)
	if code, _ := w.get(publicURL(r, "/x")); code != http.StatusOK {
		t.Fatalf("request: %d", code)
	}
	if strings.Contains(w.logs.String(), "Public request") {
		t.Error("an access line with the access log off")
	}
}
