package main

// wantsVersion says whether args ask for -version (or --version), which
// prints the build (module version, VCS revision, Go version) and exits 0
// before anything else is read: no environment variable or config file
// can turn it on.
func wantsVersion(args []string) bool {
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
