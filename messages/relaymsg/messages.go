package relaymsg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// ErrTunnelLost fails the streams of a session that ended: a public response
// cut off mid-body, a request body whose upload can no longer be sent.
var ErrTunnelLost = errors.New("relay: tunnel lost")

// Authenticate asks the auth manager whether APIKey opens Tunnel for a
// supervisor connecting from Addr (an IP address). It is answered with
// *AuthResult. It never prints its key: protoactor logs undeliverable
// messages, and a key must never reach a log.
type Authenticate struct {
	APIKey string
	Tunnel string
	Addr   string
}

func (a *Authenticate) String() string {
	return fmt.Sprintf("Authenticate{Tunnel:%q Addr:%q APIKey:<redacted>}", a.Tunnel, a.Addr)
}

// GoString keeps the key out of %#v as well.
func (a *Authenticate) GoString() string { return a.String() }

// LogValue keeps the key out of structured logs.
func (a *Authenticate) LogValue() slog.Value {
	return slog.GroupValue(slog.String("tunnel", a.Tunnel), slog.String("addr", a.Addr))
}

// AuthResult answers Authenticate. OK is false for a wrong key, and for a
// key that belongs to another tunnel. Delay, for a refusal, is how long the
// session holds the connection before it answers auth_error: an address
// with too many failures lately has its wrong keys answered slowly.
type AuthResult struct {
	OK     bool
	Tunnel string
	Delay  time.Duration
}

// CheckAddress asks the auth manager whether Addr (a client address) may
// make one more WebSocket upgrade. It is answered with *AddressVerdict.
type CheckAddress struct {
	Addr string
}

// AddressVerdict answers CheckAddress. A blocked address has made upgrades
// faster than its rate allows, and is refused (HTTP 429); RetryAfter says
// when the next one would pass.
type AddressVerdict struct {
	Blocked    bool
	RetryAfter time.Duration
}

// SessionUp says an authenticated session serves Tunnel. The router answers
// with *Registered once requests for Tunnel go to Session. Instance and
// Index come from the auth frame: they name the supervisor process and
// which of its connections this is. An older session of the tunnel with
// the same pair is sent CloseSession (replaced); sessions with other pairs
// serve beside it. A session without Instance (an older supervisor) counts
// as Instance "" and Index 0, so that it replaces its predecessor. Resume
// is set when the session told its supervisor auth_ok with resume: its
// response streams outlive it (see SessionDown.Orphans and Resume).
type SessionUp struct {
	Tunnel    string
	SessionID string
	Session   *actor.PID
	Instance  string
	Index     int
	Resume    bool
}

// Registered answers SessionUp: the session may tell its supervisor
// auth_ok. Refused is set when the relay holds as many authenticated
// sessions as it may, or the tunnel as many as it may: the session closes
// with 1013 instead, and Reason as the close reason (empty: the session's
// default, "relay at its session limit").
type Registered struct {
	Refused bool
	Reason  string
}

// AuthTimedOut says a connection from Addr sent no valid auth frame within
// the auth timeout: the auth manager counts it as a failure of Addr.
type AuthTimedOut struct {
	Addr string
}

// Evict tells a session that is not authenticated yet to close (1013): the
// relay holds as many unauthenticated connections as it may, from its
// address or in all, and a newer one needs the room.
type Evict struct{}

// SessionDown says a session that the router registered has ended. Written
// lists the exchanges dispatched to it whose request frame was written to
// its socket, or may have been (its write was under way when the session
// closed): those may have reached the supervisor. Every other exchange
// dispatched to the session never left the relay (it waited in the
// session's queue, its write failed, or its Dispatch came too late), so
// the router may send it through another session. The list is made once,
// when the session ends, so that no message per request is needed.
//
// Orphans, from a session with resume, are the response bodies it was
// still feeding: not failed, their grants rebound to nothing (the socket
// is gone), for the router to keep until another session of the same
// supervisor resumes them or the resume timeout passes. A session without
// resume fails its bodies with ErrTunnelLost instead, and has no orphans.
type SessionDown struct {
	Tunnel    string
	SessionID string
	Session   *actor.PID
	Reason    string
	Written   []string
	Orphans   []Orphan
}

