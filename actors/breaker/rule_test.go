package breaker_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/breaker"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// t0 is the start of every rule test's timeline; steps are offsets from it.
var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// event is one call a step makes on the Rule.
type event int

const (
	fail    event = iota // OnFailure(at, false): a failed attempt
	drop                 // OnFailure(at, true): an authenticated connection dropped
	succeed              // OnSuccess(at)
	trial                // StartTrial(at)
)

func (e event) String() string { return [...]string{"fail", "drop", "succeed", "trial"}[e] }

// step is one call and what the Rule looks like after it.
type step struct {
	at time.Duration // offset from t0
	ev event
	// changed is the call's answer: Verdict.Tripped for fail and drop,
	// OnSuccess's closed, StartTrial's result.
	changed  bool
	state    messages.BreakerState
	count    int
	openings int
	// until is the offset of OpenUntil from t0, checked only when open.
	until time.Duration
}

// play makes each step's call on r and checks the Rule after it.
func play(t *testing.T, r *breaker.Rule, steps []step) {
	t.Helper()
	for i, s := range steps {
		at := t0.Add(s.at)
		var changed bool
		switch s.ev {
		case fail, drop:
			v := r.OnFailure(at, s.ev == drop)
			changed = v.Tripped
			if v.Open != (r.State() == messages.BreakerOpen) || v.ConsecutiveFailures != r.ConsecutiveFailures() ||
				!v.OpenedAt.Equal(r.OpenedAt()) || !v.OpenUntil.Equal(r.OpenUntil()) {
				t.Fatalf("step %d (%v at %v): verdict %+v disagrees with the rule", i, s.ev, s.at, v)
			}
		case succeed:
			changed = r.OnSuccess(at)
		case trial:
			changed = r.StartTrial(at)
		}
		if changed != s.changed || r.State() != s.state || r.ConsecutiveFailures() != s.count || r.Openings() != s.openings {
			t.Fatalf("step %d (%v at %v): changed %v, %v, count %d, openings %d; want changed %v, %v, count %d, openings %d",
				i, s.ev, s.at, changed, r.State(), r.ConsecutiveFailures(), r.Openings(), s.changed, s.state, s.count, s.openings)
		}
		if open := r.State() == messages.BreakerOpen; open {
			if want := t0.Add(s.until); !r.OpenUntil().Equal(want) || !r.OpenedAt().Equal(want.Add(-r.Settings().Recovery)) {
				t.Fatalf("step %d (%v at %v): open %v until %v, want until t0+%v", i, s.ev, s.at, r.OpenedAt(), r.OpenUntil(), s.until)
			}
		} else if !r.OpenUntil().IsZero() || !r.OpenedAt().IsZero() {
			t.Fatalf("step %d (%v at %v): %v with OpenedAt %v OpenUntil %v, want both zero", i, s.ev, s.at, r.State(), r.OpenedAt(), r.OpenUntil())
		}
	}
}

const (
	closed   = messages.BreakerClosed
	open     = messages.BreakerOpen
	halfOpen = messages.BreakerHalfOpen
	ms       = time.Millisecond
	sec      = time.Second
)

// fiveFailures opens a default Rule at t0.
var fiveFailures = []step{
	{ev: fail, state: closed, count: 1},
	{ev: fail, state: closed, count: 2},
	{ev: fail, state: closed, count: 3},
	{ev: fail, state: closed, count: 4},
	{ev: fail, changed: true, state: open, count: 5, openings: 1, until: 300 * sec},
}

func then(steps ...step) []step { return append(append([]step{}, fiveFailures...), steps...) }

