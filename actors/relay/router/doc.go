// Package router is the relay's message router actor: it knows which
// session serves each tunnel, and follows every public request from the
// moment the front hands it over until the front is done with it.
//
// A request for a tunnel with no session is answered 503 (the front bounds
// how many requests a tunnel has in flight, before they reach the router).
// Otherwise it is dispatched to the session
// and waits for its response frame (the headers) for the request timeout;
// past it the front is answered 504 and the session told to cancel. A
// session that ends fails its requests still waiting with 502. When a second
// session registers a tunnel, it takes the tunnel over and the old session
// is closed.
//
// Messages (from relaymsg):
//
//	*SessionUp   -> answers *Registered; CloseSession to the session replaced
//	*SessionDown -> fails that session's waiting requests (502)
//	*Forward     -> Dispatch to the tunnel's session, or Outcome 503
//	*Response    -> Outcome to the exchange
//	*Failed      -> Outcome 502 to the exchange
//	*Done        -> Cancel or Release to the session
//	*ListTunnels -> answers *Tunnels
//
// Outcomes go to the exchange's channel, which the front waits on.
package router
