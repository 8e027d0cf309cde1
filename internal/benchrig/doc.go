// Package benchrig is the multi-process yardstick behind cmd/tunnel-bench
// and `make bench`: it runs the real tunnel-relay and tunnel-supervisor
// binaries as separate processes on 127.0.0.1, next to an upstream HTTP
// server and a bare WebSocket echo server (both tunnel-bench itself,
// re-executed with the subcommands `upstream` and `wsecho`), loads them
// from this process and prints one table of what the tunnel costs.
//
// Every workload runs against three targets:
//
//   - direct: the upstream's own URL, the baseline;
//   - tunnel: the relay's public URL http://RELAY/t/bench, through the
//     supervisor to the same upstream;
//   - raw: the bare gorilla/websocket echo server, the raw limit of a
//     WebSocket round trip between two processes.
//
// The load is a closed loop (as wrk's): each of C keep-alive connections
// sends its next request when the previous answer has been read whole, for
// Config.Duration. The workloads are small@1 (/small over 1 connection,
// for latency), small@32 (for throughput and CPU per request), 1MiB@4
// (/bytes?n=1048576 over 4 connections, for MB/s) and ttfb@1 (/progressive,
// a body written in 16 flushed pieces 2 ms apart, for the time to its first
// byte). Config.Rounds rounds each run every workload against every
// target, the target order rotated from round to round so that drift of
// the machine (frequency, other load) hits every column alike; the table
// shows the minimum and the median over the rounds, and ratios are taken
// per round (tunnel over the direct run of the same round) before their
// minimum and median.
//
// CPU time (utime+stime of /proc/PID/stat) and write system calls (syscw
// of /proc/PID/io) of each server process are read before and after every
// run and divided by the requests it served.
//
// After the rounds a fresh relay takes Config.IdleTunnels idle tunnels,
// opened from this process as bare protocol clients, to measure its
// resident memory per idle tunnel; meanwhile one real supervisor, connected
// through a byte-counting TCP proxy, measures the idle traffic of a tunnel.
package benchrig
