// Package stress is the tunnel's load test under network faults, the
// library behind cmd/tunnel-stress (the seed's
// `tunnel_stress_test.py --failures=high --duration=300`).
//
// Run starts, in this process and on loopback, the demo TTS upstream
// (internal/ttsdemo, plus an /echo endpoint), a relay, the fault proxy
// (internal/faultproxy) in front of the relay, and a supervisor that reaches
// the relay through the proxy and forwards to the upstream, with short
// heartbeat and retry settings. The supervisor is the standalone agent
// (supervisor/agent) that tunnel-supervisor runs, without its HTTP
// endpoints. Config.Concurrency clients then send requests one after the
// other through the relay's public front: small inline answers, short and
// long streamed speech, and 96 KiB echoes streamed both ways. Meanwhile
// faults come one at a time, in rounds that hold every kind once in an
// order the seed shuffles, each after the tunnel is back up (every
// connection AUTHENTICATED) and a quiet time that Config.Failures sets:
// latency, a bandwidth limit, a reset, a blackhole held past the
// heartbeat's timeout, a half-close, and a relay restart on the same port
// (during which the public front, which the relay serves too, is down:
// clients wait rather than count requests nobody could answer).
//
// With Config.Connections above 1 the tunnel keeps that many connections,
// each on a path of its own: its own fault proxy in front of the same
// relay. Each fault then hits one path, drawn by the seed, and the next
// waits until every connection is back, so the tunnel always has a path
// that works. The relay's restart is left out then: it would cut every path
// at once, since they all end at that relay. The report then gives the
// share of requests answered ok, which is what the other path buys.
//
// At the end the fault in progress is lifted, the load stops, and every
// request in flight is waited for before counting, so that
//
//	sent = ok + failed explicitly + lost
//
// where ok is a 200 with the whole, correct body; failed explicitly is a
// 502/503/504 with the relay's JSON error, or a streamed answer the relay
// cut off because the tunnel went after its status line was out (PROTOCOL.md:
// the client sees a broken body, never a clean end); and lost is anything
// else: a transport error, no answer within 30 s, a body that ends cleanly
// but short or wrong, an unexpected status.
//
// The seed fixes the order, timing and strength of the faults and each
// client's sequence of requests; what the network and the scheduler then
// make of them varies from run to run.
//
// Report.Check holds the expectations; see there for the rules.
package stress
