package benchrig

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is what a run measured: every run, the idle phase, and the rows
// of the table built from them.
type Report struct {
	Config  Config
	Machine Machine
	Runs    []RunResult
	Idle    *IdleResult
	Rows    []Row
}

// Stat is a figure over the rounds.
type Stat struct {
	Min, Median float64
	N           int  // rounds with a value; 0 for none
	Flagged     bool // a run behind it had errors
}

// Row is a line of the table. Goal rows compare the tunnel with the direct
// run (Result) against a goal; detail rows have no Result.
type Row struct {
	Key                 string // stable: what tests look rows up by
	Name                string
	Note                string // printed below the table, marked in Name
	Direct, Tunnel, Raw Stat   // in the row's own unit, named in Name
	Result              Stat
	// ResultUnit follows each Result figure: "x" for a ratio.
	ResultUnit string
	// Goal, when set, is met when Result.Median is at most GoalMax or,
	// for a figure where higher is better, at least GoalMin.
	Goal             string
	GoalMax, GoalMin float64
}

// Met reports whether the row has a goal and its median meets it.
func (r Row) Met() (met, hasGoal bool) {
	if r.Goal == "" || r.Result.N == 0 {
		return false, r.Goal != ""
	}
	if r.GoalMin != 0 {
		return r.Result.Median >= r.GoalMin, true
	}
	return r.Result.Median <= r.GoalMax, true
}

// Errors is the number of failed requests over every run.
func (rep *Report) Errors() int64 {
	var n int64
	for _, r := range rep.Runs {
		n += r.Errors
	}
	return n
}

// metric is a figure of one run; ok is false when the run has none (no
// request answered, a usage too small to count).
type metric func(r *RunResult) (v float64, ok bool)

func cpuPerRequest(roles ...string) metric {
	return func(r *RunResult) (float64, bool) {
		var cpu time.Duration
		for _, role := range roles {
			cpu += r.CPU[role]
		}
		if r.Requests == 0 {
			return 0, false
		}
		return float64(cpu) / float64(time.Microsecond) / float64(r.Requests), true
	}
}

func writesPerRequest(role string) metric {
	return func(r *RunResult) (float64, bool) {
		if r.Requests == 0 {
			return 0, false
		}
		return float64(r.Writes[role]) / float64(r.Requests), true
	}
}

func p50Micros(r *RunResult) (float64, bool) {
	return float64(r.P50) / float64(time.Microsecond), r.Requests > 0
}

func ttfbMillis(r *RunResult) (float64, bool) {
	return float64(r.TTFBP50) / float64(time.Millisecond), r.Requests > 0
}

func requestsPerSecond(r *RunResult) (float64, bool) {
	return float64(r.Requests) / r.Elapsed.Seconds(), r.Requests > 0
}

func megabytesPerSecond(r *RunResult) (float64, bool) {
	return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds(), r.Requests > 0
}

// cell says where a column's figures come from: a workload's runs against
// a target, and the metric read off each.
type cell struct {
	workload, target string
	m                metric
}

// perRound collects a cell's figure in each round that has one, and
// whether a run behind them had errors.
func (rep *Report) perRound(c cell) (map[int]float64, bool) {
	vals := map[int]float64{}
	flagged := false
	for i := range rep.Runs {
		r := &rep.Runs[i]
		if r.Workload != c.workload || r.Target != c.target {
			continue
		}
		flagged = flagged || r.Errors > 0
		if v, ok := c.m(r); ok {
			vals[r.Round] = v
		}
	}
	return vals, flagged
}

func (rep *Report) stat(c cell) Stat {
	vals, flagged := rep.perRound(c)
	s := summarize(slices.Collect(maps.Values(vals)))
	s.Flagged = flagged
	return s
}

// combined computes f of two cells per round, in the rounds where both
// have a figure and f gives one.
func (rep *Report) combined(a, b cell, f func(a, b float64) (float64, bool)) Stat {
	av, af := rep.perRound(a)
	bv, bf := rep.perRound(b)
	var vals []float64
	for round, x := range av {
		if y, ok := bv[round]; ok {
			if v, ok := f(x, y); ok {
				vals = append(vals, v)
			}
		}
	}
	s := summarize(vals)
	s.Flagged = af || bf
	return s
}

func ratio(a, b float64) (float64, bool) { return a / b, b > 0 }

func difference(a, b float64) (float64, bool) { return a - b, true }

// summarize returns the minimum and median of vals.
func summarize(vals []float64) Stat {
	if len(vals) == 0 {
		return Stat{}
	}
	slices.Sort(vals)
	med := vals[len(vals)/2]
	if len(vals)%2 == 0 {
		med = (vals[len(vals)/2-1] + med) / 2
	}
	return Stat{Min: vals[0], Median: med, N: len(vals)}
}

