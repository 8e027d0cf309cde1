package breaker_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/actors/breaker"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a breaker actor under a probe in a synctest bubble.
type fixture struct {
	t      *testing.T
	system *actor.ActorSystem
	p      *probe.Probe
	pid    *actor.PID
}

func run(t *testing.T, cfg breaker.Config, body func(f *fixture)) {
	probe.BubbleChild(t, breaker.Props(cfg), func(t *testing.T, system *actor.ActorSystem, p *probe.Probe, pid *actor.PID) {
		body(&fixture{t: t, system: system, p: p, pid: pid})
	})
}

// fail reports a failure and returns the verdict and the status, which must
// come in that order.
func (f *fixture) fail(wasAuthenticated bool) (*actormsg.BreakerVerdict, *actormsg.BreakerStatus) {
	f.t.Helper()
	failure := &actormsg.ConnectionFailed{Type: messages.ConnectionRefused, Err: errors.New("refused"), At: time.Now(), WasAuthenticated: wasAuthenticated}
	f.system.Root.Send(f.pid, failure)
	v, _ := probe.Expect[*actormsg.BreakerVerdict](f.p)
	if v.Failure != failure {
		f.t.Fatalf("verdict answers %+v, want the failure sent", v.Failure)
	}
	s, _ := probe.Expect[*actormsg.BreakerStatus](f.p)
	if s.ConsecutiveFailures != v.ConsecutiveFailures || (s.State == messages.BreakerOpen) != v.Open {
		f.t.Fatalf("status %+v disagrees with verdict %+v", s, v)
	}
	return v, s
}

// succeed reports AUTHENTICATED and returns the status it causes.
func (f *fixture) succeed() *actormsg.BreakerStatus {
	f.t.Helper()
	f.system.Root.Send(f.pid, &messages.StateChanged{State: messages.Authenticated, At: time.Now()})
	s, _ := probe.Expect[*actormsg.BreakerStatus](f.p)
	return s
}

// failUntilOpen reports failures up to the default threshold; the last opens.
func (f *fixture) failUntilOpen() *actormsg.BreakerStatus {
	f.t.Helper()
	for i := 1; i < breaker.DefaultThreshold; i++ {
		f.fail(false)
	}
	v, s := f.fail(false)
	if !v.Open {
		f.t.Fatalf("verdict %+v after %d failures, want open", v, breaker.DefaultThreshold)
	}
	return s
}

func TestOpensOnFifthFailure(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	cfg := breaker.DefaultConfig()
	cfg.Logger = logger
	run(t, cfg, func(f *fixture) {
		for want := 1; want <= 4; want++ {
			v, s := f.fail(false)
			if v.Open || v.ConsecutiveFailures != want || s.State != messages.BreakerClosed {
				t.Fatalf("failure %d: verdict %+v status %+v, want closed with count %d", want, v, s, want)
			}
		}
		start := time.Now()
		v, s := f.fail(false)
		if !v.Open || v.ConsecutiveFailures != 5 || !v.OpenedAt.Equal(start) {
			t.Fatalf("5th verdict %+v, want open since now with count 5", v)
		}
		if s.State != messages.BreakerOpen || !s.OpenUntil.Equal(start.Add(300*time.Second)) || s.Openings != 1 {
			t.Fatalf("status %+v, want open until start+300s, 1 opening", s)
		}

		var warning *logrus.Entry
		for _, e := range hook.AllEntries() {
			if e.Level == logrus.WarnLevel {
				warning = e
			}
		}
		if warning == nil {
			t.Fatal("no warning logged")
		}
		if want := "Circuit breaker activated - too many consecutive failures (5)"; warning.Message != want {
			t.Fatalf("log %q, want %q", warning.Message, want)
		}
		if warning.Data["actor"] != "breaker" || warning.Data["consecutive_failures"] != 5 || warning.Data["recovery"] != "5m0s" {
			t.Fatalf("log fields %v", warning.Data)
		}
	})
}

func TestHalfOpenAfterRecovery(t *testing.T) {
	run(t, breaker.DefaultConfig(), func(f *fixture) {
		f.failUntilOpen()
		opened := time.Now()
		s, env := probe.Expect[*actormsg.BreakerStatus](f.p)
		if got := env.At.Sub(opened); got != 300*time.Second {
			t.Fatalf("half-open after %v, want exactly 300s", got)
		}
		if s.State != messages.BreakerHalfOpen || !s.OpenUntil.IsZero() || s.ConsecutiveFailures != 5 {
			t.Fatalf("status %+v, want half-open, count kept, no OpenUntil", s)
		}
		f.p.ExpectNoMsg(time.Hour)
	})
}

func TestTrialSuccessCloses(t *testing.T) {
	run(t, breaker.DefaultConfig(), func(f *fixture) {
		f.failUntilOpen()
		probe.Expect[*actormsg.BreakerStatus](f.p) // half-open
		s := f.succeed()
		if s.State != messages.BreakerClosed || s.ConsecutiveFailures != 0 || s.Openings != 1 || !s.OpenUntil.IsZero() {
			t.Fatalf("status %+v, want closed with count 0", s)
		}
		// A failure long after the success starts counting from zero.
		f.p.ExpectNoMsg(time.Minute)
		if v, _ := f.fail(true); v.Open || v.ConsecutiveFailures != 1 {
			t.Fatalf("verdict %+v, want closed with count 1", v)
		}
	})
}

