// Package datapath is a tunnel supervisor's data path: everything that
// travels on the tunnel's authenticated connections besides auth and
// heartbeats. It matches answers to the host's requests, sends and receives
// streamed bodies under PROTOCOL.md's per-stream windows, moves a response
// stream to another connection when its own is lost, and runs the host's
// handler for what the relay sends. The supervision tree owns the
// connections; a Plane owns what is in flight on them. Package supervisor's
// Tunnel is the facade that wires the two together.
//
// # What a Plane takes
//
// New takes a Config: the tunnel's limits (InlineLimit, ChunkSize, Window),
// its retry and resume settings, a logger, and two functions:
//
//   - Post hands a frame to the supervision tree's root, which writes it on
//     an authenticated connection or queues it. The Plane posts there every
//     frame that no session it knows of takes directly (see Routes below).
//   - Handle runs the host's handler for one message. Nil answers every
//     request of the relay with an error frame.
//
// The tree calls four methods, none of which blocks:
//
//   - Deliver, on a connection's reader goroutine, with every application
//     frame and chunk of an authenticated session, in order, tagged with the
//     connection, the session's epoch and the session's Sink.
//   - Lost, on the connection's path, each time the connection fails or is
//     dropped, with the epoch of its last authenticated session: that
//     session, and any before it on the connection, are over.
//   - Acked, on the path, with every heartbeat_ack.
//   - StateChanged, on the path, with every state change; an authenticated
//     session says whether its relay keeps cut response streams.
//
// The facade calls Send and Request for the host, and stops the Plane in two
// steps around the actors' own stop: Close before (nothing new is written,
// no handler starts), Drain after (whatever still waits fails with
// messages.ErrStopped, handlers' contexts end, Drain waits for the handlers).
//
// # What a Plane gives
//
//   - Send returns once a frame, and a streamed body's every chunk and end,
//     is written.
//   - Request returns the answer with the request's message_id: a response,
//     or an error frame with an error wrapping messages.ErrRemote.
//   - Handle is called in a goroutine of its own for each request of the
//     relay, and for each response or error that no Request waits for. Its
//     context ends when the relay cancels the request, when the session it
//     came on is lost, or on Drain; for a request, the context also names
//     the request, so that Send of its answer takes the request's route.
//
// Invalid messages fail with messages.ErrInvalidMessage, a message_id
// already in flight with messages.ErrDuplicateID: the tunnel's public
// errors, which package supervisor also names.
//
// # Routes, epochs and sinks
//
// A route is a connection and one authenticated session on it (its epoch;
// the tree numbers sessions across all the tunnel's connections, so an epoch
// names one session wherever it is seen). Everything in flight is bound to
// the route it travels on, and losing that session fails it and nothing
// else:
//
//   - the host's Request calls, under their message_id, bound once written;
//   - the relay's frames, under their connection and message_id, since the
//     relay may retry a request on another connection under the same id:
//     requests in the handler, bodies being received, bodies being sent;
//   - answers: a response, error or cancel goes back on the route of the
//     request it answers (routeOf), and fails with
//     messages.ErrConnectionLost once that session is gone rather than take
//     another connection. A request takes any connection.
//
// Each inbound frame carries its session's Sink, the socket's own queue. The
// Plane remembers it per route, and a frame pinned to that route is pushed
// there directly, with no mailbox hop; any other frame is posted to the
// root. A lost session's sink is forgotten, and a frame of that session read
// before its end does not bind it again.
//
// # Streams and resume
//
// A body over InlineLimit, or given as a reader, is sent as a stream: the
// chunks (ChunkSize each) follow the first frame on its route, under the
// stream's window, a few of them on their way to the socket at
// once (pipeline). A body the relay streams arrives as a reader that grants
// window back, on the body's own route, as the host reads it. Data for a
// stream this side does not know is answered with one error frame per id.
//
// A response stream on a session whose relay keeps cut streams (auth's
// resume, Config.ResumeStreams) is resumable: it keeps the bytes it sent and
// the relay has not granted back yet. When its session is lost, it asks the
// relay over any other connection to take it over (stream_resume); the
// relay's answer, read on that connection, says how many bytes it has and
// how much window it grants, and the stream goes on there from that offset,
// its handler still running. A stream moves at most three times, each move
// within ResumeTimeout; a move that fails cancels its handler.
//
// # Lingering
//
// A resumable stream written to its end is not yet read: a reset drops what
// the sockets held. So it lingers, with the bytes it keeps, until the relay
// acks a heartbeat sent after its end (Acked; one connection's frames are
// read in order). Lost before that, it moves like any other and sends its
// tail and end again. Lingering streams keep at most 32 MiB between them;
// past that, the oldest give up their protection.
//
// # Losses
//
// Lost fails everything bound to the connection's sessions up to the epoch
// that ended, with an error wrapping messages.ErrConnectionLost: Requests
// already written (a Request whose write raced the loss sees the ended epoch
// and fails too; an idempotent inline one is sent once more, see
// Config.RetryIdempotent), bodies being received, bodies being sent (a
// resumable one moves instead), the contexts of handlers working for those
// sessions (except those whose stream moves). A handler's entry stays until
// it returns, so that its answer still finds its lost route, and fails. What
// travels on the tunnel's other connections is untouched.
//
// # Locking
//
// One mutex guards the Plane's maps; each stream being sent has its own,
// always taken after the Plane's when both are held. Nothing blocks under
// the Plane's mutex: each waiting Request's answer channel holds its one
// answer, and each stream_resume's its one reply.
//
// # Files
//
// plane.go: the Plane, its Config, and its stop. send.go: Send, frames and
// routes. request.go: Request and answers (correlation). deliver.go: Deliver
// and received bodies. handle.go: the host's handlers. stream.go: bodies
// being sent. resume.go: their moves. linger.go: streams sent whole, until
// read. loss.go: Lost and what it fails. post.go: how frames leave (sinks,
// Post, the pipeline).
package datapath
