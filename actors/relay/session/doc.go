// Package session is the relay's session actor: one per supervisor
// connection. It owns the WebSocket: one reader goroutine and one writer
// goroutine, which talk to the actor only through messages and the
// session's outbox. The actor itself never blocks.
//
// Lifecycle: the supervisor must send a valid auth frame within the auth
// timeout, and nothing else first; the session asks the auth manager, then
// registers its tunnel with the router, and only then answers auth_ok (so
// that a supervisor that has auth_ok is routable). From then on it answers
// heartbeats at once, writes the requests the router dispatches, and routes
// the frames of their answers: responses to the router, chunks into the
// body streams, window_updates to the request bodies' send windows.
//
// The connection is closed with a code that says why: 1002 for a frame that
// is not JSON or has no type, 1008 for anything but auth before auth, a
// wrong key or no auth in time, 1009 for a message over the read limit, and
// 1000 when a newer session takes the tunnel over. A supervisor that sends
// nothing at all (no frame, no pong) for the heartbeat timeout is dropped;
// the writer pings it every ping interval. Unknown frame types, and frames
// about message ids the session does not know, are answered with an error
// frame (once per id) and the session stays up.
//
// Messages (from relaymsg):
//
//	to parent:   *Authenticate (request; answer *AuthResult comes back),
//	             *SessionUp (request; answer *Registered comes back),
//	             *SessionDown, *Response, *Failed
//	from router: *Dispatch, *Cancel, *Release, *CloseSession
package session