// Orphan is a response body whose session ended mid-stream: its exchange
// is MessageID, its reader Body, which nobody feeds until it is adopted.
type Orphan struct {
	MessageID string
	Body      *wire.StreamReader
}

// Resume asks the router to move the response stream MessageID to Session,
// whose supervisor sent stream_resume for it. The router answers the
// session with Adopt, or ResumeRefused. It accepts only a stream still
// coming in (answered, streamed, not ended) of the session's tunnel, whose
// session is of the same supervisor process (same non-empty instance, both
// with resume), and only one resume of a stream at a time.
type Resume struct {
	MessageID string
	Session   *actor.PID
}

// Handover tells the live session feeding the response stream MessageID
// to give it up to To (its supervisor resumed it on another connection,
// having noticed the loss of this one first). The session drops the id
// from its routing (chunks for it that come later are dropped without a
// word: the supervisor sends them again from the offset) and answers the
// router with HandedOver.
type Handover struct {
	MessageID string
	To        *actor.PID
}

// HandedOver answers Handover: Body is the stream's reader, its grants
// rebound to nothing, or nil when the session no longer fed it (it ended,
// or was let go).
type HandedOver struct {
	MessageID string
	To        *actor.PID
	Body      *wire.StreamReader
}

// Adopt gives a session the response stream MessageID that its supervisor
// resumed: the session routes the stream's frames to Body from now on,
// rebinds its grants to its own socket and answers the supervisor
// stream_resume with the offset and credit the reader reports.
type Adopt struct {
	MessageID string
	Body      *wire.StreamReader
}

// ResumeRefused tells a session that the stream_resume of MessageID is
// refused: it answers its supervisor with an error frame.
type ResumeRefused struct {
	MessageID string
}

// CloseSession tells a session to close its connection with Code and Reason
// (a newer session of the same supervisor connection replaced it).
type CloseSession struct {
	Code   int
	Reason string
}

// WriteFunc writes one WebSocket message through a session's writer and
// returns once it is written, or fails when ctx ends or the session closes.
// Its signature is the write parameter of wire.SendStream.
type WriteFunc func(ctx context.Context, binary bool, data []byte) error

// Outcome is how a public request ends on the tunnel side: a response, or
// the HTTP status and error text the front answers with instead.
type Outcome struct {
	// Response is the supervisor's response frame; nil on failure.
	Response *wire.Frame
	// Body yields the response body when Response.Stream is set. The front
	// must Close it when done.
	Body *wire.StreamReader
	// Status and Error, when Response is nil: e.g. 404, 502, 503, 504.
	Status int
	Error  string
}

// Exchange is one public HTTP request on its way through a tunnel. The front
// creates it and waits on its channels; the router and the session fill them
// without ever blocking, since each has room for the one value it gets.
type Exchange struct {
	Tunnel string
	// Request is the request frame, message_id set. Request.Stream is set
	// when the body follows as chunks.
	Request *wire.Frame
	// Upload is the flow-control window of the streamed request body; nil
	// when the body is inline.
	Upload *wire.SendWindow
	// Accepted receives the session's writer once the request frame is
	// written, when Upload is set: the body's chunks go through it. Until
	// then nothing of the body is read, so that a request whose frame never
	// left one session can go through another whole.
	Accepted chan WriteFunc
	// Outcome receives exactly one value.
	Outcome chan Outcome
}

// NewExchange returns an exchange for req on tunnel, with its channels.
func NewExchange(tunnel string, req *wire.Frame, upload *wire.SendWindow) *Exchange {
	return &Exchange{
		Tunnel:   tunnel,
		Request:  req,
		Upload:   upload,
		Accepted: make(chan WriteFunc, 1),
		Outcome:  make(chan Outcome, 1),
	}
}

// ID is the exchange's message_id.
func (e *Exchange) ID() string { return e.Request.MessageID }

// Forward asks the router to send a public request through its tunnel.
type Forward struct {
	Exchange *Exchange
}

