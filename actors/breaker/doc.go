// Package breaker is the circuit breaker: it counts consecutive connection
// failures and, at the threshold, opens to hold attempts back for the
// recovery time, so a long outage is not hammered with reconnects. After the
// recovery time it is half-open: the supervisor lets one trial through, whose
// success closes the breaker and whose failure opens it again for a full
// recovery time.
//
// A success (AUTHENTICATED) resets the count to 0 and closes the breaker at
// once. A link that authenticates and then drops within FlapWindow (one
// heartbeat interval) is flapping: the drop restores the count from before
// that success, plus one, so a flapping link still trips the breaker.
//
// # The rule
//
// That rule is Rule, a pure value type in the manner of sony/gobreaker's
// state machine: counts in, verdict out. It has no actor, no goroutine, no
// timer and no clock; every call that needs the time takes it as an
// argument, so its answers depend only on its Settings and the calls made so
// far, and it is tested without an actor or fake time:
//
//	r := breaker.NewRule(breaker.Settings{}) // Threshold 5, Recovery 300 s, FlapWindow 15 s
//	v := r.OnFailure(at, wasAuthenticated)   // Verdict: Open, Tripped, OpenedAt, OpenUntil, ConsecutiveFailures
//	closed := r.OnSuccess(at)                // count to 0; true if it closed an open or half-open breaker
//	if r.TrialDue(at) {                      // open, and at is at or after OpenUntil
//		r.StartTrial(at)                     // open -> half-open
//	}
//	r.Status(at)                             // actormsg.BreakerStatus; r.Report(at) is messages.BreakerReport
//
// An open Rule stays open, whatever the time, until StartTrial: the half-open
// transition is an event, which the actor makes when its timer fires.
//
// # The actor
//
// The breaker actor (Props) wraps a Rule made from its Config
// (Config.Settings). It only translates messages into the Rule's calls, with
// time.Now as the time, and the Rule's answers into messages and log lines,
// and it owns the recovery timer: when a Verdict says Tripped it (re)starts
// the timer for Recovery, when OnSuccess closes the breaker it cancels it,
// and when the timer fires it calls StartTrial.
//
// It takes, from its parent:
//
//	*messages.StateChanged      AUTHENTICATED is a success (OnSuccess); other states are ignored.
//	*actormsg.ConnectionFailed  a failed attempt or a dropped connection (OnFailure).
//
// It sends to its parent:
//
//	*actormsg.BreakerVerdict  exactly one answer to every ConnectionFailed:
//	                          whether the breaker is open, and the count.
//	*actormsg.BreakerStatus   after every success and every failure (after the
//	                          verdict), and when the recovery time ends
//	                          (State HalfOpen: the supervisor starts the trial).
//
// It logs, with the field actor=breaker, when the breaker opens (a warning),
// when the trial starts and when a success closes the breaker:
//
//	Circuit breaker activated - too many consecutive failures (N)
//	Circuit breaker half-open, allowing one trial connection
//	Circuit breaker closed
//
// The recovery timer message carries a generation number, so one already in
// the mailbox when the timer was cancelled is ignored.
package breaker
