package relay

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// sampleStart is the time of the first entry of the sampler tests.
var sampleStart = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// newTestSampler is a sampler of perSecond lines per message over JSON.
func newTestSampler(perSecond int) *sampler {
	return &sampler{inner: &logrus.JSONFormatter{}, perSecond: perSecond, windows: map[string]*window{}}
}

// sampleEntry is an entry of message msg at level, logged at offset from
// sampleStart.
func sampleEntry(msg string, level logrus.Level, offset time.Duration) *logrus.Entry {
	return &logrus.Entry{Message: msg, Level: level, Time: sampleStart.Add(offset), Data: logrus.Fields{"k": "v"}}
}

// decodeLine is the JSON object of one formatted line.
func decodeLine(t *testing.T, line []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("line %q is not JSON: %v", line, err)
	}
	return m
}

// sampleStep is one entry given to a sampler and what must come out: no
// line when out is false, else a line whose "suppressed" field is
// suppressed (absent when 0).
type sampleStep struct {
	msg        string
	level      logrus.Level
	offset     time.Duration
	out        bool
	suppressed int
}

// runSampleSteps formats steps in order on a fresh sampler of perSecond.
func runSampleSteps(t *testing.T, perSecond int, steps []sampleStep) {
	t.Helper()
	s := newTestSampler(perSecond)
	for i, st := range steps {
		e := sampleEntry(st.msg, st.level, st.offset)
		line, err := s.Format(e)
		if err != nil {
			t.Fatalf("step %d: Format: %v", i, err)
		}
		if !st.out {
			if len(line) != 0 {
				t.Errorf("step %d (%q %v at +%v): got line %q, want it held back", i, st.msg, st.level, st.offset, line)
			}
			continue
		}
		if len(line) == 0 {
			t.Errorf("step %d (%q %v at +%v): held back, want a line", i, st.msg, st.level, st.offset)
			continue
		}
		m := decodeLine(t, line)
		if m["msg"] != st.msg || m["k"] != "v" {
			t.Errorf("step %d: line %q lost its message or fields", i, line)
		}
		got, has := m["suppressed"]
		switch {
		case st.suppressed == 0 && has:
			t.Errorf("step %d: line %q has suppressed=%v, want none", i, line, got)
		case st.suppressed > 0 && got != float64(st.suppressed):
			t.Errorf("step %d: line %q has suppressed=%v, want %d", i, line, got, st.suppressed)
		}
		if _, ok := e.Data["suppressed"]; ok {
			t.Errorf("step %d: Format added suppressed to the caller's entry", i)
		}
	}
}

