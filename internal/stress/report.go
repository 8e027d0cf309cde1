package stress

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// The allowances of the expectations.
const (
	// goroutineAllowance: after everything is stopped, at most this many
	// goroutines more than before anything was started.
	goroutineAllowance = 5
	// heapAllowance: the live heap (after a GC) may end at most this much
	// above where it began, both with nothing started and with everything
	// up and idle. It covers what stays allocated once used (package
	// state, sync.Pools, connection buffers) and GC timing; a leak of even
	// a few hundred bytes per request outgrows it within a 300 s run.
	heapAllowance = 8 << 20
	// reconnectAllowance: the tunnel is AUTHENTICATED again at most
	// RetryDelay plus this after the relay can be reached again.
	reconnectAllowance = time.Second
)

// Report is what a run came to. Durations are in seconds.
type Report struct {
	Failures                 Level   `json:"failures"`
	DurationSeconds          float64 `json:"duration_seconds"`
	ElapsedSeconds           float64 `json:"elapsed_seconds"` // load and faults, to the last request counted
	Seed                     int64   `json:"seed"`
	Concurrency              int     `json:"concurrency"`
	Connections              int     `json:"connections"` // each on a path of its own
	HeartbeatIntervalSeconds float64 `json:"heartbeat_interval_seconds"`
	HeartbeatTimeoutSeconds  float64 `json:"heartbeat_timeout_seconds"`
	RetryDelaySeconds        float64 `json:"retry_delay_seconds"`

	// sent = ok + failed_explicit + lost.
	RequestsSent           int `json:"requests_sent"`
	RequestsOK             int `json:"requests_ok"`
	RequestsFailedExplicit int `json:"requests_failed_explicit"` // 502/503/504 with the relay's JSON error, or aborted mid-stream
	RequestsLost           int `json:"requests_lost"`            // no answer, a hang, a truncated or corrupt body, an unexpected status
	// RequestsOKPercent is ok / sent: with several connections, how much of
	// the load one path that works carries through the faults of another.
	RequestsOKPercent float64 `json:"requests_ok_percent"`
	// RequestsAbortedMidstream are the explicit failures whose 200 was
	// already out when the tunnel went: the relay cut the public connection.
	RequestsAbortedMidstream int            `json:"requests_aborted_midstream"`
	FailedBy                 map[string]int `json:"failed_by"`
	LostBy                   map[string]int `json:"lost_by"`
	LostExamples             []string       `json:"lost_examples"`

	Faults          map[string]int `json:"faults"`      // injected, by kind
	PathFaults      []int          `json:"path_faults"` // injected on each path; a relay restart is on none alone
	Reconnects      int            `json:"reconnects"`
	FailureTypes    map[string]int `json:"failure_types"` // the tunnel's own count
	StaleDetections int            `json:"stale_detections"`
	// Blackholes counts those that began while the tunnel was up; each
	// should be caught as a stale connection.
	Blackholes           int       `json:"blackholes"`
	BlackholesUndetected []float64 `json:"blackholes_undetected"` // when they began, from the start of the load
	DetectionSeconds     []float64 `json:"detection_seconds"`     // from each blackhole's start to the stale connection
	MaxDetectionSeconds  float64   `json:"max_detection_seconds"`
	ReconnectSeconds     []float64 `json:"reconnect_seconds"` // from the relay reachable again (or the breaker's trial) to AUTHENTICATED
	MaxReconnectSeconds  float64   `json:"max_reconnect_seconds"`
	BreakerOpenings      int       `json:"breaker_openings"`
	UpAtEnd              bool      `json:"up_at_end"`
	NotBack              []string  `json:"not_back"`

	// Start: before anything was started; loaded: everything up and idle,
	// before the load and after it; end: everything stopped.
	GoroutinesStart       int    `json:"goroutines_start"`
	GoroutinesLoadedStart int    `json:"goroutines_loaded_start"`
	GoroutinesLoadedEnd   int    `json:"goroutines_loaded_end"`
	GoroutinesEnd         int    `json:"goroutines_end"`
	HeapStartBytes        uint64 `json:"heap_start_bytes"`
	HeapLoadedStartBytes  uint64 `json:"heap_loaded_start_bytes"`
	HeapLoadedEndBytes    uint64 `json:"heap_loaded_end_bytes"`
	HeapEndBytes          uint64 `json:"heap_end_bytes"`

	Panics      int      `json:"panics"` // recovered in the run's goroutines and callbacks, plus ActorPanics
	ActorPanics []string `json:"actor_panics"`
	StopErrors  []string `json:"stop_errors"`

	Violations []string `json:"violations"` // the expectations not met, each with its figure
}

