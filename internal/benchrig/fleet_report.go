package benchrig

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay/fleet"
)

// FleetRow is a line of the hop-cost table: a figure against the direct
// upstream (where it has one), via A (local) and via B (hop), and the hop
// against the local run of the same round (Diff, a difference or a ratio).
type FleetRow struct {
	Key              string // stable: what tests look rows up by
	Name             string
	Note             string // printed below the table, marked in Name
	Direct, Local    Stat
	Hop, Diff        Stat
	DiffUnit         string // " µs" for a difference, "x" for a ratio
	directApplicable bool
}

// Errors is the number of failed requests over the hop-cost runs.
func (rep *FleetReport) Errors() int64 {
	var n int64
	for _, r := range rep.Runs {
		n += r.Errors
	}
	return n
}

// Problems are what the run must not show: a failed hop-cost request, and
// the loss phase's (LossResult.Problems).
func (rep *FleetReport) Problems() []string {
	var p []string
	if n := rep.Errors(); n > 0 {
		p = append(p, fmt.Sprintf("%d hop-cost requests failed; the runs marked ! are suspect", n))
	}
	if rep.Loss != nil {
		p = append(p, rep.Loss.Problems()...)
	}
	return p
}

// runKey names a run.
type runKey struct {
	round            int
	workload, target string
}

// build fills rep.Rows from the runs.
func (rep *FleetReport) build() {
	view := &Report{Runs: rep.Runs}
	p99s := map[runKey]time.Duration{}
	for i, r := range rep.Runs {
		if i < len(rep.P99) {
			p99s[runKey{r.Round, r.Workload, r.Target}] = rep.P99[i]
		}
	}
	p99Micros := func(r *RunResult) (float64, bool) {
		return float64(p99s[runKey{r.Round, r.Workload, r.Target}]) / float64(time.Microsecond), r.Requests > 0
	}
	row := func(key, name, w string, m metric, direct bool, f func(a, b float64) (float64, bool), unit string) FleetRow {
		r := FleetRow{
			Key: key, Name: name,
			Local: view.stat(cell{w, targetLocal, m}), Hop: view.stat(cell{w, targetHop, m}),
			Diff:     view.combined(cell{w, targetHop, m}, cell{w, targetLocal, m}, f),
			DiffUnit: unit, directApplicable: direct,
		}
		if direct {
			r.Direct = view.stat(cell{w, targetDirect, m})
		}
		return r
	}
	relays := cpuPerRequest(roleRelayA, roleRelayB)
	all := cpuPerRequest(fleetRoles...)
	rep.Rows = []FleetRow{
		row("p50 "+wlSmall1, "p50 latency, 1 connection (small@1), µs", wlSmall1, p50Micros, true, difference, " µs"),
		row("p99 "+wlSmall1, "p99 latency, 1 connection (small@1), µs", wlSmall1, p99Micros, true, difference, " µs"),
		row("rps "+wlSmall32, "requests/s, 32 connections (small@32), higher is better", wlSmall32, requestsPerSecond, true, ratio, "x"),
		row("p50 "+wlSmall32, "p50 latency, 32 connections (small@32), µs", wlSmall32, p50Micros, true, difference, " µs"),
		row("p99 "+wlSmall32, "p99 latency, 32 connections (small@32), µs", wlSmall32, p99Micros, true, difference, " µs"),
		row("cpu upstream "+wlSmall32, "CPU µs/request, upstream (small@32)", wlSmall32, cpuPerRequest(roleUpstream), true, difference, " µs"),
		row("cpu relay A "+wlSmall32, "CPU µs/request, relay A (small@32)", wlSmall32, cpuPerRequest(roleRelayA), false, difference, " µs"),
		row("cpu relay B "+wlSmall32, "CPU µs/request, relay B (small@32)", wlSmall32, cpuPerRequest(roleRelayB), false, difference, " µs"),
		row("cpu supervisor "+wlSmall32, "CPU µs/request, supervisor (small@32)", wlSmall32, cpuPerRequest(roleSupervisor), false, difference, " µs"),
		row("cpu relays "+wlSmall32, "CPU µs/request, relays A+B (small@32)", wlSmall32, relays, false, difference, " µs"),
		row("cpu all "+wlSmall32, "CPU µs/request, all four processes (small@32)", wlSmall32, all, false, difference, " µs"),
		row("mbps "+wlBytes4, "MB/s, 1 MiB responses, 4 connections (1MiB@4), higher is better", wlBytes4, megabytesPerSecond, true, ratio, "x"),
		row("cpu relays "+wlBytes4, "CPU µs/request, relays A+B (1MiB@4)", wlBytes4, relays, false, difference, " µs"),
		row("ttfb "+wlProgress1, "time to first byte, progressive body (ttfb@1), ms", wlProgress1, ttfbMillis, true, difference, " ms"),
	}
	for i := range rep.Rows {
		switch r := &rep.Rows[i]; r.Key {
		case "p99 " + wlSmall1:
			r.Note = "p99 by the nearest rank over every request of the run; the rounds' min / median of it."
		case "cpu relay B " + wlSmall32:
			r.Note = "via A, relay B serves nothing: its figure there is the fleet's background work (membership polls, " +
				"directory registrations) over the run's requests, and so is relay A's in the direct column's runs (not shown)."
		case "cpu relays " + wlSmall32:
			r.Note = "the extra CPU of a hop: relay A's and relay B's together, via B minus via A in the same round."
		case "cpu all " + wlSmall32:
			r.Note = "upstream, relay A, relay B and supervisor together; direct: the upstream's alone."
		case "ttfb " + wlProgress1:
			r.Note = "from the request's start to the first body byte read; 16 pieces of 1 KiB, flushed 2 ms apart."
		}
	}
}

