// Package relay is the remote side of the tunnel, as a library: the HTTP
// front and the root actor of the relay's actors (session, auth, router,
// in sub-packages that meet only through messages/relaymsg).
//
// The public front (Config.Listen) serves:
//
//	/tunnel    WebSocket endpoint for supervisors (PROTOCOL.md)
//	{name}.{Config.Domain}, any path: public requests for tunnel {name},
//	           path untouched (host routing, with a Domain set)
//	/t/{name}/ public requests for tunnel {name}, prefix stripped
//	anything else: public requests for the tunnel "default"
//
// A tunnel's keys-file line may lock its public side (see auth.Access):
// client networks, bearer tokens or basic users, a request rate. The front
// checks them before a request takes a place (403, 401, 429). Public
// requests may be WebSocket upgrades (runUpgrade) and responses may carry
// trailers.
//
// and the admin listener (Config.AdminListen), apart because they tell
// which tunnels exist and are up:
//
//	/health    {"status":"ok","tunnels":[names of connected tunnels]}
//	/metrics   Prometheus metrics, from the relay's own registry
//	/fleet     in a fleet: this node's view of it (see serveFleet)
//
// Fleet: with Config.Fleet.Name set the relay is one node of a fleet (see
// FleetConfig and the fleet package). A public request for a tunnel with
// no session at this node is reverse-proxied over the internal listener
// (Config.Fleet.InternalListen, authenticated by the cluster secret) to a
// node the tunnel directory says has one; without a name, no cluster code
// runs.
//
// Public requests are answered by one of the tunnel's supervisors, or with
// a JSON error ({"error":"..."}): 404 when no key opens the tunnel's name,
// 503 when the tunnel is not connected (after waiting Config.HoldTimeout for
// a session) or has too many requests in flight or held, 502 when the
// tunnel is lost before the response headers and the request cannot be
// sent again (after the headers the public connection is cut), 504 when no
// response frame comes within the request timeout, 408 when the body stops
// coming for the body timeout, 413 for a body over the limit.
//
// High availability: a tunnel may have several sessions at once (up to
// Config.MaxSessionsPerTunnel), from one supervisor process or several,
// told apart by the instance and index of their auth frame; requests go to
// the one with the fewest in flight. A request whose session ends before
// its response goes through another session when its frame never left the
// relay, and once more when it is idempotent (Config.RetryIdempotent). See
// the router package.
//
// The front is built to face strangers: connections that have not
// authenticated are capped apart from sessions, upgrades are rate-limited
// per client address, every public request holds a place of its tunnel
// from its arrival and is bounded in time (body and send timeouts) and
// memory (its window, and a budget for all streams), paths are normalised
// and forwarding headers are the relay's own (see Config.TrustedProxies).
//
// Start runs a relay, Close stops it and every goroutine it started, so
// tests and tools can run one in-process on 127.0.0.1:0:
//
//	cfg := relay.DefaultConfig()
//	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
//	cfg.AuthToken = key
//	r, err := relay.Start(cfg)
//	...
//	url := "ws://" + r.Addr().String() + "/tunnel"
//	...
//	err = r.Close(ctx)
package relay
