package relay

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestParseAccessLog(t *testing.T) {
	for in, want := range map[string]float64{"": 0, "off": 0, "OFF": 0, "false": 0, "0": 0, "on": 1, "true": 1, "1": 1, "0.1": 0.1, " 0.25 ": 0.25} {
		got, err := ParseAccessLog(in)
		if err != nil || got != want {
			t.Errorf("ParseAccessLog(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-0.1", "1.01", "often", "NaN", "1e3"} {
		if _, err := ParseAccessLog(in); err == nil {
			t.Errorf("ParseAccessLog(%q): no error", in)
		}
	}
	for f, want := range map[float64]string{0: "off", 1: "on", 0.1: "0.1"} {
		if got := FormatAccessLog(f); got != want {
			t.Errorf("FormatAccessLog(%v) = %q, want %q", f, got, want)
		}
	}
}

// TestAccessLogSampling decides with a random source the test gives: a
// request is logged when the draw is below the fraction.
func TestAccessLogSampling(t *testing.T) {
	if (*accessLog)(nil).sample() {
		t.Error("a nil access log samples")
	}
	if newAccessLog(0, logrus.New()) != nil {
		t.Error("fraction 0 makes an access log")
	}
	draws := []float64{0.05, 0.1, 0.5, 0.0999, 0.99}
	a := &accessLog{fraction: 0.1}
	i := 0
	a.random = func() float64 { d := draws[i]; i++; return d }
	var got []bool
	for range draws {
		got = append(got, a.sample())
	}
	want := []bool{true, false, false, true, false}
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("draws %v at 0.1: %v, want %v", draws, got, want)
		}
	}
	all := &accessLog{fraction: 1, random: func() float64 { t.Fatal("fraction 1 draws"); return 0 }}
	if !all.sample() {
		t.Error("fraction 1 skips a request")
	}
	// Over many draws of the real source the share is near the fraction.
	real := newAccessLog(0.25, logrus.New())
	n := 0
	for range 20000 {
		if real.sample() {
			n++
		}
	}
	if share := float64(n) / 20000; share < 0.22 || share > 0.28 {
		t.Errorf("share %.3f at 0.25", share)
	}
}

// TestAccessLogLine: the fields, at info level, with actor=access, never
// the query; and no line is held back by the relay's log rate.
func TestAccessLogLine(t *testing.T) {
	var out bytes.Buffer
	l := logrus.New()
	l.SetOutput(&out)
	l.SetFormatter(&logrus.JSONFormatter{})
	a := newAccessLog(1, l)
	req := httptest.NewRequest("GET", "/t/a/v1/tts?token=s3cr3t", nil)
	for range 50 { // beyond any log rate
		a.write(accessEntry{tunnel: "a", method: req.Method, path: accessPath(req), client: "192.0.2.7", messageID: "m-1",
			status: 200, bytes: 42, took: 1500 * time.Microsecond})
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines, want 50", len(lines))
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"msg": "Public request", "level": "info", "actor": "access", "tunnel": "a", "method": "GET",
		"path": "/t/a/v1/tts", "status": 200.0, "bytes_out": 42.0, "duration_ms": 1.5, "remote_addr": "192.0.2.7", "message_id": "m-1"}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s = %v, want %v", k, e[k], v)
		}
	}
	if strings.Contains(out.String(), "s3cr3t") {
		t.Error("the query reached the access log")
	}
}
