// Package health is the health ledger actor: it listens to what the other
// actors report and keeps the account the status is made of, in the seed's
// shape (messages.Status): the state, attempts and successes, failures by
// type, connection stability, connect and heartbeat timings, the circuit
// breaker, and the recent state transitions.
//
// It takes, from its parent:
//
//	*messages.StateChanged      the connection's state; CONNECTING counts an
//	                            attempt, AUTHENTICATED a success.
//	*actormsg.ConnectionFailed  a failed attempt or a drop; the connection is
//	                            DISCONNECTED from then on.
//	*actormsg.HeartbeatRTT      one heartbeat round trip.
//	*actormsg.BreakerStatus     the breaker's state and count; while it is
//	                            open the tunnel's state is CIRCUIT_BREAKER.
//	*actormsg.GetStatus         answered with a *messages.Status (ctx.Respond).
//
// It sends nothing unasked. Each Status it answers with is its own copy,
// which the receiver may keep and change.
package health
