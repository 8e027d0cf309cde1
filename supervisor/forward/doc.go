// Package forward is the tunnel-supervisor's bridge to the local upstream
// (the TTS server): a Forwarder turns each request the relay sends through
// the tunnel into an HTTP request to the upstream and streams the upstream's
// answer back as a response with the same message_id.
//
// Bodies are never held whole: the request body flows from the tunnel to the
// upstream as it arrives, and the response body goes back one upstream read
// at a time, so the relay's client hears the first audio bytes while the
// upstream is still producing the rest. A small known-length response is sent
// inline instead, which saves the stream's extra frames.
//
// The handler's context is the request's lifetime: the relay's cancel, the
// loss of the connection or the tunnel's stop cancel the upstream request,
// and nothing more is sent for it. An upstream that cannot be reached or
// fails before its headers is answered with a 502 and a JSON body
// {"error":"upstream: ..."}; the tunnel is not affected.
//
// Drain is for shutting down: from then on requests are answered 503
// {"error":"draining"} and Drain returns once the requests already being
// forwarded are done.
//
// The sending side is the small Sender interface, which *supervisor.Tunnel
// satisfies; the binary wires it up as
//
//	cfg.OnMessage = func(ctx context.Context, t *supervisor.Tunnel, msg *messages.TunnelMessage) {
//		fwd.Handle(ctx, t, msg)
//	}
package forward