// Check lists the expectations the run did not meet, each with its figure,
// and stores them in Violations:
//   - no panic;
//   - no request lost (and sent = ok + failed + lost);
//   - every blackhole caught within the heartbeat timeout plus one interval;
//   - every reconnect within RetryDelay + 1 s of the relay being reachable
//     again on the connection's path (of the breaker's trial while it was
//     open), and every connection up at the end;
//   - at most 5 goroutines more at the end than at the start;
//   - the heap at most 8 MiB above its start, at the end and between the
//     idle moments before and after the load.
func (r *Report) Check() []string {
	v := []string{}
	add := func(format string, args ...any) { v = append(v, fmt.Sprintf(format, args...)) }
	if r.Panics > 0 {
		add("panics: %d, want 0 %v", r.Panics, r.ActorPanics)
	}
	if r.RequestsLost > 0 {
		add("requests lost: %d of %d, want 0 (by reason: %s)", r.RequestsLost, r.RequestsSent, counts(r.LostBy))
	}
	if sum := r.RequestsOK + r.RequestsFailedExplicit + r.RequestsLost; sum != r.RequestsSent {
		add("requests counted: %d ok + failed + lost, but %d sent", sum, r.RequestsSent)
	}
	detectBound := r.HeartbeatTimeoutSeconds + r.HeartbeatIntervalSeconds
	for _, at := range r.BlackholesUndetected {
		add("blackhole at %.1fs: not detected", at)
	}
	if late := above(r.DetectionSeconds, detectBound); late > 0 {
		add("blackholes detected late: %d of %d over %.2fs, the slowest after %.3fs", late, r.Blackholes, detectBound, r.MaxDetectionSeconds)
	}
	reconnectBound := r.RetryDelaySeconds + reconnectAllowance.Seconds()
	if late := above(r.ReconnectSeconds, reconnectBound); late > 0 {
		add("reconnects late: %d of %d over %.2fs, the slowest after %.3fs", late, len(r.ReconnectSeconds), reconnectBound, r.MaxReconnectSeconds)
	}
	for _, s := range r.NotBack {
		add("%s", s)
	}
	if !r.UpAtEnd {
		if r.Connections > 1 {
			add("not every connection AUTHENTICATED after the last fault was lifted")
		} else {
			add("tunnel not AUTHENTICATED after the last fault was lifted")
		}
	}
	if r.GoroutinesEnd > r.GoroutinesStart+goroutineAllowance {
		add("goroutines: %d at the end, %d at the start, want at most %d more", r.GoroutinesEnd, r.GoroutinesStart, goroutineAllowance)
	}
	if r.HeapEndBytes > r.HeapStartBytes+heapAllowance {
		add("heap: %s at the end, %s at the start, want at most %s more", mib(r.HeapEndBytes), mib(r.HeapStartBytes), mib(heapAllowance))
	}
	if r.HeapLoadedEndBytes > r.HeapLoadedStartBytes+heapAllowance {
		add("heap with everything up: %s after the load, %s before, want at most %s more",
			mib(r.HeapLoadedEndBytes), mib(r.HeapLoadedStartBytes), mib(heapAllowance))
	}
	for _, s := range r.StopErrors {
		add("stopping: %s", s)
	}
	r.Violations = v
	return v
}

func above(xs []float64, bound float64) int {
	n := 0
	for _, x := range xs {
		if x > bound {
			n++
		}
	}
	return n
}

func counts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// byPath spells per-path counts as "0: 7, 1: 6".
func byPath(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprintf("%d: %d", i, n)
	}
	return strings.Join(parts, ", ")
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// WriteSummary writes the report for a reader, one figure a line.
func (r *Report) WriteSummary(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("tunnel stress: failures=%s, %.0fs (ran %.1fs), seed %d, %d clients, connections %d", r.Failures, r.DurationSeconds,
		r.ElapsedSeconds, r.Seed, r.Concurrency, r.Connections)
	p("  heartbeat every %.2fs, stale after %.2fs, retry after %.2fs", r.HeartbeatIntervalSeconds, r.HeartbeatTimeoutSeconds, r.RetryDelaySeconds)
	ok := fmt.Sprint(r.RequestsOK)
	if r.Connections > 1 {
		ok += fmt.Sprintf(" (%.2f%%)", r.RequestsOKPercent)
	}
	p("requests     sent %d: ok %s, failed explicitly %d (%s), lost %d (%s)", r.RequestsSent, ok,
		r.RequestsFailedExplicit, counts(r.FailedBy), r.RequestsLost, counts(r.LostBy))
	for _, e := range r.LostExamples {
		p("  lost: %s", e)
	}
	p("faults       %s", counts(r.Faults))
	if r.Connections > 1 {
		p("  by path    %s (no relay restart: it would cut every path)", byPath(r.PathFaults))
	}
	p("tunnel       %d reconnects, failures %s, %d stale connections, breaker opened %d times, up at the end: %v",
		r.Reconnects, counts(r.FailureTypes), r.StaleDetections, r.BreakerOpenings, r.UpAtEnd)
	p("blackholes   %d while up, caught after at most %.3fs (bound %.2fs): %s", r.Blackholes, r.MaxDetectionSeconds,
		r.HeartbeatTimeoutSeconds+r.HeartbeatIntervalSeconds, seconds(r.DetectionSeconds))
	p("reconnects   after at most %.3fs (bound %.2fs): %s", r.MaxReconnectSeconds,
		r.RetryDelaySeconds+reconnectAllowance.Seconds(), seconds(r.ReconnectSeconds))
	p("goroutines   %d at the start, %d / %d up before / after the load, %d at the end",
		r.GoroutinesStart, r.GoroutinesLoadedStart, r.GoroutinesLoadedEnd, r.GoroutinesEnd)
	p("heap         %s at the start, %s / %s up before / after the load, %s at the end",
		mib(r.HeapStartBytes), mib(r.HeapLoadedStartBytes), mib(r.HeapLoadedEndBytes), mib(r.HeapEndBytes))
	p("panics       %d", r.Panics)
	if len(r.Violations) == 0 {
		p("every expectation met")
		return
	}
	for _, v := range r.Violations {
		p("FAILED: %s", v)
	}
}

func seconds(xs []float64) string {
	if len(xs) == 0 {
		return "none"
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}
