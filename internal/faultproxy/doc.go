// Package faultproxy is a TCP proxy that breaks the network between a client
// (the supervisor) and an upstream (the relay) on demand, for fault and
// stress tests:
//
//	AddLatency(d)        every byte waits d, in each direction
//	LimitBandwidth(r)    at most r bytes per second, in each direction
//	Blackhole()          bytes stop both ways while TCP stays open: neither
//	                     end hears of it, only a heartbeat can tell
//	ResetConnections()   every open connection is reset (RST) at both ends
//	HalfClose(dir)       one direction is shut: its receiver reads EOF and
//	                     later bytes that way are dropped, while the other
//	                     direction still flows
//	Clear()              lifts latency, bandwidth and blackhole
//
// Latency and bandwidth are toxiproxy's toxics, and the blackhole is its
// timeout toxic (timeout 0) made safe to remove; they run in-process in
// toxiproxy's toxic chains, without its HTTP API. The sockets are the
// proxy's own: toxiproxy's listener closes both ends as soon as either one
// closes, which cannot express a half-closed connection, so this package
// accepts, dials and forwards a FIN as a FIN itself, and resets with
// SO_LINGER 0 at once rather than at the next byte as toxiproxy's
// reset_peer does.
//
// Lifting a blackhole closes the connections it held, as toxiproxy's
// timeout toxic does: bytes have been lost on them, so no stream protocol
// could go on. Connections opened later pass untouched.
//
// The proxy listens on 127.0.0.1 with a port of its own choosing; a
// connection whose upstream cannot be reached is closed as soon as it is
// accepted. Close ends every connection and waits for every goroutine.
package faultproxy
