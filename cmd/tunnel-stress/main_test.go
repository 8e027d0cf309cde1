package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/internal/stress"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		check   func(*options) bool
		wantErr string
	}{
		{[]string{}, func(o *options) bool {
			return o.cfg.Failures == stress.High && o.cfg.Duration == 300*time.Second && o.cfg.Connections == 1 && !o.json
		}, ""},
		{[]string{"--connections=2"}, func(o *options) bool { return o.cfg.Connections == 2 }, ""},
		{[]string{"--connections=0"}, nil, "connections must be between 1 and 16"},
		{[]string{"--connections=17"}, nil, "connections must be between 1 and 16"},
		{[]string{"--failures=low", "--duration=300", "--json"}, func(o *options) bool {
			return o.cfg.Failures == stress.Low && o.cfg.Duration == 300*time.Second && o.json
		}, ""},
		{[]string{"--failures", "Medium", "--duration", "45s"}, func(o *options) bool {
			return o.cfg.Failures == stress.Medium && o.cfg.Duration == 45*time.Second
		}, ""},
		{[]string{"--duration=1.5"}, func(o *options) bool { return o.cfg.Duration == 1500*time.Millisecond }, ""},
		{[]string{"--heartbeat-interval=100ms", "--heartbeat-timeout=0.5", "--retry-delay=1s", "--breaker-recovery=3",
			"--connect-timeout=2s", "--concurrency=3", "--seed=42"}, func(o *options) bool {
			c := o.cfg
			return c.HeartbeatInterval == 100*time.Millisecond && c.HeartbeatTimeout == 500*time.Millisecond &&
				c.RetryDelay == time.Second && c.BreakerRecovery == 3*time.Second && c.ConnectTimeout == 2*time.Second &&
				c.Concurrency == 3 && c.Seed == 42
		}, ""},
		{[]string{"--failures=extreme"}, nil, "failures must be low, medium or high"},
		{[]string{"--duration=soon"}, nil, "want seconds (300) or a Go duration (45s)"},
		{[]string{"--duration=0"}, nil, "duration must be positive"},
		{[]string{"--heartbeat-interval=2s", "--heartbeat-timeout=1s"}, nil, "must exceed the interval"},
		{[]string{"extra"}, nil, "unexpected arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			o, err := parse(tc.args, &out)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error()+out.String(), tc.wantErr) {
					t.Fatalf("err %v (output %q), want one saying %q", err, out.String(), tc.wantErr)
				}
			case err != nil:
				t.Fatalf("parse: %v", err)
			case !tc.check(o):
				t.Fatalf("options %+v", o.cfg)
			}
		})
	}
}

func TestRunRefusesBadFlagsWithStatus2(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--failures=none"}, &stdout, &stderr); code != 2 || stdout.Len() != 0 {
		t.Fatalf("exit %d, stdout %q; want 2 and nothing", code, stdout.String())
	}
}
