// Package session is the relay's session actor: one per supervisor
// connection. It owns the WebSocket: one reader goroutine and, while there
// is something to write for an authenticated session or a close to send,
// one writer goroutine, which returns once the outbox is empty (an idle
// session holds no writer, nor its stack; pings, when a ping interval is
// set, are queued by a timer like any frame). They talk to the actor only
// through messages and the session's outbox. The actor itself never
// blocks. The session keeps no log entry: its fields are put together
// when a line is logged.
//
// Lifecycle: the supervisor must send a valid auth frame within the auth
// timeout, and nothing else first. Until auth_ok the connection costs almost
// nothing: the reader reads one message, of at most AuthReadLimit bytes, and
// holds there; no per-session state is made. The session asks the auth
// manager; a refusal may come with a delay (an address past its failure
// limit), during which the connection is held, at most until the auth
// timeout. A good key registers the session with the router, with the
// instance and index of the auth frame (which tell the router whether it
// replaces an older session or serves beside the others), and only then is
// auth_ok sent (so that a supervisor that has auth_ok is routable). From
// then on the session answers heartbeats at once, writes the requests the
// router dispatches, and routes the frames of their answers: responses to
// the router, chunks into the body streams (within their window and the
// relay's buffer budget), window_updates to the request bodies' send
// windows. A streamed request body starts only once its request frame is
// written (the writer hands the front its write then).
//
// When the session ends, SessionDown lists the requests whose frame was
// written, or was being written: the others (still queued, which are
// dropped rather than written before the close frame, or whose write
// failed) never reached the supervisor, and the router may send them
// through another session. The outbox keeps that account under its lock,
// so the hot path has no message per request.
//
// The connection is closed with a code that says why: 1002 for a frame that
// is not JSON or has no type, 1008 for anything but auth before auth, a
// wrong key or no auth in time, 1009 for a message over the read limit,
// 1013 for a connection evicted before auth (to make room for a newer one)
// or refused at the relay's or the tunnel's session limit (the reason says
// which), and 1000 when a newer session of the same supervisor connection
// replaces it. A supervisor that sends nothing at all (no frame,
// no pong) for the heartbeat timeout is dropped; its heartbeats are the
// keepalive, and the writer pings it only if a ping interval is set. A supervisor that lets more than MaxReplyQueue bytes of
// answers pile up unread is dropped at once (SLOW_READER). Unknown frame
// types, and frames about message ids the session does not know, are
// answered with an error frame (once per id) and the session stays up.
// Frame fields that reach the log are cut short (wire.Excerpt).
//
// Resume: a supervisor whose auth frame says "resume":true (and a relay
// that keeps streams, Config.Resume) gets auth_ok with "resume":true. When
// such a session ends, the response bodies it was still feeding go to the
// router (SessionDown.Orphans), their window grants rebound to nothing,
// instead of failing. Its stream_resume frames go to the router (Resume);
// a session without resume answers them {"type":"error","message_id":ID,
// "error":"stream cannot be resumed"}, as it does on ResumeRefused. On
// Adopt the session routes the stream's chunks, stream_end and
// stream_error to the reader, then rebinds the reader's grants to its own
// socket and answers {"type":"stream_resume","message_id":ID,
// "offset":<bytes the relay has>,"bytes":<credit the sender has>}. On
// Handover it gives the stream up (HandedOver, with its reader, or none if
// it no longer feeds it) and drops the stream's late frames without a
// word.
//
// A stopped session clears its state, and its props forget the connection:
// a stale reference to a stopped actor holds nothing large.
//
// Messages (from relaymsg):
//
//	to parent:   *Authenticate (request; answer *AuthResult comes back),
//	             *SessionUp with instance, index and resume (request;
//	             answer *Registered comes back, which may refuse),
//	             *AuthTimedOut
//	to router:   *SessionDown with the requests written and the orphans,
//	             *Response, *Failed, *Resume, *HandedOver (to
//	             Config.Router, or the parent when it is nil). A response
//	             inline to an inline request completes its exchange: the
//	             session forgets it at once, and gets no Release for it.
//	from parent: *Evict
//	from router: *Dispatch, *Cancel, *Release, *CloseSession, *Handover,
//	             *Adopt, *ResumeRefused
package session
