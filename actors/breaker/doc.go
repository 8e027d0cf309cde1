// Package breaker is the circuit breaker actor: it counts consecutive
// connection failures and, at the threshold, opens to hold attempts back for
// the recovery time, so a long outage is not hammered with reconnects. After
// the recovery time it is half-open: the supervisor lets one trial through,
// whose success closes the breaker and whose failure opens it again for a
// full recovery time.
//
// A success (AUTHENTICATED) resets the count to 0 and closes the breaker at
// once. A link that authenticates and then drops within FlapWindow (one
// heartbeat interval) is flapping: the drop restores the count from before
// that success, plus one, so a flapping link still trips the breaker.
//
// It takes, from its parent:
//
//	*messages.StateChanged      AUTHENTICATED is a success; other states are ignored.
//	*messages.ConnectionFailed  a failed attempt or a dropped connection.
//
// It sends to its parent:
//
//	*messages.BreakerVerdict  exactly one answer to every ConnectionFailed:
//	                          whether the breaker is open, and the count.
//	*messages.BreakerStatus   after every success and every failure (after the
//	                          verdict), and when the recovery time ends
//	                          (State HalfOpen: the supervisor starts the trial).
//
// The recovery timer message carries a generation number, so one already in
// the mailbox when the timer was cancelled is ignored.
package breaker
