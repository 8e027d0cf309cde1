// Command tunnel-bench is the multi-process yardstick of `make bench`: it
// runs tunnel-relay and tunnel-supervisor as separate processes on
// 127.0.0.1, loads them, and prints one table of what the tunnel costs
// next to the direct upstream and a bare WebSocket round trip (see
// package internal/benchrig for what each row measures).
//
//	tunnel-bench [-bin DIR] [-rounds 5] [-duration 2s] [-idle-tunnels 10000] [-idle-window 30s] [-smoke]
//	tunnel-bench -fleet N [-fleet-tunnels 12] [-bin DIR] [-rounds 5] [-duration 2s] [-smoke]
//
// -bin names a directory holding tunnel-relay, tunnel-supervisor and
// tunnel-bench already built; without it they are built into a temporary
// directory first (inside this module). -smoke is a run of seconds that
// fills every row roughly: 1 round of 300 ms runs, 200 idle tunnels, a 2 s
// idle window; flags given beside it win. Progress goes to stderr, the
// table to stdout. The exit status is 1 when the run could not be made or
// a request failed (the table flags those runs with "!"), 2 for bad flags,
// else 0, whether or not the goals are met.
//
// -fleet N (`make bench-fleet` runs -fleet 3) runs the fleet mode instead:
// N tunnel-relay nodes A, B, C... in one fleet with -cluster-provider
// automanaged (no etcd), and two sections, each on a fleet of its own:
//
//  1. Hop cost: one supervisor connected to A only (-connections 1); the
//     workloads small@1, small@32, 1MiB@4 and ttfb@1 against the direct
//     upstream, the tunnel via A (its local session) and the tunnel via B
//     (one hop: B -> A over the internal listener -> supervisor), in
//     -rounds rounds of -duration runs, the target order rotated per
//     round. The table shows p50 and p99 latency, requests/s, MB/s, the
//     time to first byte and the CPU per request of the upstream, relay A,
//     relay B and the supervisor (min / median over the rounds), and "hop
//     vs local": via B minus via A (latency, CPU) or via B over via A
//     (requests/s, MB/s), per round, then min / median.
//  2. Losing a node: -fleet-tunnels tunnels (default 12), each with its
//     own key (a -keys-file) and its own supervisor process, connected to
//     its home node i%N and the next one; a steady closed-loop load of
//     GET /t/NAME/small over every tunnel at every node (2 connections per
//     node, a 20 s per-request timeout) for 5 s, then node A killed with
//     SIGKILL and 10 s more. It prints the tunnels and sessions per node,
//     the requests per node before and after, how the failed ones failed
//     (at A itself, which must fail at the TCP level, apart from the
//     surviving nodes, which must answer every request with its body or
//     an explicit JSON 502/503/504 error), when the last one at a
//     surviving node failed, when every surviving node's admin /fleet and
//     /fleet?tunnel=NAME stopped listing A, and the directory's cost as
//     computed from the configuration (one grain per tunnel, each node
//     registering its tunnels every 10 s).
//
// With -smoke the fleet mode runs 1 round of 300 ms runs and 1 s + 3 s of
// load around the kill. Its exit status is 1 when the run could not be
// made, a hop-cost request failed, or the loss of a node showed a request
// that hung, a failure at a surviving node other than an explicit error,
// or a view that never forgot the killed node; else 0.
//
// Two subcommands are the servers the rig starts, the binary re-executed:
//
//	tunnel-bench upstream -listen 127.0.0.1:0   the upstream HTTP server
//	tunnel-bench wsecho -listen 127.0.0.1:0     the bare WebSocket echo server
//
// Each prints its bound address on the first line of stdout.
package main
