package breaker_test

import (
	"fmt"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/breaker"
)

// The state walk of a breaker with the default settings (Threshold 5,
// Recovery 300 s, FlapWindow 15 s): the fifth consecutive failure opens it
// for 300 s, the half-open trial's failure opens it for another 300 s, the
// next trial's success closes it, and a drop 8 s after a success (within the
// flap window) undoes that success. The times are arguments: the Rule has no
// clock, so the walk is the same on every run.
func ExampleRule() {
	r := breaker.NewRule(breaker.Settings{})
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	show := func(d time.Duration, what string) {
		fmt.Printf("t=%3.0fs %-14s %-9v failures %d, openings %d", d.Seconds(), what, r.State(), r.ConsecutiveFailures(), r.Openings())
		if u := r.OpenUntil(); !u.IsZero() {
			fmt.Printf(", open until t=%.0fs", u.Sub(start).Seconds())
		}
		fmt.Println()
	}

	for i := range 5 {
		d := time.Duration(i) * time.Second
		r.OnFailure(at(d), false)
		show(d, "failure")
	}
	fmt.Println("trial due at t=303s:", r.TrialDue(at(303*time.Second)))
	r.StartTrial(at(304 * time.Second))
	show(304*time.Second, "trial starts")
	r.OnFailure(at(305*time.Second), false)
	show(305*time.Second, "trial fails")
	r.StartTrial(at(605 * time.Second))
	show(605*time.Second, "trial starts")
	r.OnSuccess(at(606 * time.Second))
	show(606*time.Second, "trial succeeds")
	r.OnFailure(at(700*time.Second), true)
	show(700*time.Second, "drop")
	r.OnSuccess(at(701 * time.Second))
	show(701*time.Second, "success")
	r.OnFailure(at(709*time.Second), true)
	show(709*time.Second, "drop 8s later")

	// Output:
	// t=  0s failure        closed    failures 1, openings 0
	// t=  1s failure        closed    failures 2, openings 0
	// t=  2s failure        closed    failures 3, openings 0
	// t=  3s failure        closed    failures 4, openings 0
	// t=  4s failure        open      failures 5, openings 1, open until t=304s
	// trial due at t=303s: false
	// t=304s trial starts   half-open failures 5, openings 1
	// t=305s trial fails    open      failures 6, openings 2, open until t=605s
	// t=605s trial starts   half-open failures 6, openings 2
	// t=606s trial succeeds closed    failures 0, openings 2
	// t=700s drop           closed    failures 1, openings 2
	// t=701s success        closed    failures 0, openings 2
	// t=709s drop 8s later  closed    failures 2, openings 2
}
