// Package actormsg holds the messages the supervisor's actors exchange with
// one another and with its data path: heartbeats, the breaker's verdicts,
// frames to write and frames received, the reason a connection fails. They
// are the tree's internal protocol, apart from the public types a host
// uses (package messages: TunnelMessage, Status, StateChanged, the
// errors), and may change with the tree.
//
// Who sends what (all actors report to their parent; the supervisor's root
// and path actors route between them; the data path is the tunnel's
// supervisor/internal/datapath):
//
//	connection -> parent    messages.StateChanged, HeartbeatAck, Undeliverable;
//	                        fails (panics) with *ConnectionFailed
//	connection -> data path Inbound (from the socket's reader, with its Sink)
//	parent -> connection    SendHeartbeat, Stale, Outbound
//	data path -> socket     Outbound, through the session's Sink
//	heartbeat  -> parent    SendHeartbeat, HeartbeatRTT, Stale
//	parent -> heartbeat     messages.StateChanged, HeartbeatAck
//	breaker    -> parent    BreakerVerdict (answer to each failure), BreakerStatus (each change)
//	parent -> breaker       messages.StateChanged, *ConnectionFailed
//	parent -> health        messages.StateChanged, *ConnectionFailed, HeartbeatRTT, BreakerStatus, GetStatus
//	health     -> sender    *messages.Status (answer to GetStatus)
package actormsg
