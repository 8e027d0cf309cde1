// Package heartbeat is the actor that keeps an authenticated connection
// honest: it asks for a heartbeat frame every interval, measures the round
// trip of each ack, and says the connection is stale when no ack has come
// for the heartbeat timeout, so that a silently dead path is torn down
// instead of waited on forever.
//
// It takes, from its parent:
//
//	*messages.StateChanged  AUTHENTICATED starts the heartbeat (first tick one
//	                        interval later, stale deadline one timeout later);
//	                        any other state stops it and forgets outstanding
//	                        heartbeats.
//	*actormsg.HeartbeatAck  an ack the connection received; an ack for a
//	                        heartbeat this actor sent measures a round trip
//	                        and pushes the stale deadline one timeout on.
//
// It sends to its parent:
//
//	*actormsg.SendHeartbeat every interval while authenticated.
//	*actormsg.HeartbeatRTT  for every ack of a known heartbeat.
//	*actormsg.Stale         once, when no ack came for the timeout; ticking
//	                        then stops until the next AUTHENTICATED.
//
// Timer messages carry a generation number, so a tick or deadline already
// in the mailbox when its timer was cancelled is ignored.
package heartbeat
