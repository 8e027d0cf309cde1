// Package integration tests the real relay and the real supervisor together
// over loopback sockets on ports the OS picks: in-process through the
// actors/relay and supervisor libraries, and, for signal handling, as the
// built tunnel-relay and tunnel-supervisor binaries.
//
// Delays are shortened through the configs (retry delays, breaker recovery,
// heartbeat interval of a few hundred milliseconds), so the failure rules run
// for real in seconds. The tests assert outcomes and counts; where they
// compare times they only check lower bounds (an attempt never comes before
// its delay), since a shared machine under the race detector may always be
// late. Exact delays are the business of the unit tests, in virtual time.
//
// The package holds tests only.
package integration
