package stress

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/messages"
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

// TestShortRunTwoConnections is a 12 s run at High with two connections,
// each through its own fault proxy: faults hit one path at a time, so the
// tunnel keeps a path that works, and no request is lost.
func TestShortRunTwoConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("a 12 s run")
	}
	cfg := DefaultConfig()
	cfg.Failures = High
	cfg.Duration = 12 * time.Second
	cfg.Seed = 4 // its first two faults hit the two paths
	cfg.Connections = 2
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.RequestsLost > 0 || rep.Panics > 0 || rep.GoroutinesEnd > rep.GoroutinesStart+goroutineAllowance || !rep.UpAtEnd {
		t.Errorf("lost %d %v %v, panics %d %v, goroutines %d at the start and %d at the end, up at the end %v",
			rep.RequestsLost, rep.LostBy, rep.LostExamples, rep.Panics, rep.ActorPanics, rep.GoroutinesStart, rep.GoroutinesEnd, rep.UpAtEnd)
	}
	if rep.Connections != 2 || len(rep.PathFaults) != 2 || rep.PathFaults[0] == 0 || rep.PathFaults[1] == 0 {
		t.Errorf("%d connections, faults by path %v; want 2, and faults on each", rep.Connections, rep.PathFaults)
	}
	if rep.RequestsSent != rep.RequestsOK+rep.RequestsFailedExplicit+rep.RequestsLost || rep.RequestsOK == 0 ||
		rep.RequestsOKPercent != 100*float64(rep.RequestsOK)/float64(rep.RequestsSent) {
		t.Errorf("sent %d, ok %d (%.1f%%), failed %d, lost %d", rep.RequestsSent, rep.RequestsOK, rep.RequestsOKPercent,
			rep.RequestsFailedExplicit, rep.RequestsLost)
	}
	if len(rep.StopErrors) > 0 {
		t.Errorf("stop errors %v", rep.StopErrors)
	}
}

// The monitor follows each connection: the tunnel counts as back only when
// every connection is, and a connection's recovery is measured from the end
// of the fault on its own path.
func TestMonitorFollowsEachConnection(t *testing.T) {
	m := newMonitor(2)
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	change := func(conn int, s messages.State, d time.Duration) {
		m.stateChanged(messages.StateChanged{Connection: conn, State: s, At: at(d)})
	}
	isUp := func() bool {
		select {
		case <-m.upSignal():
			return true
		default:
			return false
		}
	}
	change(0, messages.Authenticated, 0)
	if isUp() {
		t.Fatal("up with one connection of two")
	}
	change(1, messages.Authenticated, time.Second)
	if !isUp() {
		t.Fatal("not up with both connections")
	}
	// Path 1 is cut off from 2 s to 5 s; connection 1 is back at 5.5 s.
	change(1, messages.Connecting, 2*time.Second)
	if isUp() {
		t.Fatal("up while connection 1 is down")
	}
	m.reachable(at(5*time.Second), 1)
	m.reachable(at(9*time.Second), 0) // another path's fault: not connection 1's business
	change(1, messages.Authenticated, 5500*time.Millisecond)
	if !isUp() {
		t.Fatal("not up once connection 1 is back")
	}
	snap := m.snapshot()
	if snap.reconnects != 1 || len(snap.recoveries) != 1 || snap.recoveries[0] != 500*time.Millisecond {
		t.Errorf("reconnects %d, recoveries %v; want 1 and [500ms]", snap.reconnects, snap.recoveries)
	}
	if !m.authenticatedAt(0, at(3*time.Second)) || m.authenticatedAt(1, at(3*time.Second)) {
		t.Error("at 3 s connection 0 was up and connection 1 down")
	}
	if got := m.current(); got != "AUTHENTICATED/AUTHENTICATED" {
		t.Errorf("current() = %q", got)
	}
}

func TestSummaryWithTwoConnections(t *testing.T) {
	r := Report{Connections: 2, RequestsSent: 200, RequestsOK: 199, RequestsFailedExplicit: 1, RequestsOKPercent: 99.5,
		PathFaults: []int{4, 3}, UpAtEnd: true}
	var b strings.Builder
	r.WriteSummary(&b)
	for _, want := range []string{", connections 2\n", "sent 200: ok 199 (99.50%), failed explicitly 1", "by path    0: 4, 1: 3"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	r.UpAtEnd = false
	if v := r.Check(); len(v) != 1 || v[0] != "not every connection AUTHENTICATED after the last fault was lifted" {
		t.Errorf("violations %q", v)
	}
	one := Report{Connections: 1, RequestsSent: 2, RequestsOK: 2, RequestsOKPercent: 100, UpAtEnd: true}
	b.Reset()
	one.WriteSummary(&b)
	if strings.Contains(b.String(), "%") || strings.Contains(b.String(), "by path") {
		t.Errorf("one connection's summary changed:\n%s", b.String())
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
