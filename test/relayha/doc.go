// Package relayha tests the relay's high availability end to end, over
// loopback sockets: the real relay (actors/relay.Start on 127.0.0.1:0) and
// raw supervisors written from PROTOCOL.md with gorilla/websocket, that
// authenticate with an instance and an index and answer request frames by
// hand, so that a test decides which supervisor answers, stalls or drops.
//
// It checks that two supervisors of one tunnel serve side by side and share
// the requests, that a newer connection with the same instance and index
// replaces the older one, that a tunnel at its session limit refuses one
// more (1013), that an idempotent request whose supervisor drops after
// receiving it is answered by the other one (and a POST is 502), that a
// request for a tunnel with no supervisor waits for one to connect, and
// that a name no key opens is 404.
//
// The tests assert outcomes, never timings; they wait on channels with
// generous bounds and never sleep. The package holds tests only.
package relayha