// build fills rep.Rows from the runs and the idle phase.
func (rep *Report) build() {
	direct := func(w string, m metric) cell { return cell{w, targetDirect, m} }
	tunnel := func(w string, m metric) cell { return cell{w, targetTunnel, m} }
	raw := func(w string, m metric) cell { return cell{w, targetRaw, m} }
	// compare is a goal row of figure m of workload w: its three columns
	// and the tunnel against the direct run per round.
	compare := func(key, name, w string, m metric, rawCell cell, f func(a, b float64) (float64, bool), unit string) Row {
		return Row{
			Key: key, Name: name,
			Direct: rep.stat(direct(w, m)), Tunnel: rep.stat(tunnel(w, m)), Raw: rep.stat(rawCell),
			Result: rep.combined(tunnel(w, m), direct(w, m), f), ResultUnit: unit,
		}
	}

	cpu := Row{
		Key:  "cpu",
		Name: "CPU per small request (small@32), µs",
		Note: "direct: the upstream's CPU; tunnel: the relay's and the supervisor's together; raw: the echo server's. " +
			"tunnel vs direct: relay + supervisor over the upstream's own CPU in the direct run of the same round.",
		Direct: rep.stat(direct(wlSmall32, cpuPerRequest(roleUpstream))),
		Tunnel: rep.stat(tunnel(wlSmall32, cpuPerRequest(roleRelay, roleSupervisor))),
		Raw:    rep.stat(raw(wlSmall32, cpuPerRequest(roleEcho))),
		Result: rep.combined(tunnel(wlSmall32, cpuPerRequest(roleRelay, roleSupervisor)),
			direct(wlSmall32, cpuPerRequest(roleUpstream)), ratio),
		ResultUnit: "x",
		Goal:       "≤ 3x the upstream's", GoalMax: 3,
	}
	p50 := compare("p50", "p50 latency, 1 connection (small@1), µs", wlSmall1, p50Micros,
		raw(wlSmall1, p50Micros), ratio, "x")
	p50.Goal, p50.GoalMax = "≤ 2.5x", 2.5
	rps := compare("rps", "requests/s, 32 connections (small@32), higher is better", wlSmall32, requestsPerSecond,
		raw(wlSmall32, requestsPerSecond), ratio, "x")
	rps.Goal, rps.GoalMin = "≥ 0.35x", 0.35
	mbps := compare("mbps", "MB/s, 1 MiB responses, 4 connections (1MiB@4), higher is better", wlBytes4, megabytesPerSecond,
		raw(wlBytes4, megabytesPerSecond), ratio, "x")
	mbps.Goal, mbps.GoalMin = "≥ 0.25x", 0.25
	ttfb := compare("ttfb", "time to first byte, progressive body (ttfb@1), ms", wlProgress1, ttfbMillis,
		raw(wlSmall1, ttfbMillis), difference, " ms")
	ttfb.Goal, ttfb.GoalMax = "≤ +0.5 ms", 0.5
	ttfb.Note = "from the request's start to the first body byte read; 16 pieces of 1 KiB, flushed 2 ms apart. " +
		"raw: from sending a message to the first byte of the answer, i.e. the small round trip of small@1. " +
		"tunnel vs direct: the difference."
	rep.Rows = []Row{cpu, p50, rps, mbps, ttfb}

	if idle := rep.Idle; idle != nil {
		traffic := Row{
			Key:  "idle-traffic",
			Name: "idle traffic per tunnel per 15 s, both ways",
			Note: fmt.Sprintf("bytes of one real supervisor's WebSocket stream, WebSocket framing included, TCP/IP headers not, "+
				"counted through a TCP proxy over %v and scaled to 15 s.", idle.Window),
			Result: Stat{Min: idle.TrafficPer15s(), Median: idle.TrafficPer15s(), N: 1}, ResultUnit: " B",
			Goal: "≤ 64 B", GoalMax: 64,
		}
		if idle.Window < heartbeatEvery {
			// It may hold no heartbeat at all: a pass would mean nothing.
			traffic.Goal = ""
			traffic.Note += fmt.Sprintf(" Not judged: the window is shorter than the %v heartbeat period.", heartbeatEvery)
		}
		rep.Rows = append(rep.Rows,
			Row{
				Key:  "idle-rss",
				Name: fmt.Sprintf("relay memory per idle tunnel (%d tunnels)", idle.Tunnels),
				Note: fmt.Sprintf("growth of the relay's VmRSS from before the idle tunnels to %v after the last one authenticated, "+
					"over their number; the tunnels are bare protocol clients of this process, sending a heartbeat every %v.",
					idleSettle, heartbeatEvery),
				Result: Stat{Min: idle.RSSPerTunnel() / 1024, Median: idle.RSSPerTunnel() / 1024, N: 1}, ResultUnit: " KiB",
				Goal: "≤ 12 KiB", GoalMax: 12,
			},
			traffic)
	}

	for _, w := range []string{wlSmall1, wlSmall32} {
		for _, d := range []struct {
			what string
			m    func(role string) metric
		}{
			{"CPU µs/request", func(role string) metric { return cpuPerRequest(role) }},
			{"write syscalls/request", writesPerRequest},
		} {
			rep.Rows = append(rep.Rows,
				Row{Key: d.what + " upstream " + w, Name: fmt.Sprintf("%s, upstream (%s)", d.what, w),
					Direct: rep.stat(direct(w, d.m(roleUpstream))), Tunnel: rep.stat(tunnel(w, d.m(roleUpstream)))},
				Row{Key: d.what + " relay " + w, Name: fmt.Sprintf("%s, relay (%s)", d.what, w),
					Tunnel: rep.stat(tunnel(w, d.m(roleRelay)))},
				Row{Key: d.what + " supervisor " + w, Name: fmt.Sprintf("%s, supervisor (%s)", d.what, w),
					Tunnel: rep.stat(tunnel(w, d.m(roleSupervisor)))},
				Row{Key: d.what + " wsecho " + w, Name: fmt.Sprintf("%s, raw echo (%s)", d.what, w),
					Raw: rep.stat(raw(w, d.m(roleEcho)))},
			)
		}
	}
}

