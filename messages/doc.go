// Package messages holds every typed message the tunnel's actors exchange,
// the states and failure types of the seed, the status shape, and the public
// TunnelMessage. It imports nothing of the project but its own wire
// sub-package, so any actor can depend on it without depending on another
// actor.
//
// Who sends what (all actors report to their parent; the supervisor's root
// actor routes between them):
//
//	connection -> parent  StateChanged, HeartbeatAck, Inbound, Undeliverable;
//	                      fails (panics) with *ConnectionFailed
//	parent -> connection  SendHeartbeat, Stale, Outbound
//	heartbeat  -> parent  SendHeartbeat, HeartbeatRTT, Stale
//	parent -> heartbeat   StateChanged, HeartbeatAck
//	breaker    -> parent  BreakerVerdict (answer to each failure), BreakerStatus (each change)
//	parent -> breaker     StateChanged, *ConnectionFailed
//	parent -> health      StateChanged, *ConnectionFailed, HeartbeatRTT, BreakerStatus, GetStatus
//	health     -> sender  *Status (answer to GetStatus)
package messages
