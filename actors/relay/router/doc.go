// Package router is the relay's message router actor: it knows which
// sessions serve each tunnel, and follows every public request from the
// moment the front hands it over until the front is done with it.
//
// Sessions. A tunnel has up to MaxSessionsPerTunnel sessions at once, from
// one supervisor process or several (high availability). A session is
// known by the instance and index of its auth frame: a newer session with
// the same pair replaces the older one, which is closed (1000, "replaced by
// a newer session"); any other pair serves beside the others. A session
// that names no instance (an older supervisor) counts as instance "" index
// 0, so that it takes the tunnel over from its predecessor as before. A
// session beyond the limit is refused (Registered.Refused, so the session
// closes with 1013 "tunnel at its session limit").
//
// Spreading. Each request goes to the tunnel's session with the fewest
// requests in flight (counted from the dispatch until the front is done
// with the exchange, or it fails); ties go round-robin, in the order the
// sessions registered, so that two idle supervisors share a trickle of
// requests. Each dispatch waits for its response frame (the headers) for
// the request timeout; past it the front is answered 504 and the session
// told to cancel.
//
// Holding. A request for a tunnel that has a key (Config.Tunnels) but no
// session waits up to HoldTimeout for one, and is dispatched as soon as one
// registers; past the timeout it is answered 503. A tunnel holds at most
// MaxHeld requests and MaxHeldBytes of inline bodies; a request beyond is
// answered 503 at once, as it is when HoldTimeout is 0 or the relay is
// closing (Drain: no session can come any more). A held request the
// front is done with (its client went away) is forgotten at once. A name
// that is no tunnel is answered 404 at once (the front refuses those
// itself, before taking a place for them).
//
// Failover. When a session ends, its requests still waiting for a response
// frame are looked at one by one, in arrival order (SessionDown.Written
// says which request frames left the relay):
//
//	frame never written           -> through another session, always
//	written, idempotent (GET, HEAD,
//	OPTIONS, PUT, DELETE), inline
//	body, not retried yet, and
//	RetryIdempotent               -> through another session, once
//	otherwise                     -> 502 "tunnel lost before the response"
//
// "Through another session" means the least busy live one, or the hold
// queue when there is none; the message_id is kept, since the other
// session is another supervisor connection. A retried request that cannot
// be held gets 502, one never written 503. A session ending after the
// response frame fails the body stream instead, unless its supervisor
// negotiated resume.
//
// Resume. A session whose supervisor negotiated resume (auth and auth_ok
// with "resume":true) hands the response bodies it was still feeding, when
// it ends, to the router (SessionDown.Orphans) instead of failing them. An
// orphan stays attached to its exchange for ResumeTimeout; past it the
// body fails with relaymsg.ErrTunnelLost (the public client sees the cut),
// and so it does at once when ResumeTimeout is 0 or the relay is closing.
// A front done with the exchange meanwhile drops it (the reader is
// closed). A stream_resume read by a session becomes Resume, which the
// router accepts when the exchange exists, is answered with a body not
// cut off, is of the asking session's tunnel, and its session is of the
// same supervisor process (same non-empty instance, both with resume):
//
//	orphan                  -> Adopt to the asking session, at once
//	old session still alive -> Handover to it; its HandedOver brings the
//	                           body (Adopt to the asking session), or none,
//	                           the stream having ended there (ResumeRefused)
//	anything else           -> ResumeRefused ("stream cannot be resumed")
//
// The exchange belongs to the adopting session from then on: its cancel or
// release goes there, and it counts in that session's requests in flight.
// Resumes are counted by result (Config.Resumes: resumed, refused,
// expired).
//
// Messages (from relaymsg):
//
//	*SessionUp   -> answers *Registered (maybe Refused, as when the
//	                session's SessionDown came first: it comes straight,
//	                the up through the root); CloseSession to the session
//	                replaced; Dispatch of the held requests
//	*SessionDown -> Dispatch elsewhere, hold, or Outcome 502, per request
//	*Forward     -> Dispatch to the least busy session, hold, or Outcome
//	                404 (unknown tunnel) or 503 (hold full or off)
//	*Response    -> Outcome to the exchange
//	*Failed      -> Outcome 502 to the exchange
//	*Done        -> Cancel, or Release of a streamed exchange, to the
//	                session (one inline both ways it forgot already); a
//	                held request is forgotten, an orphan's body closed
//	*Resume      -> Adopt (orphan) or ResumeRefused to the asking session,
//	                or Handover to the session feeding the stream
//	*HandedOver  -> Adopt or ResumeRefused to the asking session
//	*Drain       -> Outcome 503 to the held requests, orphans cut off; none
//	                held or kept from then on
//	*ListTunnels -> answers *Tunnels: those with a session
//	*ListSessions -> answers *Sessions: every known tunnel, its live
//	                sessions and held requests (the relay's dashboard)
//
// Outcomes go to the exchange's channel, which the front waits on. Timers
// (request and hold timeouts) run on protoactor's scheduler, so tests in a
// testing/synctest bubble see their exact delays.
package router