func TestRule(t *testing.T) {
	tests := []struct {
		name     string
		settings breaker.Settings
		steps    []step
	}{
		{"opens at exactly the 5th consecutive failure", breaker.Settings{}, fiveFailures},
		{"failures spread over time still count", breaker.Settings{}, []step{
			{at: 0, ev: fail, state: closed, count: 1},
			{at: time.Hour, ev: fail, state: closed, count: 2},
			{at: 2 * time.Hour, ev: drop, state: closed, count: 3},
			{at: 3 * time.Hour, ev: fail, state: closed, count: 4},
			{at: 4 * time.Hour, ev: fail, changed: true, state: open, count: 5, openings: 1, until: 4*time.Hour + 300*sec},
		}},
		{"a success resets the count", breaker.Settings{}, []step{
			{ev: fail, state: closed, count: 1},
			{ev: fail, state: closed, count: 2},
			{ev: fail, state: closed, count: 3},
			{ev: fail, state: closed, count: 4},
			{at: sec, ev: succeed, state: closed},
			{at: time.Minute, ev: fail, state: closed, count: 1},
			{at: time.Minute, ev: fail, state: closed, count: 2},
		}},
		{"a success while closed reports no change", breaker.Settings{}, []step{
			{ev: succeed, state: closed},
			{ev: succeed, state: closed},
		}},
		{"failures while open keep it open without another opening", breaker.Settings{}, then(
			step{at: sec, ev: fail, state: open, count: 6, openings: 1, until: 300 * sec},
			step{at: 299 * sec, ev: drop, state: open, count: 7, openings: 1, until: 300 * sec},
		)},
		{"the trial is not due before the recovery time is over", breaker.Settings{}, then(
			step{at: 0, ev: trial, state: open, count: 5, openings: 1, until: 300 * sec},
			step{at: 300*sec - time.Nanosecond, ev: trial, state: open, count: 5, openings: 1, until: 300 * sec},
		)},
		{"half-open at exactly the recovery time, count kept", breaker.Settings{}, then(
			step{at: 300 * sec, ev: trial, changed: true, state: halfOpen, count: 5, openings: 1},
		)},
		{"half-open once: a second trial call changes nothing", breaker.Settings{}, then(
			step{at: 300 * sec, ev: trial, changed: true, state: halfOpen, count: 5, openings: 1},
			step{at: 301 * sec, ev: trial, state: halfOpen, count: 5, openings: 1},
		)},
		{"an open breaker stays open past its recovery time until the trial starts", breaker.Settings{}, then(
			step{at: 400 * sec, ev: fail, state: open, count: 6, openings: 1, until: 300 * sec},
			step{at: 400 * sec, ev: trial, changed: true, state: halfOpen, count: 6, openings: 1},
		)},
		{"trial success closes", breaker.Settings{}, then(
			step{at: 300 * sec, ev: trial, changed: true, state: halfOpen, count: 5, openings: 1},
			step{at: 301 * sec, ev: succeed, changed: true, state: closed, openings: 1},
			step{at: 400 * sec, ev: drop, state: closed, count: 1, openings: 1},
		)},
		{"trial failure reopens for another full recovery time", breaker.Settings{}, then(
			step{at: 300 * sec, ev: trial, changed: true, state: halfOpen, count: 5, openings: 1},
			step{at: 301 * sec, ev: fail, changed: true, state: open, count: 6, openings: 2, until: 601 * sec},
			step{at: 601*sec - time.Nanosecond, ev: trial, state: open, count: 6, openings: 2, until: 601 * sec},
			step{at: 601 * sec, ev: trial, changed: true, state: halfOpen, count: 6, openings: 2},
			step{at: 602 * sec, ev: drop, changed: true, state: open, count: 7, openings: 3, until: 902 * sec},
		)},
		{"a success while open closes at once", breaker.Settings{}, then(
			step{at: 10 * sec, ev: succeed, changed: true, state: closed, openings: 1},
			step{at: 10 * sec, ev: trial, state: closed, openings: 1},
		)},
		{"openings counted across cycles", breaker.Settings{Threshold: 1}, []step{
			{at: 0, ev: fail, changed: true, state: open, count: 1, openings: 1, until: 300 * sec},
			{at: 300 * sec, ev: trial, changed: true, state: halfOpen, count: 1, openings: 1},
			{at: 300 * sec, ev: succeed, changed: true, state: closed, openings: 1},
			{at: 400 * sec, ev: fail, changed: true, state: open, count: 1, openings: 2, until: 700 * sec},
			{at: 700 * sec, ev: trial, changed: true, state: halfOpen, count: 1, openings: 2},
			{at: 700 * sec, ev: fail, changed: true, state: open, count: 2, openings: 3, until: 1000 * sec},
		}},
		{"a custom recovery time", breaker.Settings{Threshold: 2, Recovery: time.Minute}, []step{
			{at: 0, ev: fail, state: closed, count: 1},
			{at: sec, ev: fail, changed: true, state: open, count: 2, openings: 1, until: 61 * sec},
			{at: 61*sec - ms, ev: trial, state: open, count: 2, openings: 1, until: 61 * sec},
			{at: 61 * sec, ev: trial, changed: true, state: halfOpen, count: 2, openings: 1},
		}},
		{"the trial is not due on a closed breaker", breaker.Settings{}, []step{
			{at: time.Hour, ev: trial, state: closed},
		}},
		{"a flapping link trips the breaker", breaker.Settings{}, []step{
			{at: 0, ev: succeed, state: closed},
			{at: 1 * sec, ev: drop, state: closed, count: 1},
			{at: 2 * sec, ev: succeed, state: closed},
			{at: 3 * sec, ev: drop, state: closed, count: 2},
			{at: 4 * sec, ev: succeed, state: closed},
			{at: 5 * sec, ev: drop, state: closed, count: 3},
			{at: 6 * sec, ev: succeed, state: closed},
			{at: 7 * sec, ev: drop, state: closed, count: 4},
			{at: 8 * sec, ev: succeed, state: closed},
			{at: 9 * sec, ev: drop, changed: true, state: open, count: 5, openings: 1, until: 309 * sec},
		}},
		{"a flap after a trial success restores the count and reopens", breaker.Settings{}, then(
			step{at: 300 * sec, ev: trial, changed: true, state: halfOpen, count: 5, openings: 1},
			step{at: 301 * sec, ev: succeed, changed: true, state: closed, openings: 1},
			step{at: 310 * sec, ev: drop, changed: true, state: open, count: 6, openings: 2, until: 610 * sec},
		)},
		{"flap detection disabled by a negative window", breaker.Settings{FlapWindow: -1}, []step{
			{at: 0, ev: fail, state: closed, count: 1},
			{at: 0, ev: fail, state: closed, count: 2},
			{at: sec, ev: succeed, state: closed},
			{at: sec, ev: drop, state: closed, count: 1},
		}},
		{"a custom flap window", breaker.Settings{FlapWindow: time.Minute}, []step{
			{at: 0, ev: fail, state: closed, count: 1},
			{at: 0, ev: fail, state: closed, count: 2},
			{at: sec, ev: succeed, state: closed},
			{at: 60 * sec, ev: drop, state: closed, count: 3},
			{at: 61 * sec, ev: succeed, state: closed},
			{at: 121 * sec, ev: drop, state: closed, count: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := breaker.NewRule(tt.settings)
			play(t, &r, tt.steps)
		})
	}
}

func TestRuleDropAfterSuccess(t *testing.T) {
	tests := []struct {
		name  string
		after time.Duration
		ev    event
		want  int
	}{
		{"drop within the flap window restores the count", sec, drop, 4},
		{"drop at the success's instant", 0, drop, 4},
		{"drop just inside the window", 15*sec - time.Nanosecond, drop, 4},
		{"drop at the window's end is a new count", 15 * sec, drop, 1},
		{"drop 16s later is a new count", 16 * sec, drop, 1},
		{"failed attempt soon after a success is a new count", sec, fail, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r breaker.Rule
			play(t, &r, []step{
				{ev: fail, state: closed, count: 1},
				{ev: fail, state: closed, count: 2},
				{ev: fail, state: closed, count: 3},
				{at: 10 * sec, ev: succeed, state: closed},
				{at: 10*sec + tt.after, ev: tt.ev, state: closed, count: tt.want},
			})
		})
	}
}

