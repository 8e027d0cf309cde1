package benchrig

import (
	"bytes"
	"testing"
)

// TestSmoke runs the rig in smoke mode against freshly built binaries and
// checks that every row of the table has figures and no request failed.
// Timing is not judged: the machine running the tests is busy with them.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs them for about ten seconds")
	}
	dir := t.TempDir()
	if err := Build(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	cfg := SmokeConfig()
	cfg.BinDir = dir
	var out bytes.Buffer
	rep, err := Run(t.Context(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())

	rows := map[string]Row{}
	for _, r := range rep.Rows {
		rows[r.Key] = r
	}
	for _, key := range []string{"cpu", "p50", "rps", "mbps", "ttfb", "idle-rss", "idle-traffic"} {
		if r, ok := rows[key]; !ok {
			t.Errorf("no row %q", key)
		} else if r.Result.N == 0 {
			t.Errorf("row %q has no result", key)
		}
	}
	for _, w := range []string{wlSmall1, wlSmall32} {
		for _, what := range []string{"CPU µs/request", "write syscalls/request"} {
			for _, role := range []string{roleUpstream, roleRelay, roleSupervisor, roleEcho} {
				key := what + " " + role + " " + w
				r, ok := rows[key]
				if !ok {
					t.Errorf("no row %q", key)
				} else if r.Direct.N+r.Tunnel.N+r.Raw.N == 0 {
					t.Errorf("row %q has no figure", key)
				}
			}
		}
	}
	if n := rep.Errors(); n > 0 {
		t.Errorf("%d requests failed", n)
	}
}
