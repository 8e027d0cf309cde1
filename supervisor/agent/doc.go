// Package agent is the standalone tunnel agent, composed once: the tunnel
// (supervisor.Start), the forwarder that answers the relay's requests from
// the local upstream (supervisor/forward), the /health, /status and /metrics
// endpoints (supervisor/httpapi), and the order in which they stop.
// cmd/tunnel-supervisor, the end-to-end tests (test/harness) and the stress
// tool (internal/stress) all run this package, so what they test is what
// ships.
//
// # Contract
//
// Start validates the Config, starts the forwarder, the tunnel (which
// connects in the background) and, when a Listener is given, the HTTP
// endpoints on it, and returns. Every request the relay sends is forwarded
// to Config.Forward and its answer streamed back.
//
// Shutdown stops the agent in the one order that loses no request:
//
//  1. drain: the forwarder answers new requests 503 {"error":"draining"} and
//     the requests in flight get DrainTimeout to finish; the context given to
//     Shutdown cuts this wait short (the binary cancels it on a second
//     SIGINT or SIGTERM);
//  2. the tunnel stops: a close frame to the relay, the handlers of the
//     requests still running are cancelled (their upstream requests with
//     them) and waited for, within the tunnel's CloseTimeout plus a margin;
//  3. the HTTP endpoints shut down last, so that the drain can be watched on
//     /status and /metrics while it lasts.
//
// Shutdown is idempotent: later calls wait for the first and return its
// result. Once it returns, nothing the agent started is left running.
//
// The agent never logs the API key; relay and upstream URLs are logged
// with any password redacted.
package agent