// Write prints the header and the table.
func (rep *Report) Write(out io.Writer) error {
	m, c := rep.Machine, rep.Config
	commit := m.Commit
	if commit == "" {
		commit = "unknown"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tunnel-bench: %s, %d CPUs, %s, commit %s, open files %d\n",
		m.Date.Format("2006-01-02 15:04 MST"), m.CPUs, m.GoVersion, commit, m.OpenFiles)
	fmt.Fprintf(&b, "load average (1 min): %.2f at the start, %.2f at the end (the rig's own processes count in it)\n", m.LoadStart, m.LoadEnd)
	fmt.Fprintf(&b, "%d rounds of %d runs of %v each (closed loop, keep-alive; target order rotated per round); %d idle tunnels; idle traffic over %v\n",
		c.Rounds, len(rep.Runs)/max(c.Rounds, 1), c.Duration, c.IdleTunnels, c.IdleWindow)
	fmt.Fprintf(&b, "cells: min / median over the rounds; tunnel vs direct: per round, then min / median; met: the median against the goal\n")
	fmt.Fprintf(&b, "CPU: utime+stime of /proc/PID/stat (%v ticks), per request answered; write syscalls: syscw of /proc/PID/io\n\n", clockTick)

	table := [][]string{{"", "direct", "tunnel", "raw", "tunnel vs direct", "goal", "met"}}
	var notes []string
	for _, r := range rep.Rows {
		if r.Note != "" {
			notes = append(notes, fmt.Sprintf("[%d] %s", len(notes)+1, r.Note))
			r.Name += fmt.Sprintf(" [%d]", len(notes))
		}
		met := ""
		if ok, has := r.Met(); has {
			met = "✗"
			if ok {
				met = "✓"
			}
		}
		table = append(table, []string{
			r.Name, formatStat(r.Direct, ""), formatStat(r.Tunnel, ""), formatStat(r.Raw, ""),
			formatStat(r.Result, r.ResultUnit), r.Goal, met,
		})
	}
	writeTable(&b, table)
	fmt.Fprintf(&b, "\n%s\n", strings.Join(notes, "\n"))

	writeFlagged(&b, rep.Runs)
	_, err := io.WriteString(out, b.String())
	return err
}

// formatStat shows "min / median" with unit after each, "!" after a
// figure with errors behind it, and "-" for none.
func formatStat(s Stat, unit string) string {
	if s.N == 0 {
		if s.Flagged {
			return "! (no answer)"
		}
		return "-"
	}
	num := func(v float64) string {
		if unit == " ms" {
			return fmt.Sprintf("%+.2f%s", v, unit)
		}
		return formatNumber(v) + unit
	}
	text := num(s.Min)
	if s.N > 1 {
		text += " / " + num(s.Median)
	}
	if s.Flagged {
		text += " !"
	}
	return text
}

// formatNumber shows three significant digits or the whole number.
func formatNumber(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// writeTable writes rows as a Markdown table, padded to line up; the first
// row is the header.
func writeTable(b *strings.Builder, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	line := func(row []string) {
		for i, cell := range row {
			fmt.Fprintf(b, "| %s%s ", cell, strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)))
		}
		b.WriteString("|\n")
	}
	line(rows[0])
	for _, w := range widths {
		fmt.Fprintf(b, "|%s", strings.Repeat("-", w+2))
	}
	b.WriteString("|\n")
	for _, row := range rows[1:] {
		line(row)
	}
}

// writeFlagged lists the runs that had errors, one "!" line each.
func writeFlagged(b *strings.Builder, runs []RunResult) {
	var flagged []string
	for _, r := range runs {
		if r.Errors > 0 {
			flagged = append(flagged, fmt.Sprintf("! round %d, %s %s: %d errors, %d requests answered; first: %s",
				r.Round+1, r.Workload, r.Target, r.Errors, r.Requests, r.FirstError))
		}
	}
	if len(flagged) > 0 {
		fmt.Fprintf(b, "\n%s\n", strings.Join(flagged, "\n"))
	}
}