// TestRuleDropWithoutSuccess: a drop with no success before it is a plain
// failure, even when the caller's time is the zero time.
func TestRuleDropWithoutSuccess(t *testing.T) {
	var r breaker.Rule
	for want := 1; want <= 3; want++ {
		if v := r.OnFailure(time.Time{}, true); v.ConsecutiveFailures != want || v.Open {
			t.Fatalf("drop %d: verdict %+v, want closed with count %d", want, v, want)
		}
	}
}

func TestRuleThresholds(t *testing.T) {
	for _, threshold := range []int{1, 2, 3, 5, 10} {
		t.Run(fmt.Sprintf("threshold %d", threshold), func(t *testing.T) {
			r := breaker.NewRule(breaker.Settings{Threshold: threshold})
			for n := 1; n <= threshold; n++ {
				at := t0.Add(time.Duration(n) * sec)
				v := r.OnFailure(at, false)
				if v.Open != (n == threshold) || v.Tripped != (n == threshold) || v.ConsecutiveFailures != n {
					t.Fatalf("failure %d: verdict %+v", n, v)
				}
			}
			v := r.OnFailure(t0.Add(time.Hour), false)
			if !v.Open || v.Tripped || r.Openings() != 1 || v.ConsecutiveFailures != threshold+1 {
				t.Fatalf("failure while open: verdict %+v, openings %d", v, r.Openings())
			}
		})
	}
}

func TestSettingsDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   breaker.Settings
		want breaker.Settings
	}{
		{"zero takes every default", breaker.Settings{}, breaker.Settings{Threshold: 5, Recovery: 300 * sec, FlapWindow: 15 * sec}},
		{"negative threshold and recovery take the default", breaker.Settings{Threshold: -1, Recovery: -sec}, breaker.Settings{Threshold: 5, Recovery: 300 * sec, FlapWindow: 15 * sec}},
		{"negative flap window is kept: disabled", breaker.Settings{FlapWindow: -1}, breaker.Settings{Threshold: 5, Recovery: 300 * sec, FlapWindow: -1}},
		{"set fields are kept", breaker.Settings{Threshold: 2, Recovery: sec, FlapWindow: ms}, breaker.Settings{Threshold: 2, Recovery: sec, FlapWindow: ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := breaker.NewRule(tt.in).Settings(); got != tt.want {
				t.Fatalf("NewRule(%+v).Settings() = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
	var zero breaker.Rule
	if got := zero.Settings(); got != tests[0].want {
		t.Fatalf("zero Rule settings %+v, want the defaults", got)
	}
	if zero.State() != closed || zero.ConsecutiveFailures() != 0 || zero.Openings() != 0 {
		t.Fatalf("zero Rule is %v with count %d, openings %d, want closed and zero", zero.State(), zero.ConsecutiveFailures(), zero.Openings())
	}
}

func TestConfigSettings(t *testing.T) {
	tests := []struct {
		name string
		cfg  breaker.Config
		want breaker.Settings
	}{
		{"default config", breaker.DefaultConfig(), breaker.Settings{Threshold: 5, Recovery: 300 * sec, FlapWindow: 15 * sec}},
		{"no flap window disables flap detection", breaker.Config{Threshold: 2, Recovery: sec}, breaker.Settings{Threshold: 2, Recovery: sec, FlapWindow: -1}},
		{"fields carried over", breaker.Config{Threshold: 3, Recovery: time.Minute, FlapWindow: 2 * sec}, breaker.Settings{Threshold: 3, Recovery: time.Minute, FlapWindow: 2 * sec}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.Settings(); got != tt.want {
				t.Fatalf("Settings() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRuleTrialDue(t *testing.T) {
	r := breaker.NewRule(breaker.Settings{Threshold: 1})
	if r.TrialDue(t0.Add(time.Hour)) {
		t.Fatal("trial due on a closed breaker")
	}
	r.OnFailure(t0, false)
	tests := []struct {
		after time.Duration
		want  bool
	}{{0, false}, {-time.Hour, false}, {300*sec - time.Nanosecond, false}, {300 * sec, true}, {time.Hour, true}}
	for _, tt := range tests {
		if got := r.TrialDue(t0.Add(tt.after)); got != tt.want {
			t.Errorf("TrialDue(t0+%v) = %v, want %v", tt.after, got, tt.want)
		}
	}
	r.StartTrial(t0.Add(300 * sec))
	if r.TrialDue(t0.Add(time.Hour)) {
		t.Fatal("trial due on a half-open breaker")
	}
}

func TestRuleStatusAndReport(t *testing.T) {
	r := breaker.NewRule(breaker.Settings{Threshold: 2})
	at := t0.Add(sec)
	if s, want := r.Status(at), (actormsg.BreakerStatus{State: closed, At: at}); s != want {
		t.Fatalf("Status = %+v, want %+v", s, want)
	}
	r.OnFailure(t0, false)
	r.OnFailure(t0, false)
	until := t0.Add(300 * sec)
	tests := []struct {
		name   string
		at     time.Time
		status actormsg.BreakerStatus
		report messages.BreakerReport
	}{
		{"just opened", t0, actormsg.BreakerStatus{State: open, ConsecutiveFailures: 2, OpenUntil: until, Openings: 1, At: t0},
			messages.BreakerReport{Active: true, RecoveryIn: 300, State: open, Openings: 1}},
		{"mid recovery", t0.Add(287500 * ms), actormsg.BreakerStatus{State: open, ConsecutiveFailures: 2, OpenUntil: until, Openings: 1, At: t0.Add(287500 * ms)},
			messages.BreakerReport{Active: true, RecoveryIn: 12.5, State: open, Openings: 1}},
		{"past the end, not yet half-open", t0.Add(time.Hour), actormsg.BreakerStatus{State: open, ConsecutiveFailures: 2, OpenUntil: until, Openings: 1, At: t0.Add(time.Hour)},
			messages.BreakerReport{Active: true, RecoveryIn: 0, State: open, Openings: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s := r.Status(tt.at); s != tt.status {
				t.Fatalf("Status = %+v, want %+v", s, tt.status)
			}
			if rep := r.Report(tt.at); rep != tt.report {
				t.Fatalf("Report = %+v, want %+v", rep, tt.report)
			}
		})
	}
	r.StartTrial(until)
	if rep, want := r.Report(until), (messages.BreakerReport{State: halfOpen, Openings: 1}); rep != want {
		t.Fatalf("half-open Report = %+v, want %+v", rep, want)
	}
	if s := r.Status(until); s.State != halfOpen || !s.OpenUntil.IsZero() || s.ConsecutiveFailures != 2 {
		t.Fatalf("half-open Status = %+v", s)
	}
}

// TestRuleIsAValue: a copy is a snapshot, and the same calls give the same
// answers.
func TestRuleIsAValue(t *testing.T) {
	a := breaker.NewRule(breaker.Settings{Threshold: 2})
	a.OnFailure(t0, false)
	b := a
	vb := b.OnFailure(t0.Add(sec), false)
	if a.State() != closed || a.ConsecutiveFailures() != 1 {
		t.Fatalf("original changed by its copy: %v, count %d", a.State(), a.ConsecutiveFailures())
	}
	if va := a.OnFailure(t0.Add(sec), false); va != vb {
		t.Fatalf("same calls, different verdicts: %+v and %+v", va, vb)
	}
	if a.Status(t0) != b.Status(t0) {
		t.Fatalf("same calls, different status: %+v and %+v", a.Status(t0), b.Status(t0))
	}
}

// TestRuleHasNoClock: rule.go reads no clock, starts no goroutine and sets no
// timer; the time comes in as arguments.
func TestRuleHasNoClock(t *testing.T) {
	file, err := parser.ParseFile(token.NewFileSet(), "rule.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	forbidden := map[string]bool{"Now": true, "Since": true, "Until": true, "After": true, "AfterFunc": true, "NewTimer": true, "NewTicker": true, "Tick": true, "Sleep": true}
	for _, imp := range file.Imports {
		if path, _ := strconv.Unquote(imp.Path.Value); path != "time" && path != "github.com/enhanced-tunnel/tunnel/messages" && path != "github.com/enhanced-tunnel/tunnel/messages/actormsg" {
			t.Errorf("rule.go imports %s", path)
		}
	}
	ast.Inspect(file, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			t.Error("rule.go starts a goroutine")
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok && id.Name == "time" && forbidden[n.Sel.Name] {
				t.Errorf("rule.go calls time.%s", n.Sel.Name)
			}
		}
		return true
	})
}
