package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

func TestVersionExitsZero(t *testing.T) {
	var stdout, stderr bytes.Buffer
	// No relay URL, no key: -version reads nothing else.
	if code := run([]string{"-connections", "99", "-version"}, func(string) string { return "" }, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	out := stdout.String()
	if !strings.HasPrefix(out, "tunnel-supervisor ") || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, "revision ") {
		t.Errorf("version output %q", out)
	}
}