// row looks a row up by its key.
func (rep *FleetReport) row(key string) (FleetRow, bool) {
	for _, r := range rep.Rows {
		if r.Key == key {
			return r, true
		}
	}
	return FleetRow{}, false
}

// Write prints the report: the header, the hop-cost table and the loss
// phase.
func (rep *FleetReport) Write(out io.Writer) error {
	m, c := rep.Machine, rep.Config
	commit := m.Commit
	if commit == "" {
		commit = "unknown"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tunnel-bench -fleet %d: %s, %d CPUs, %s, commit %s, open files %d\n",
		c.Nodes, m.Date.Format("2006-01-02 15:04 MST"), m.CPUs, m.GoVersion, commit, m.OpenFiles)
	fmt.Fprintf(&b, "load average (1 min): %.2f at the start, %.2f at the end (the rig's own processes count in it)\n", m.LoadStart, m.LoadEnd)
	fmt.Fprintf(&b, "every process on 127.0.0.1; fleets of %d tunnel-relay nodes A..%s, -cluster-provider automanaged (no etcd)\n\n",
		c.Nodes, nodeLabel(c.Nodes-1))

	fmt.Fprintf(&b, "1. Hop cost: %d nodes, one supervisor connected to A only (-connections 1)\n\n", c.Nodes)
	fmt.Fprintf(&b, "%d rounds of %d runs of %v each (closed loop, keep-alive; target order rotated per round)\n",
		c.Rounds, len(rep.Runs)/max(c.Rounds, 1), c.Duration)
	fmt.Fprintf(&b, "direct: the upstream; via A (local): http://A/t/%s/..., A holds the session; "+
		"via B (hop): http://B/t/%s/..., B -> A over the internal listener -> supervisor\n", benchTunnel, benchTunnel)
	fmt.Fprintf(&b, "cells: min / median over the rounds; hop vs local: per round (via B minus via A, or via B over via A for x), then min / median\n")
	fmt.Fprintf(&b, "CPU: utime+stime of /proc/PID/stat (%v ticks), per request answered\n\n", clockTick)
	table := [][]string{{"", "direct", "via A (local)", "via B (hop)", "hop vs local"}}
	var notes []string
	for _, r := range rep.Rows {
		if r.Note != "" {
			notes = append(notes, fmt.Sprintf("[%d] %s", len(notes)+1, r.Note))
			r.Name += fmt.Sprintf(" [%d]", len(notes))
		}
		direct := "-"
		if r.directApplicable {
			direct = formatStat(r.Direct, "")
		}
		table = append(table, []string{r.Name, direct, formatStat(r.Local, ""), formatStat(r.Hop, ""), formatDiff(r.Diff, r.DiffUnit)})
	}
	writeTable(&b, table)
	fmt.Fprintf(&b, "\n%s\n", strings.Join(notes, "\n"))
	p50, _ := rep.row("p50 " + wlSmall1)
	cpu, _ := rep.row("cpu relays " + wlSmall32)
	rps, _ := rep.row("rps " + wlSmall32)
	fmt.Fprintf(&b, "\nhop vs local, medians: %s p50 latency (small@1), %s relay CPU per request (small@32), %s the requests/s (small@32)\n",
		formatMedian(p50.Diff, " µs"), formatMedian(cpu.Diff, " µs"), formatMedian(rps.Diff, "x"))
	writeFlagged(&b, rep.Runs)
	if rep.Loss != nil {
		rep.Loss.write(&b, c)
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// formatDiff shows a difference signed, a ratio as formatStat does.
func formatDiff(s Stat, unit string) string {
	if unit == "x" || s.N == 0 {
		return formatStat(s, unit)
	}
	text := signed(s.Min) + unit
	if s.N > 1 {
		text += " / " + signed(s.Median) + unit
	}
	if s.Flagged {
		text += " !"
	}
	return text
}

// formatMedian shows the median alone.
func formatMedian(s Stat, unit string) string {
	if s.N == 0 {
		return "-"
	}
	if unit == "x" {
		return formatNumber(s.Median) + unit
	}
	return signed(s.Median) + unit
}

func signed(v float64) string {
	if v >= 0 {
		return "+" + formatNumber(v)
	}
	return formatNumber(v)
}

// write prints the loss phase.
func (res *LossResult) write(b *strings.Builder, c FleetConfig) {
	killed := res.Nodes[res.Killed]
	fmt.Fprintf(b, "\n2. Losing a node: %d nodes, %d tunnels, each with its own key and supervisor (-connections 2: its home node i%%%d and the next)\n\n",
		len(res.Nodes), res.Tunnels, len(res.Nodes))
	fmt.Fprintf(b, "load: %d keep-alive connections per node, each sending GET http://NODE/t/tNN/small over every tunnel in turn "+
		"(closed loop; %v per-request timeout; a %v pause after a transport error)\n", c.LossConns, lossRequestTimeout, lossBackoff)
	fmt.Fprintf(b, "%v of load, then node %s killed with SIGKILL, then %v more (the load goes on at %s too: a client does not know)\n",
		res.BeforeElapsed.Round(10*time.Millisecond), killed.Label, res.AfterElapsed.Round(10*time.Millisecond), killed.Label)
	fmt.Fprintf(b, "before: requests that ended before the kill; after: the rest, those in flight at the kill included\n\n")
	secs := func(n int64, d time.Duration) string {
		if d <= 0 {
			return "-"
		}
		return formatNumber(float64(n) / d.Seconds())
	}
	table := [][]string{{"node", "tunnels (sessions) before", "ok before", "req/s before", "failed before",
		"sent after", "ok after", "req/s after", "failed after", "tunnels (sessions) at the end"}}
	for _, nd := range res.Nodes {
		label, end := nd.Label, fmt.Sprintf("%d (%d)", nd.TunnelsAfter, nd.SessionsAfter)
		if nd.Killed {
			label += " (killed)"
			end = "-"
		}
		table = append(table, []string{
			label, fmt.Sprintf("%d (%d)", nd.TunnelsBefore, nd.SessionsBefore),
			fmt.Sprint(nd.OKBefore), secs(nd.OKBefore, res.BeforeElapsed), fmt.Sprint(nd.FailedBefore),
			fmt.Sprint(nd.SentAfter), fmt.Sprint(nd.OKAfter), secs(nd.OKAfter, res.AfterElapsed), fmt.Sprint(nd.FailedAfter),
			end,
		})
	}
	writeTable(b, table)
	fmt.Fprintf(b, "\ntunnels with a session at each node before the kill:\n")
	for _, nd := range res.Nodes {
		fmt.Fprintf(b, "  %s: %s\n", nd.Label, strings.Join(nd.TunnelNames, " "))
	}

	fmt.Fprintf(b, "\nfailed requests\n")
	fmt.Fprintf(b, "  before the kill, at any node: %d\n", res.FailedBefore)
	fmt.Fprintf(b, "  at %s itself, in flight when it was killed: %s\n", killed.Label, describeCount(res.KilledInFlight))
	fmt.Fprintf(b, "  at %s itself, sent after the kill: %s\n", killed.Label, describeCount(res.KilledAfter))
	fmt.Fprintf(b, "  at the surviving nodes, after the kill: %s\n", describeCount(res.Survivors))
	if res.LastFailure >= 0 {
		fmt.Fprintf(b, "  at the surviving nodes, the first failure ended %s and the last %s after the kill: none failed after %s\n",
			fmtSince(res.FirstFailure), fmtSince(res.LastFailure), fmtSince(res.LastFailure))
	} else {
		fmt.Fprintf(b, "  at the surviving nodes, none failed: no failure window\n")
	}
	fmt.Fprintf(b, "  latency at the surviving nodes after the kill: p50 %s, p99 %s, max %s; %d requests took over 1 s\n",
		fmtLatency(res.P50), fmtLatency(res.P99), fmtLatency(res.Max), res.Slow)
	for _, r := range res.SlowOnes {
		fmt.Fprintf(b, "    at %s, tunnel %s, sent %s after the kill: %s, status %d\n", r.Node, r.Tunnel, fmtSince(r.Sent), fmtSeconds(r.Took), r.Status)
	}
	if res.LastFailure >= 0 && res.AfterElapsed-res.LastFailure < time.Second {
		fmt.Fprintf(b, "  ! the surviving nodes were still failing requests at the end of the load\n")
	}
	if problems := res.Problems(); len(problems) == 0 {
		fmt.Fprintf(b, "  verdict ✓: every request at a surviving node got its answer or an explicit JSON error, none hung; the killed node answered none after the kill\n")
	} else {
		fmt.Fprintf(b, "  verdict ✗:\n")
		for _, p := range problems {
			fmt.Fprintf(b, "  ! %s\n", p)
		}
	}

	fmt.Fprintf(b, "\nrecovery, from the SIGKILL: every surviving node's admin /fleet, and its /fleet?tunnel=... of every tunnel, read every %v\n", res.Poll)
	fmt.Fprintf(b, "(a read sent whether or not the one before has answered; a view's time: the answer to the first read showing it, no read sent later contradicting it; the latest over the views)\n")
	fmt.Fprintf(b, "  member lists no longer hold %s:                               %s\n", killed.Label, fmtWatch(res.MembersForgot, c.SettleTimeout))
	fmt.Fprintf(b, "  routes of every tunnel no longer list %s:                     %s\n", killed.Label, fmtWatch(res.RoutesForgot, c.SettleTimeout))
	fmt.Fprintf(b, "  routes of every tunnel list exactly its surviving sessions:  %s\n", fmtWatch(res.RoutesComplete, c.SettleTimeout))
	fmt.Fprintf(b, "  views read: %d, the slowest took %s; unanswered when the watch ended: %d; answered with an error: %d\n",
		res.WatchReads, fmtSeconds(res.WatchSlowest), res.WatchCut, res.WatchFailed)
	if res.WatchError != "" {
		fmt.Fprintf(b, "    the first error: %s\n", res.WatchError)
	}

	period := fleet.DefaultRegisterPeriod
	perMin := int(time.Minute / period)
	fmt.Fprintf(b, "\ndirectory cost (computed from the configuration, not measured)\n")
	fmt.Fprintf(b, "  directory grains: %d (one per tunnel)\n", res.Tunnels)
	var parts []string
	total := 0
	for _, nd := range res.Nodes {
		parts = append(parts, fmt.Sprintf("%s %d × %d = %d", nd.Label, nd.ExpectedTunnels, perMin, nd.ExpectedTunnels*perMin))
		total += nd.ExpectedTunnels * perMin
	}
	fmt.Fprintf(b, "  registrations per node per minute = tunnels with a session at the node × %d (60 s / the %v register period):\n", perMin, period)
	fmt.Fprintf(b, "    %s; the fleet %d\n", strings.Join(parts, ", "), total)
	fmt.Fprintf(b, "  (besides: one registration of a tunnel on each change of its sessions at a node, and of every tunnel of a node on each topology change)\n")
}

// describeCount says how a group of requests ended.
func describeCount(c LossCount) string {
	if c.Requests == 0 {
		return "none"
	}
	var parts []string
	if c.OK > 0 {
		parts = append(parts, fmt.Sprintf("%d ok", c.OK))
	}
	if c.BadBody > 0 {
		parts = append(parts, fmt.Sprintf("%d answered 200 with a wrong body", c.BadBody))
	}
	if len(c.Status) > 0 {
		var st []string
		for _, code := range slices.Sorted(maps.Keys(c.Status)) {
			st = append(st, fmt.Sprintf("%d × %d", code, c.Status[code]))
		}
		var total int64
		for _, k := range c.Status {
			total += k
		}
		explicit := fmt.Sprintf("%d of them", c.Explicit)
		if c.Explicit == total {
			explicit = "all"
		}
		parts = append(parts, fmt.Sprintf("%d answered with an error status (%s; %s with a JSON {\"error\":...} body)",
			total, strings.Join(st, ", "), explicit))
	}
	if len(c.Errors) > 0 {
		var es []string
		var total int64
		for _, kind := range slices.Sorted(maps.Keys(c.Errors)) {
			es = append(es, fmt.Sprintf("%s %d", kind, c.Errors[kind]))
			total += c.Errors[kind]
		}
		text := fmt.Sprintf("%d failed at the TCP level (%s)", total, strings.Join(es, ", "))
		if c.FirstError != "" {
			text += fmt.Sprintf(", the first other: %s", c.FirstError)
		}
		parts = append(parts, text)
	}
	return fmt.Sprintf("%d requests: %s", c.Requests, strings.Join(parts, "; "))
}

func fmtSince(d time.Duration) string { return "+" + fmtSeconds(d) }

func fmtSeconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func fmtLatency(d time.Duration) string {
	return fmt.Sprintf("%s ms", formatNumber(float64(d)/float64(time.Millisecond)))
}

func fmtWatch(d, limit time.Duration) string {
	if d < 0 {
		return fmt.Sprintf("! not within %v", limit)
	}
	return fmtSince(d)
}
