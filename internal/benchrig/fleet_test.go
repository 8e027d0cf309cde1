package benchrig

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestFleetSmoke runs the fleet mode with two nodes and two tunnels, one
// short round, against freshly built binaries, on loopback: every figure
// of the hop-cost table is filled, the loss of node A leaves every request
// at B answered, and B's views forget A. Timing is not judged.
func TestFleetSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs two fleets for about fifteen seconds")
	}
	dir := t.TempDir()
	if err := Build(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	cfg := SmokeFleetConfig()
	cfg.BinDir = dir
	cfg.Nodes, cfg.Tunnels = 2, 2
	cfg.Rounds, cfg.Duration = 1, 200*time.Millisecond
	cfg.BeforeKill, cfg.AfterKill = time.Second, 2*time.Second
	cfg.SettleTimeout = 20 * time.Second
	var out bytes.Buffer
	start := time.Now()
	rep, err := RunFleet(t.Context(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v\n%s", time.Since(start).Round(time.Millisecond), out.String())

	if len(rep.Runs) != len(fleetWorkloads)*len(fleetTargets) {
		t.Errorf("%d runs, want %d", len(rep.Runs), len(fleetWorkloads)*len(fleetTargets))
	}
	for _, r := range rep.Rows {
		if r.Local.N == 0 || r.Hop.N == 0 || r.Diff.N == 0 || r.directApplicable && r.Direct.N == 0 {
			t.Errorf("row %q lacks a figure: %+v", r.Key, r)
		}
	}
	for _, key := range []string{"p50 " + wlSmall1, "p99 " + wlSmall1, "rps " + wlSmall32, "cpu relays " + wlSmall32} {
		if _, ok := rep.row(key); !ok {
			t.Errorf("no row %q", key)
		}
	}
	loss := rep.Loss
	if loss == nil {
		t.Fatal("no loss phase")
	}
	if len(loss.Nodes) != 2 || !loss.Nodes[0].Killed || loss.Nodes[1].Killed {
		t.Fatalf("nodes %+v, want A killed and B alive", loss.Nodes)
	}
	for _, nd := range loss.Nodes {
		// Two nodes: every tunnel has a session at both.
		if nd.ExpectedTunnels != 2 || nd.TunnelsBefore != 2 || nd.SessionsBefore != 2 {
			t.Errorf("node %s: %d tunnels expected, %d (%d sessions) before the kill; want 2 (2)",
				nd.Label, nd.ExpectedTunnels, nd.TunnelsBefore, nd.SessionsBefore)
		}
		if nd.OKBefore == 0 {
			t.Errorf("node %s answered nothing before the kill", nd.Label)
		}
	}
	if loss.Survivors.OK == 0 {
		t.Error("B answered nothing after the kill")
	}
	if loss.KilledAfter.Requests == 0 || loss.KilledAfter.Answered() != 0 {
		t.Errorf("requests at the killed A after the kill: %+v, want some, none answered", loss.KilledAfter)
	}
	if loss.MembersForgot < 0 || loss.RoutesForgot < 0 || loss.RoutesComplete < 0 {
		t.Errorf("B's views did not forget A: members %v, routes %v, complete %v",
			loss.MembersForgot, loss.RoutesForgot, loss.RoutesComplete)
	}
	for _, p := range rep.Problems() {
		t.Error(p)
	}
}

// TestWatchPairSince: a view's time is the answer to the first read
// showing it among those sent after the last read that did not, whatever
// order the answers came in; a read cut off at the end counts for nothing.
func TestWatchPairSince(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	yes, no := [conds]bool{true, true, true}, [conds]bool{}
	p := &watchPair{kinds: []int{condRoutes}, reads: []watchRead{
		{start: ms(200), end: ms(210), ok: no},
		{start: ms(300), end: ms(310), ok: yes},
		{start: ms(400), end: ms(405), ok: yes},
		{start: ms(500), end: ms(502), ok: yes},
		// Sent first, answered last: it says nothing of the later state.
		{start: ms(0), end: ms(5000), ok: no, err: errors.New("503")},
		{start: ms(600), end: ms(9000), cut: true},
	}}
	if got := p.since(condRoutes); got != ms(310) {
		t.Errorf("since = %v, want 310ms", got)
	}
	if !p.settled() {
		t.Error("not settled after three reads in a row showing it")
	}
	p.reads = append(p.reads, watchRead{start: ms(700), end: ms(701), ok: no})
	if got := p.since(condRoutes); got != -1 {
		t.Errorf("since = %v after a failing last read, want -1", got)
	}
	if p.settled() {
		t.Error("settled with a failing last read")
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- {
		s = append(s, time.Duration(i))
	}
	if got := percentile(s, 0.99); got != 99 {
		t.Errorf("p99 of 1..100 = %v, want 99", got)
	}
	if got := percentile(s, 0.5); got != 50 {
		t.Errorf("p50 of 1..100 = %v, want 50", got)
	}
	if got := percentile(nil, 0.99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
}
