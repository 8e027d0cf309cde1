// Package supervisor is the tunnel's supervision tree and its public
// embedding API: a TTS host calls Start with its own actor system (or none),
// then Send, Request, Status, Reconnect and Stop on the returned Tunnel, and
// receives the relay's requests through Config.OnMessage.
//
// # The tree
//
// The root actor supervises four children and is their SupervisorStrategy.
// The tree as data:
//
//	child        what it does                                 restart rule
//	-----------  -------------------------------------------  -----------------------------------------------
//	connection   owns the WebSocket: dial, auth, reader and   on failure, by the failure type:
//	             writer goroutines; fails with a typed         AUTH_FAILURE after 30 s (AuthRetryDelay),
//	             *messages.ConnectionFailed                     any other type after 10 s (RetryDelay);
//	                                                            breaker open: at the end of its recovery
//	                                                            (300 s), as its one half-open trial
//	heartbeat    heartbeat every 15 s, stale after 30 s       at once (holds no resources)
//	health       the ledger behind Status                     at once
//	breaker      opens after 5 consecutive failures           at once
//
// A restart is protoactor's RestartChildren, posted when the delay has
// passed; until then the failed connection's mailbox stays suspended, which
// is why outbound frames wait in the root's queue and never in that mailbox.
// Pending restarts are cancelled on stop. The strategy never records restart
// statistics, so they cannot grow.
//
// The exponential policy (Config.ReconnectPolicy) replaces the flat delays
// with 0.5 s doubling per consecutive failure up to 120 s, with jitter.
//
// # Messages
//
// The root routes between its children: the connection's state changes go
// to the heartbeat, breaker and health actors; heartbeats and acks pass
// between heartbeat and connection; a failure goes to the breaker, whose
// verdict chooses the delay, and to the ledger. Application frames leave the
// actor world through the Tunnel, which matches responses to requests,
// feeds streamed bodies to readers under PROTOCOL.md's per-stream windows,
// and runs the host's handler.
package supervisor
