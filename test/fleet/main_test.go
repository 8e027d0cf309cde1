package fleet_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bin is the directory of the binaries TestMain builds.
var bin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fleet-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The binaries are built without the race detector: protoactor-go's
	// cluster races in its own code (see protoengine), which is not what
	// these tests look for. The tests themselves run with it.
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "../../cmd/tunnel-relay", "../../cmd/tunnel-supervisor")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		return 1
	}
	bin = dir
	return m.Run()
}
