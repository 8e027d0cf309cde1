package stress

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestShortHighRun is a 20 s run at High: every kind of fault comes at
// least once. It asserts the counts only; timings on a machine running the
// race detector and other tests at once prove nothing.
func TestShortHighRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s run")
	}
	cfg := DefaultConfig()
	cfg.Failures = High
	cfg.Duration = 20 * time.Second
	cfg.Seed = 7
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if t.Failed() || rep.RequestsLost > 0 || rep.Panics > 0 || rep.GoroutinesEnd > rep.GoroutinesStart+goroutineAllowance || !rep.UpAtEnd {
		t.Errorf("lost %d %v %v, panics %d %v, goroutines %d at the start and %d at the end, up at the end %v",
			rep.RequestsLost, rep.LostBy, rep.LostExamples, rep.Panics, rep.ActorPanics, rep.GoroutinesStart, rep.GoroutinesEnd, rep.UpAtEnd)
	}
	if rep.RequestsSent != rep.RequestsOK+rep.RequestsFailedExplicit+rep.RequestsLost || rep.RequestsOK == 0 {
		t.Errorf("sent %d, ok %d, failed %d, lost %d: want sent = ok + failed + lost, some ok",
			rep.RequestsSent, rep.RequestsOK, rep.RequestsFailedExplicit, rep.RequestsLost)
	}
	for _, kind := range faultNames {
		if rep.Faults[kind] == 0 {
			t.Errorf("no %s fault in %v", kind, rep.Faults)
		}
	}
	if rep.Reconnects == 0 || len(rep.StopErrors) > 0 {
		t.Errorf("%d reconnects, stop errors %v; want reconnects and a clean stop", rep.Reconnects, rep.StopErrors)
	}
}

func TestCheckNamesEachFailedExpectation(t *testing.T) {
	good := Report{
		RequestsSent: 10, RequestsOK: 8, RequestsFailedExplicit: 2,
		HeartbeatIntervalSeconds: 0.25, HeartbeatTimeoutSeconds: 1, RetryDelaySeconds: 0.3,
		Blackholes: 1, DetectionSeconds: []float64{1.1}, ReconnectSeconds: []float64{0.4}, UpAtEnd: true,
		GoroutinesStart: 3, GoroutinesEnd: 8, HeapStartBytes: 1 << 20, HeapEndBytes: 9 << 20,
		HeapLoadedStartBytes: 7 << 20, HeapLoadedEndBytes: 15 << 20,
	}
	if v := good.Check(); len(v) != 0 {
		t.Fatalf("a run at its limits: %v, want no violation", v)
	}
	for _, tc := range []struct {
		name   string
		change func(*Report)
		want   string
	}{
		{"panic", func(r *Report) { r.Panics = 1 }, "panics: 1, want 0 []"},
		{"lost", func(r *Report) { r.RequestsOK, r.RequestsLost, r.LostBy = 7, 1, map[string]int{"hang": 1} },
			"requests lost: 1 of 10, want 0 (by reason: hang 1)"},
		{"miscount", func(r *Report) { r.RequestsSent = 11 }, "requests counted: 10 ok + failed + lost, but 11 sent"},
		{"undetected blackhole", func(r *Report) { r.BlackholesUndetected = []float64{12.25} }, "blackhole at 12.2s: not detected"},
		{"late detection", func(r *Report) { r.DetectionSeconds, r.MaxDetectionSeconds = []float64{1.3}, 1.3 },
			"blackholes detected late: 1 of 1 over 1.25s, the slowest after 1.300s"},
		{"late reconnect", func(r *Report) { r.ReconnectSeconds, r.MaxReconnectSeconds = []float64{0.4, 1.5}, 1.5 },
			"reconnects late: 1 of 2 over 1.30s, the slowest after 1.500s"},
		{"down at the end", func(r *Report) { r.UpAtEnd = false }, "tunnel not AUTHENTICATED after the last fault was lifted"},
		{"goroutines", func(r *Report) { r.GoroutinesEnd = 9 }, "goroutines: 9 at the end, 3 at the start, want at most 5 more"},
		{"heap", func(r *Report) { r.HeapEndBytes = 9<<20 + 1 }, "heap: 9.0 MiB at the end, 1.0 MiB at the start, want at most 8.0 MiB more"},
		{"heap while up", func(r *Report) { r.HeapLoadedEndBytes = 16 << 20 },
			"heap with everything up: 16.0 MiB after the load, 7.0 MiB before, want at most 8.0 MiB more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.change(&r)
			if v := r.Check(); len(v) != 1 || v[0] != tc.want {
				t.Fatalf("violations %q, want [%q]", v, tc.want)
			}
		})
	}
}
