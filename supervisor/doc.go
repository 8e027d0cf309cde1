// Package supervisor is the tunnel's supervision tree and its public
// embedding API: a TTS host calls Start with its own actor system (or none),
// then Send, Request, Status, Reconnect and Stop on the returned Tunnel, and
// receives the relay's requests through Config.OnMessage.
//
// # The tree
//
// The tree is written as data in tree.go (rootTree and pathTree: child name,
// props, restart rule), which HandleFailure reads; this table shows the
// same:
//
//	root                   one path per connection (Config.Connections, default 2); connection i
//	                       dials Config.URLOf(i). Restart rule: at once (a path only fails on a
//	                       defect; its connection's failures are its own to handle)
//	└── connection-i       the path: one connection's subtree, and its SupervisorStrategy
//	    ├── health         the connection's ledger behind Status          restart: at once
//	    ├── breaker        opens after 5 consecutive failures (300 s)     restart: at once
//	    ├── heartbeat      heartbeat every 15 s, stale after 30 s         restart: at once
//	    └── connection     owns the WebSocket: dial, auth, reader and     restart by failure type:
//	                       writer goroutines; fails with a typed          AUTH_FAILURE after 30 s
//	                       *actormsg.ConnectionFailed                     (AuthRetryDelay), any other
//	                                                                      after 10 s (RetryDelay);
//	                                                                      breaker open: at the end of
//	                                                                      its recovery, as its trial
//
// A restart is protoactor's RestartChildren, posted when the delay has
// passed; until then the failed connection's mailbox stays suspended, which
// is why outbound frames never wait in that mailbox: the path hands them
// back to the root, which gives them to another authenticated connection or
// queues them (at most MaxQueue) until one is. Pending restarts are
// cancelled on stop. The strategies never record restart statistics, so
// they cannot grow.
//
// The exponential policy (Config.ReconnectPolicy) replaces the flat delays
// with 0.5 s doubling per consecutive failure up to 120 s, with jitter.
//
// The breaker's rule is a pure value type (breaker.Rule) that the breaker
// actor wraps; each connection has its own.
//
// Start runs the tree's root in an actor system; SpawnUnder grows it under
// a host's own actor, whose supervisor then sees the tunnel as its child.
//
// # Connections
//
// Every connection authenticates with the tunnel's key, an instance id
// (random per Tunnel) and its index, so that the relay keeps them side by
// side and replaces only a connection's own earlier session. Requests from
// the host take the authenticated connections in turn; an answer (response,
// error, cancel, window_update, a stream's chunks) goes back on the
// connection and session its request came on, and fails with
// ErrConnectionLost once that session is gone. A frame no connection could
// start writing is never lost: it goes to another connection. A Request
// whose connection is lost before its answer is sent once more when it is
// idempotent with an inline body (Config.RetryIdempotent).
//
// Status is the aggregate of the connections' ledgers (see aggregate in
// status.go) with each connection's own status in Connections.
//
// # Messages
//
// Each path routes between its children: the connection's state changes go
// to the heartbeat, breaker and health actors, and to the root (which routes
// frames by them); heartbeats and acks pass
// between heartbeat and connection; a failure goes to the breaker, whose
// verdict chooses the delay, and to the ledger.
//
// # The data path
//
// Application frames leave the actor world for the data path (package
// datapath): the connections' readers hand it every inbound frame and
// chunk, and the paths tell it of every session's loss and heartbeat_ack.
// It matches responses to requests, feeds streamed bodies to readers under
// PROTOCOL.md's per-stream windows, moves resumable response streams, and
// runs the host's handler; what it writes goes straight to a session's
// socket, or through the root. The Tunnel is the facade over both: it
// owns the tree's life (Start, SpawnUnder, Reconnect, Status, Stop) and
// hands Send and Request to the data path.
package supervisor