// Dispatch asks a session to write the exchange's request frame and to
// route the frames of its answer. The router may dispatch one exchange
// again, with the same message_id, to another session of the tunnel when
// the first one ends before the response (see SessionDown).
type Dispatch struct {
	Exchange *Exchange
}

// Response is a supervisor's response frame for MessageID. Body is set when
// the body is streamed.
type Response struct {
	MessageID string
	Frame     *wire.Frame
	Body      *wire.StreamReader
}

// Failed says the supervisor gave up on MessageID before responding (it sent
// an error or a cancel frame for it).
type Failed struct {
	MessageID string
	Error     string
}

// Done says the front is finished with an exchange. Cancel is set when the
// supervisor should stop working on it (the public client went away, or the
// request body could not be sent). An exchange still held for a session
// (none was connected) is forgotten, and no session hears of it.
type Done struct {
	MessageID string
	Cancel    bool
}

// Cancel tells a session to send a cancel frame for MessageID and forget it.
type Cancel struct {
	MessageID string
}

// Release tells a session that MessageID is complete: forget it, send
// nothing. It is sent only for an exchange with a streamed body either way:
// a session forgets one whose response and request were both inline as it
// routes the response.
type Release struct {
	MessageID string
}

// Drain tells the router that the relay is closing: no session can connect
// any more, so the requests it holds for one are answered 503 at once, and
// it holds no more.
type Drain struct{}

// ListTunnels asks the router for the connected tunnels; it answers *Tunnels.
type ListTunnels struct{}

// Tunnels lists the names of the connected tunnels, sorted.
type Tunnels struct {
	Names []string
}

// ListSessions asks the router for every known tunnel and its live
// sessions (the relay's dashboard); it answers *Sessions.
type ListSessions struct{}

// Sessions answers ListSessions: every tunnel the router knows (those with
// a key, connected or not, and any that registered a session), sorted by
// name.
type Sessions struct {
	Tunnels []TunnelSessions
}

// TunnelSessions is one tunnel's live sessions, oldest first, how many
// requests it holds while it has none, and when its last session ended
// (zero: none has).
type TunnelSessions struct {
	Name     string
	Sessions []SessionInfo
	Held     int
	LastSeen time.Time
}

// SessionInfo is one live session as the router sees it: no key, no
// address. Instance and Index come from the supervisor's auth frame.
type SessionInfo struct {
	ID       string
	Instance string
	Index    int
	InFlight int
	Since    time.Time
}

// ReloadKeys gives the auth manager the relay's keys anew (a reload, on
// SIGHUP): Keys maps every tunnel to its key. From then on keys are checked
// against these only. It is answered with *KeysReloaded when it was asked
// (a ReloadKeys sent with no sender, as after a restart of the manager, is
// not answered). Like Authenticate it never prints a key.
type ReloadKeys struct {
	Keys map[string]string
}

func (m *ReloadKeys) String() string {
	return fmt.Sprintf("ReloadKeys{%d keys: <redacted>}", len(m.Keys))
}

// GoString keeps the keys out of %#v as well.
func (m *ReloadKeys) GoString() string { return m.String() }

// LogValue keeps the keys out of structured logs.
func (m *ReloadKeys) LogValue() slog.Value { return slog.IntValue(len(m.Keys)) }

// KeysReloaded answers ReloadKeys. Revoked names, sorted, the tunnels whose
// key is gone or changed: their sessions authenticated with a key that no
// longer opens them. Added names, sorted, the tunnels that had no key.
type KeysReloaded struct {
	Revoked []string
	Added   []string
}

// KnownTunnels tells the router the tunnels that have a key after a reload:
// a public request for a new one is held for a session (not 404) from then
// on. Tunnels it knew stay known.
type KnownTunnels struct {
	Names []string
}

// CloseSessions tells the router to close, with Code and Reason, every
// registered session of Tunnels and the registered sessions among
// Sessions (a reload revoked the key they authenticated with). Sessions
// of other tunnels are left alone.
type CloseSessions struct {
	Tunnels  []string
	Sessions []*actor.PID
	Code     int
	Reason   string
}
