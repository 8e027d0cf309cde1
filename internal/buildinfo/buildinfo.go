// Package buildinfo reads what the Go toolchain stamped into the binary
// (runtime/debug.ReadBuildInfo): the module version, the VCS revision, and
// the Go version. The binaries print it for -version.
package buildinfo

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Info is what a binary knows of its build.
type Info struct {
	// Module is the main module's path, Version its version: "(devel)"
	// for a build from a checkout, v1.2.3 for `go install ...@v1.2.3`.
	Module, Version string
	// Revision is the VCS commit, "" when the build had none (go run, a
	// tree without VCS, -buildvcs=false); Modified says the tree had
	// uncommitted changes; Time is the commit's time.
	Revision string
	Modified bool
	Time     string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Read returns the running binary's Info.
func Read() Info { return fromBuildInfo(debug.ReadBuildInfo()) }

func fromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	info := Info{Version: "unknown", GoVersion: runtime.Version()}
	if !ok || bi == nil {
		return info
	}
	info.Module = bi.Main.Path
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "vcs.time":
			info.Time = s.Value
		}
	}
	return info
}

// String is one line: "PROGRAM VERSION (revision REV[+modified], TIME) GO",
// e.g. "tunnel-relay (devel) (revision 1a2b3c4d5e6f+modified) go1.26.0".
func (i Info) String(program string) string {
	rev := "unknown"
	if i.Revision != "" {
		rev = i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
	}
	if i.Modified {
		rev += "+modified"
	}
	if i.Time != "" {
		rev += ", " + i.Time
	}
	return fmt.Sprintf("%s %s (revision %s) %s", program, i.Version, rev, i.GoVersion)
}

// Print writes the running binary's line for program, and its module.
func Print(w io.Writer, program string) {
	i := Read()
	fmt.Fprintln(w, i.String(program))
	if i.Module != "" {
		fmt.Fprintf(w, "module %s\n", i.Module)
	}
}

// Requested says whether args ask for -version (or --version), which a
// binary answers by printing its build and exiting 0 before anything else
// is read: no environment variable or config file can turn it on. Nothing
// after "--" counts.
func Requested(args []string) bool {
	for _, a := range args {
		switch a {
		case "-version", "--version", "-version=true", "--version=true":
			return true
		case "--":
			return false
		}
	}
	return false
}
