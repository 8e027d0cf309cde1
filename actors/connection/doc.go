// Package connection is the actor that owns the tunnel's WebSocket to the
// relay: it dials, authenticates, reads and writes, and fails with a typed
// reason when the connection ends. One instance is one connection attempt;
// its parent restarts it for the next attempt.
//
// Messages it sends to its parent:
//   - *messages.StateChanged: Connecting, Connected, Authenticating, then
//     Authenticated with the session id, its epoch (Config.NewSession) and
//     the time from dial to auth_ok.
//     Attempt is left 0; the parent numbers attempts.
//   - *actormsg.HeartbeatAck: each heartbeat_ack received.
//   - *actormsg.Inbound, only when Config.Deliver is nil: each application
//     frame received (request, response, error, cancel, stream_end,
//     stream_error, window_update, stream_resume) and each binary chunk of
//     a streamed body. With Deliver set, the socket's reader hands them to
//     it directly, with no mailbox hop: the supervisor's data path.
//   - *actormsg.Undeliverable: Outbound frames it did not start writing,
//     because it was not authenticated yet or because it failed or restarted.
//
// Messages it takes:
//   - *actormsg.Outbound: written in order while authenticated, each answered
//     with nil or the reason it was not written (its Ctx's error, an error
//     wrapping messages.ErrConnectionLost, or messages.ErrStopped on Stop).
//   - *actormsg.SendHeartbeat: writes a heartbeat frame; ignored unless
//     authenticated.
//   - *actormsg.Stale: fails with NETWORK_ERROR; ignored unless
//     authenticated (a verdict on an earlier connection).
//
// On any failure it tears the socket down in the background and panics with
// *actormsg.ConnectionFailed, which protoactor hands to the parent's
// HandleFailure at once; Classify names the failure type. A graceful Stop
// sends close 1000, waits at most CloseTimeout for the relay's answer, and
// returns only when every goroutine of the connection has ended. Stop is a
// system message: it overtakes messages still in the mailbox, and protoactor
// drops those unanswered. Stop with Poison to have every Outbound answered.
//
// Receive never blocks on the network: a dial-and-read goroutine and, once
// authenticated, a writer goroutine send their results to the actor, tagged
// with the socket they belong to, so that messages of an earlier socket,
// which a restarted instance inherits in its mailbox, are ignored.
package connection
