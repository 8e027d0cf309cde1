package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// binDir holds the tunnel-relay and tunnel-supervisor binaries built for
// this run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tunnel-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// buildBinaries builds the two binaries into dir, with the race detector
// when the tests have it, so that a race in a binary shows in its exit
// status (66).
func buildBinaries(dir string) error {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args,
		"github.com/enhanced-tunnel/tunnel/cmd/tunnel-relay",
		"github.com/enhanced-tunnel/tunnel/cmd/tunnel-supervisor")
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	return nil
}
