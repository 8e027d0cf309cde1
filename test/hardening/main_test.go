package hardening_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// Paths of the binaries TestMain builds for the tests that run them.
var relayBin, supervisorBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tunnel-hardening-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	relayBin, supervisorBin = filepath.Join(dir, "tunnel-relay"), filepath.Join(dir, "tunnel-supervisor")
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/enhanced-tunnel/tunnel/cmd/tunnel-relay", "github.com/enhanced-tunnel/tunnel/cmd/tunnel-supervisor")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		return 1
	}
	if code := m.Run(); code != 0 {
		return code
	}
	if err := goleak.Find(); err != nil {
		fmt.Fprintln(os.Stderr, "goroutines left after the tests:", err)
		return 1
	}
	return 0
}
