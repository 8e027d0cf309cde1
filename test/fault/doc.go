// Package fault runs the real relay and the real supervisor with a
// fault-injecting TCP proxy (internal/faultproxy) between them, and checks what
// each network fault comes to: a blackhole is caught by the heartbeat as a
// stale connection (NETWORK_ERROR) and the tunnel comes back once it is
// lifted; a reset or a half-closed connection is a NETWORK_ERROR followed by
// a reconnect; 50 ms of latency leaves the tunnel up and serving; a relay
// restarted on the same port behind the proxy is reconnected to; a request
// caught by a fault is answered with an error, never left hanging; and an
// upload refused while the tunnel is down leaves the client no dead
// keep-alive connection to send its next request on.
//
// The supervisor runs with a 200 ms heartbeat, a 1 s heartbeat timeout and
// a 300 ms retry delay, so that every fault plays out in about a second.
// The tests assert outcomes and counts; their time bounds are generous (a
// machine under the race detector may always be late) and they poll rather
// than sleep. Counts are taken from just before a fault where a loaded
// machine could already have cost a reconnect.
//
// The package holds tests only.
package fault
