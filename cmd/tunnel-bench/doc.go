// Command tunnel-bench is the multi-process yardstick of `make bench`: it
// runs tunnel-relay and tunnel-supervisor as separate processes on
// 127.0.0.1, loads them, and prints one table of what the tunnel costs
// next to the direct upstream and a bare WebSocket round trip (see
// package internal/benchrig for what each row measures).
//
//	tunnel-bench [-bin DIR] [-rounds 5] [-duration 2s] [-idle-tunnels 10000] [-idle-window 30s] [-smoke]
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
// Two subcommands are the servers the rig starts, the binary re-executed:
//
//	tunnel-bench upstream -listen 127.0.0.1:0   the upstream HTTP server
//	tunnel-bench wsecho -listen 127.0.0.1:0     the bare WebSocket echo server
//
// Each prints its bound address on the first line of stdout.
package main
