package buildinfo

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/enhanced-tunnel/tunnel", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.modified", Value: "true"},
			{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
		},
	}
	i := fromBuildInfo(bi, true)
	want := Info{Module: "github.com/enhanced-tunnel/tunnel", Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567",
		Modified: true, Time: "2026-01-02T03:04:05Z", GoVersion: "go1.26.0"}
	if i != want {
		t.Fatalf("got %+v, want %+v", i, want)
	}
	if got, line := i.String("tunnel-relay"), "tunnel-relay v1.2.3 (revision 0123456789ab+modified, 2026-01-02T03:04:05Z) go1.26.0"; got != line {
		t.Errorf("String: %q, want %q", got, line)
	}
}

func TestNoBuildInfo(t *testing.T) {
	i := fromBuildInfo(nil, false)
	if i.Version != "unknown" || i.GoVersion != runtime.Version() {
		t.Errorf("got %+v", i)
	}
	if got := i.String("x"); got != "x unknown (revision unknown) "+runtime.Version() {
		t.Errorf("String: %q", got)
	}
}

func TestPrint(t *testing.T) {
	var out bytes.Buffer
	Print(&out, "prog")
	if !strings.HasPrefix(out.String(), "prog ") || !strings.Contains(out.String(), runtime.Version()) {
		t.Errorf("Print: %q", out.String())
	}
}

func TestRequested(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"-version"}, true},
		{[]string{"--version"}, true},
		{[]string{"-version=true"}, true},
		{[]string{"-log-level", "debug", "-version"}, true},
		{nil, false},
		{[]string{"-listen", ":1"}, false},
		{[]string{"--", "-version"}, false},
	} {
		if got := Requested(tc.args); got != tc.want {
			t.Errorf("Requested(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