func TestTrialFailureReopens(t *testing.T) {
	run(t, breaker.DefaultConfig(), func(f *fixture) {
		f.failUntilOpen()
		probe.Expect[*actormsg.BreakerStatus](f.p) // half-open
		reopened := time.Now()
		v, s := f.fail(false)
		if !v.Open || v.ConsecutiveFailures != 6 {
			t.Fatalf("verdict %+v, want open with count 6", v)
		}
		if s.Openings != 2 || !s.OpenUntil.Equal(reopened.Add(300*time.Second)) {
			t.Fatalf("status %+v, want 2 openings, open until +300s", s)
		}
		s, env := probe.Expect[*actormsg.BreakerStatus](f.p)
		if got := env.At.Sub(reopened); got != 300*time.Second || s.State != messages.BreakerHalfOpen {
			t.Fatalf("status %+v after %v, want half-open after exactly 300s", s, got)
		}
	})
}

func TestSuccessWhileOpenCancelsRecovery(t *testing.T) {
	run(t, breaker.DefaultConfig(), func(f *fixture) {
		f.failUntilOpen()
		f.p.ExpectNoMsg(time.Minute)
		if s := f.succeed(); s.State != messages.BreakerClosed || s.ConsecutiveFailures != 0 || s.Openings != 1 || !s.OpenUntil.IsZero() {
			t.Fatalf("status %+v, want closed with count 0", s)
		}
		f.p.ExpectNoMsg(time.Hour) // no half-open from the cancelled timer
	})
}

func TestFlappingTrips(t *testing.T) {
	run(t, breaker.DefaultConfig(), func(f *fixture) {
		for want := 1; want <= 5; want++ {
			if s := f.succeed(); s.ConsecutiveFailures != 0 || s.State != messages.BreakerClosed {
				t.Fatalf("cycle %d: success status %+v, want closed with count 0", want, s)
			}
			f.p.ExpectNoMsg(time.Second)
			v, _ := f.fail(true)
			if v.ConsecutiveFailures != want || v.Open != (want == 5) {
				t.Fatalf("cycle %d: verdict %+v, want count %d, open %v", want, v, want, want == 5)
			}
		}
	})
}

func TestDropAfterSuccess(t *testing.T) {
	tests := []struct {
		name             string
		after            time.Duration
		wasAuthenticated bool
		want             int
	}{
		{"drop within the flap window restores the count", time.Second, true, 4},
		{"drop just inside the window", 15*time.Second - time.Millisecond, true, 4},
		{"drop at the window's end is a new count", 15 * time.Second, true, 1},
		{"drop 16s later is a new count", 16 * time.Second, true, 1},
		{"failed attempt soon after a success is a new count", time.Second, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, breaker.DefaultConfig(), func(f *fixture) {
				for range 3 {
					f.fail(false)
				}
				f.succeed()
				f.p.ExpectNoMsg(tt.after)
				if v, _ := f.fail(tt.wasAuthenticated); v.ConsecutiveFailures != tt.want || v.Open {
					t.Fatalf("verdict %+v, want closed with count %d", v, tt.want)
				}
			})
		})
	}
}

func TestThresholds(t *testing.T) {
	for _, threshold := range []int{1, 2, 3, 5, 10} {
		t.Run(fmt.Sprintf("threshold %d", threshold), func(t *testing.T) {
			cfg := breaker.DefaultConfig()
			cfg.Threshold = threshold
			run(t, cfg, func(f *fixture) {
				for n := 1; n <= threshold; n++ {
					v, _ := f.fail(false)
					if v.Open != (n == threshold) || v.ConsecutiveFailures != n {
						t.Fatalf("failure %d of threshold %d: verdict %+v", n, threshold, v)
					}
				}
				// Failures while open keep it open without a second opening.
				v, s := f.fail(false)
				if !v.Open || s.Openings != 1 {
					t.Fatalf("failure while open: verdict %+v status %+v", v, s)
				}
			})
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg := breaker.DefaultConfig()
	if cfg.Threshold != 5 || cfg.Recovery != 300*time.Second || cfg.FlapWindow != 15*time.Second || cfg.Logger != nil {
		t.Fatalf("DefaultConfig() = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     breaker.Config
		wantErr string
	}{
		{"no flap window", breaker.Config{Threshold: 1, Recovery: time.Second}, ""},
		{"zero threshold", breaker.Config{Recovery: time.Second}, "Threshold must be at least 1"},
		{"zero recovery", breaker.Config{Threshold: 5}, "Recovery must be positive"},
		{"negative flap window", breaker.Config{Threshold: 5, Recovery: time.Second, FlapWindow: -1}, "FlapWindow must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
