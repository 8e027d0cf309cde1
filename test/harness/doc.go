// Package harness holds what the end-to-end tests (test/fault,
// test/hardening, test/integration, actors/relay's and supervisor/agent's
// external tests) all need over real loopback sockets: a relay on a free
// port of 127.0.0.1 closed at the end of the test, a supervisor with its
// state changes recorded, either bare (StartTunnel, with Forward) or as the
// standalone agent the binary runs (StartAgent), a poller for outcomes, a
// log destination that can be read back, and a self-signed certificate.
//
// Every wait is bounded, and the tests built on it assert outcomes, never
// timings.
package harness
