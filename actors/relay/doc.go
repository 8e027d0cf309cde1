// Package relay is the remote side of the tunnel, as a library: the HTTP
// front and the root actor of the relay's actors (session, auth, router,
// in sub-packages that meet only through messages/relaymsg).
//
// The front serves:
//
//	/tunnel    WebSocket endpoint for supervisors (PROTOCOL.md)
//	/health    {"status":"ok","tunnels":[names of connected tunnels]}
//	/metrics   Prometheus metrics, from the relay's own registry
//	/t/{name}/ public requests for tunnel {name}, prefix stripped
//	anything else: public requests for the tunnel "default"
//
// Public requests are answered by the tunnel's supervisor, or with a JSON
// error ({"error":"..."}): 503 when the tunnel is not connected or has too
// many requests in flight, 502 when the tunnel is lost before the response
// headers (after them the public connection is cut), 504 when no response
// frame comes within the request timeout, 413 for a body over the limit.
//
// Start runs a relay, Close stops it and every goroutine it started, so
// tests and tools can run one in-process on 127.0.0.1:0:
//
//	cfg := relay.DefaultConfig()
//	cfg.Listen = "127.0.0.1:0"
//	cfg.AuthToken = key
//	r, err := relay.Start(cfg)
//	...
//	url := "ws://" + r.Addr().String() + "/tunnel"
//	...
//	err = r.Close(ctx)
package relay