// TestSamplerLimitsLinesPerMessagePerSecond proves the sampler's contract:
// within one second at most perSecond lines of a message come out, the rest
// format to nothing; each message has its own count; the first line of a
// later second carries the count held back in "suppressed" (once); errors
// (and worse) always pass without using the budget; warnings and lesser
// levels are all sampled.
func TestSamplerLimitsLinesPerMessagePerSecond(t *testing.T) {
	const warn, info, debug, errL = logrus.WarnLevel, logrus.InfoLevel, logrus.DebugLevel, logrus.ErrorLevel
	ms := time.Millisecond
	tests := []struct {
		name      string
		perSecond int
		steps     []sampleStep
	}{
		{"at most three in a second", 3, []sampleStep{
			{"a", warn, 0, true, 0},
			{"a", warn, 100 * ms, true, 0},
			{"a", warn, 200 * ms, true, 0},
			{"a", warn, 300 * ms, false, 0},
			{"a", warn, 999 * ms, false, 0},
		}},
		{"same instant", 3, []sampleStep{
			{"a", warn, 0, true, 0},
			{"a", warn, 0, true, 0},
			{"a", warn, 0, true, 0},
			{"a", warn, 0, false, 0},
		}},
		{"messages counted apart", 3, []sampleStep{
			{"a", warn, 0, true, 0},
			{"b", warn, 1 * ms, true, 0},
			{"a", warn, 2 * ms, true, 0},
			{"b", warn, 3 * ms, true, 0},
			{"a", warn, 4 * ms, true, 0},
			{"a", warn, 5 * ms, false, 0},
			{"b", warn, 6 * ms, true, 0},
			{"b", warn, 7 * ms, false, 0},
			{"c", warn, 8 * ms, true, 0},
		}},
		{"next second says how many were held back, once", 3, []sampleStep{
			{"a", warn, 0, true, 0},
			{"a", warn, 1 * ms, true, 0},
			{"a", warn, 2 * ms, true, 0},
			{"a", warn, 3 * ms, false, 0},
			{"a", warn, 4 * ms, false, 0},
			{"a", warn, time.Second, true, 2},
			{"a", warn, time.Second + 1*ms, true, 0},
			{"a", warn, time.Second + 2*ms, true, 0},
			{"a", warn, time.Second + 3*ms, false, 0},
			{"a", warn, 5 * time.Second, true, 1},
		}},
		{"the window ends one second after its first line", 2, []sampleStep{
			{"a", warn, 500 * ms, true, 0},
			{"a", warn, 600 * ms, true, 0},
			{"a", warn, 1499 * ms, false, 0},
			{"a", warn, 1500 * ms, true, 1},
		}},
		{"a long pause keeps the count held back", 1, []sampleStep{
			{"a", warn, 0, true, 0},
			{"a", warn, 1 * ms, false, 0},
			{"a", warn, 2 * ms, false, 0},
			{"a", warn, 3 * ms, false, 0},
			{"a", warn, time.Hour, true, 3},
		}},
		{"counts per message are apart", 1, []sampleStep{
			{"a", warn, 0, true, 0},
			{"a", warn, 1 * ms, false, 0},
			{"b", warn, 2 * ms, true, 0},
			{"b", warn, 3 * ms, false, 0},
			{"b", warn, 4 * ms, false, 0},
			{"a", warn, time.Second, true, 1},
			{"b", warn, 2 * time.Second, true, 2},
		}},
		{"errors always pass and use no budget", 2, []sampleStep{
			{"a", errL, 0, true, 0},
			{"a", errL, 0, true, 0},
			{"a", errL, 0, true, 0},
			{"a", warn, 0, true, 0},
			{"a", warn, 0, true, 0},
			{"a", warn, 0, false, 0},
			{"a", errL, 0, true, 0},
			{"a", logrus.FatalLevel, 0, true, 0},
			{"a", logrus.PanicLevel, 0, true, 0},
			{"a", warn, 0, false, 0},
			{"a", warn, time.Second, true, 2},
		}},
		{"info and debug are sampled too", 1, []sampleStep{
			{"i", info, 0, true, 0},
			{"i", info, 1 * ms, false, 0},
			{"d", debug, 0, true, 0},
			{"d", debug, 1 * ms, false, 0},
			{"t", logrus.TraceLevel, 0, true, 0},
			{"t", logrus.TraceLevel, 1 * ms, false, 0},
		}},
		{"the count is per message, not per level", 2, []sampleStep{
			{"m", warn, 0, true, 0},
			{"m", info, 1 * ms, true, 0},
			{"m", debug, 2 * ms, false, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSampleSteps(t, tt.perSecond, tt.steps) })
	}
}

// TestSamplerOutOfOrderEntriesStayWithinTheLimit states the limit for
// entries that reach Format out of time order, as they do when goroutines
// log at once (logrus stamps Time before it formats, outside any lock): an
// entry a little older than the window's first line belongs to that second
// and must not open a fresh window.
func TestSamplerOutOfOrderEntriesStayWithinTheLimit(t *testing.T) {
	ms := time.Millisecond
	runSampleSteps(t, 3, []sampleStep{
		{"a", logrus.WarnLevel, 10 * ms, true, 0},
		{"a", logrus.WarnLevel, 11 * ms, true, 0},
		{"a", logrus.WarnLevel, 12 * ms, true, 0},
		{"a", logrus.WarnLevel, 9 * ms, false, 0},
		{"a", logrus.WarnLevel, 13 * ms, false, 0},
		{"a", logrus.WarnLevel, 14 * ms, false, 0},
	})
}

// TestSamplerConcurrentFormat proves, under -race, that concurrent Format
// calls share one count: of many lines of one message in one instant,
// exactly perSecond come out.
func TestSamplerConcurrentFormat(t *testing.T) {
	const perSecond, goroutines, each = 5, 8, 50
	s := newTestSampler(perSecond)
	var mu sync.Mutex
	out := 0
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				line, err := s.Format(sampleEntry("flood", logrus.WarnLevel, 0))
				if err != nil {
					t.Errorf("Format: %v", err)
					return
				}
				if len(line) > 0 {
					mu.Lock()
					out++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if out != perSecond {
		t.Errorf("%d lines came out, want %d", out, perSecond)
	}
	line, err := s.Format(sampleEntry("flood", logrus.WarnLevel, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeLine(t, line)["suppressed"]; got != float64(goroutines*each-perSecond) {
		t.Errorf("suppressed = %v, want %d", got, goroutines*each-perSecond)
	}
}

// TestSampledNilLoggerDiscards proves that sampled(nil, n) gives a working
// logger that writes nowhere.
func TestSampledNilLoggerDiscards(t *testing.T) {
	for _, perSecond := range []int{0, 10} {
		l := sampled(nil, perSecond)
		if l == nil {
			t.Fatalf("sampled(nil, %d) = nil", perSecond)
		}
		if l.Out != io.Discard {
			t.Errorf("sampled(nil, %d) writes to %T, want io.Discard", perSecond, l.Out)
		}
		l.Error("nothing to see") // must not panic
	}
}

// TestSampledKeepsTheLoggersSettings proves that sampled writes where l
// writes, at l's level, with l's hooks and caller setting, and leaves l as
// it was; with perSecond 0 it keeps l's formatter itself.
func TestSampledKeepsTheLoggersSettings(t *testing.T) {
	for _, perSecond := range []int{0, 3} {
		l := logrus.New()
		var buf bytes.Buffer
		f := &logrus.JSONFormatter{}
		l.SetOutput(&buf)
		l.SetFormatter(f)
		l.SetLevel(logrus.WarnLevel)
		l.ReportCaller = true
		out := sampled(l, perSecond)
		if out == l {
			t.Fatalf("sampled(l, %d) returned l itself", perSecond)
		}
		if out.Out != &buf || out.GetLevel() != logrus.WarnLevel || !out.ReportCaller {
			t.Errorf("sampled(l, %d): out %v, level %v, caller %v; want l's", perSecond, out.Out, out.GetLevel(), out.ReportCaller)
		}
		if l.Formatter != f {
			t.Errorf("sampled(l, %d) changed l's formatter to %T", perSecond, l.Formatter)
		}
		s, isSampler := out.Formatter.(*sampler)
		switch {
		case perSecond == 0 && out.Formatter != f:
			t.Errorf("sampled(l, 0) formatter = %T, want l's own", out.Formatter)
		case perSecond > 0 && (!isSampler || s.inner != f || s.perSecond != perSecond):
			t.Errorf("sampled(l, %d) formatter = %#v, want a sampler of l's formatter", perSecond, out.Formatter)
		}
		out.Info("below the level")
		if buf.Len() != 0 {
			t.Errorf("sampled(l, %d) wrote below l's level: %q", perSecond, buf.String())
		}
	}
}

// TestSampledZeroWritesEveryLine proves that sampled(l, 0) samples nothing:
// every line of one message in one instant is written.
func TestSampledZeroWritesEveryLine(t *testing.T) {
	l := logrus.New()
	var buf bytes.Buffer
	l.SetOutput(&buf)
	l.SetFormatter(&logrus.JSONFormatter{})
	out := sampled(l, 0)
	for range 20 {
		out.WithTime(sampleStart).Warn("same")
	}
	if n := strings.Count(buf.String(), "\n"); n != 20 {
		t.Errorf("%d lines written, want 20", n)
	}
}

// TestSampledLoggerEndToEnd proves the sampled logger through logrus
// itself, with entry times pinned by WithTime: perSecond lines of a message
// in one second are written and nothing for the rest, errors all, and the
// next second's first line carries the count.
func TestSampledLoggerEndToEnd(t *testing.T) {
	l := logrus.New()
	var buf bytes.Buffer
	l.SetOutput(&buf)
	l.SetFormatter(&logrus.JSONFormatter{})
	out := sampled(l, 3)
	for range 20 {
		out.WithTime(sampleStart).WithField("n", 1).Warn("same")
	}
	for range 5 {
		out.WithTime(sampleStart).Error("same")
	}
	out.WithTime(sampleStart.Add(time.Second)).Warn("same")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3+5+1 {
		t.Fatalf("%d lines written, want 9:\n%s", len(lines), buf.String())
	}
	last := decodeLine(t, []byte(lines[len(lines)-1]))
	if last["suppressed"] != float64(17) {
		t.Errorf("last line %q: suppressed = %v, want 17", lines[len(lines)-1], last["suppressed"])
	}
	for _, line := range lines[:len(lines)-1] {
		if _, has := decodeLine(t, []byte(line))["suppressed"]; has {
			t.Errorf("line %q has a suppressed field", line)
		}
	}
}
