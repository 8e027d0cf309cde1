//go:build race

package integration

// raceEnabled builds the binaries under test with the race detector when
// the tests run with it, so that a race in a binary fails its exit status.
const raceEnabled = true
