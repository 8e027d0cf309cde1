package session

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// errReleased ends what is left of an exchange the router let go of.
var errReleased = errors.New("session: exchange complete")

func (s *session) send(f *wire.Frame) {
	s.link.out.frame(s.link.encode(f))
}

// reply queues an answer to one of the supervisor's frames: those are
// bounded (see outbox.reply).
func (s *session) reply(f *wire.Frame) {
	s.link.out.reply(s.link.encode(f))
}

func (s *session) onFrame(ctx actor.Context, f *wire.Frame) {
	if s.phase != open {
		if s.phase == awaitingAuth && f.Type == wire.TypeAuth {
			s.phase = authenticating
			s.tunnel = f.Tunnel
			if s.tunnel == "" {
				s.tunnel = wire.DefaultTunnel
			}
			s.instance, s.index = f.Instance, f.Index
			s.resume = f.Resume && s.cfg.Resume
			s.encoding = wire.Choose(f.Encodings, s.cfg.Encodings...)
			s.client = wire.Excerpt(f.Client)
			ctx.Request(ctx.Parent(), &relaymsg.Authenticate{APIKey: f.APIKey, Tunnel: s.tunnel, Addr: s.addr})
			return
		}
		s.logs().WithField("type", wire.Excerpt(f.Type)).Warn("Frame before authentication; closing")
		s.close(ctx, NotAuthFirst)
		return
	}
	switch f.Type {
	case wire.TypeHeartbeat:
		s.reply(&wire.Frame{Type: wire.TypeHeartbeatAck, MessageID: f.MessageID, Timestamp: f.Timestamp})
	case wire.TypeResponse:
		s.onResponse(ctx, f)
	case wire.TypeStreamEnd, wire.TypeStreamError:
		s.onStreamEnd(f)
	case wire.TypeWindowUpdate:
		if c := s.calls[f.MessageID]; c != nil && c.upload != nil {
			c.upload.Grant(f.Bytes)
		} else {
			s.unknown(f.MessageID, "window_update for an unknown stream")
		}
	case wire.TypeError, wire.TypeCancel:
		s.onGiveUp(ctx, f)
	case wire.TypeStreamResume:
		if !s.resume {
			s.refuseResume(f.MessageID)
			return
		}
		// The router knows whose stream it is, and whether it still runs.
		ctx.Send(s.router(ctx), &relaymsg.Resume{MessageID: f.MessageID, Session: ctx.Self()})
	case wire.TypeRequest:
		// Its body's chunks, if it has any, are dropped without a word.
		s.cancelled.add(f.MessageID)
		s.reply(&wire.Frame{Type: wire.TypeError, MessageID: f.MessageID, Error: "no route: the relay takes no requests from a supervisor"})
	default:
		text := fmt.Sprintf("unknown frame type %q", wire.Excerpt(f.Type))
		if wire.Known(f.Type) {
			text = fmt.Sprintf("unexpected frame type %q", f.Type)
		}
		s.reply(&wire.Frame{Type: wire.TypeError, MessageID: f.MessageID, Error: text})
	}
}

func (s *session) onAuthResult(ctx actor.Context, r *relaymsg.AuthResult) {
	if s.phase != authenticating {
		return
	}
	if !r.OK {
		if r.Delay > 0 {
			// Held until its turn, or until the auth timeout, whichever
			// comes first: the reader reads nothing more meanwhile.
			s.phase = refusing
			s.refuseTimer = s.timers.SendOnce(r.Delay, ctx.Self(), &refuseNow{})
			return
		}
		s.refuse(ctx)
		return
	}
	s.phase = registering
	s.registered = true
	ctx.Request(ctx.Parent(), &relaymsg.SessionUp{Tunnel: s.tunnel, SessionID: s.id, Session: ctx.Self(), Instance: s.instance, Index: s.index, Resume: s.resume})
}

// refuse answers a wrong key: auth_error, then close 1008.
func (s *session) refuse(ctx actor.Context) {
	s.send(&wire.Frame{Type: wire.TypeAuthError, Error: "Invalid API key"})
	s.close(ctx, InvalidKey)
}

func (s *session) onRegistered(ctx actor.Context, r *relaymsg.Registered) {
	if s.phase != registering {
		return
	}
	if r.Refused {
		s.registered = false
		s.reason = r.Reason
		if s.reason == "" {
			s.reason = causes[SessionLimit].reason
		}
		s.logs().WithField("reason", s.reason).Warn("Session limit reached; refusing an authenticated supervisor")
		s.close(ctx, SessionLimit)
		return
	}
	s.phase = open
	s.authTimer()
	s.authTimer = func() {} // the stopped timer need not be kept
	ok := &wire.Frame{Type: wire.TypeAuthOK, SessionID: s.id, Resume: s.resume}
	if s.encoding != wire.EncodingJSON {
		ok.Encoding = s.encoding
	}
	s.send(ok)
	// From here on frames go out in the chosen encoding, and the reader
	// (still held at its gate) accepts it.
	s.link.bin1 = s.encoding == wire.EncodingBin1
	s.link.proceed()
	s.logs().Info("Supervisor authenticated")
}

// onDispatch queues the exchange's request frame. A streamed body waits
// until the frame is written (the writer hands the front its write then),
// so that an exchange whose frame never left can go through another
// session with its body unread.
func (s *session) onDispatch(ex *relaymsg.Exchange) {
	id := ex.ID()
	if s.calls == nil {
		s.calls = make(map[string]*call)
	}
	s.calls[id] = &call{upload: ex.Upload}
	var accepted chan<- relaymsg.WriteFunc
	if ex.Upload != nil {
		accepted = ex.Accepted
	}
	s.link.out.request(id, s.link.encode(ex.Request), accepted)
}

func (s *session) onResponse(ctx actor.Context, f *wire.Frame) {
	id := f.MessageID
	c := s.calls[id]
	switch {
	case c == nil:
		s.unknown(id, "response for an unknown message_id")
	case c.answered:
		s.complain(id, "duplicate response")
	default:
		c.answered = true
		if f.Stream {
			c.body = wire.NewStreamReader(s.cfg.Window, s.granter(id))
			if s.cfg.Budget != nil {
				c.body.Share(s.cfg.Budget)
			}
		}
		ctx.Send(s.router(ctx), &relaymsg.Response{MessageID: id, Frame: f, Body: c.body})
		if c.body == nil && c.upload == nil {
			// Complete: nothing more comes for it, and the router sends
			// no Release for it.
			delete(s.calls, id)
		}
	}
}

// granter returns the grant function of a response body stream: it runs on
// the goroutine that reads the body, so it touches only the outbox.
func (s *session) granter(id string) func(n int64) {
	l := s.link
	return func(n int64) {
		l.out.frame(l.encode(&wire.Frame{Type: wire.TypeWindowUpdate, MessageID: id, Bytes: n}))
	}
}

// discardGrant is the grant of a response body no socket feeds: window
// updates for it would go to a connection that is gone, and the credit
// they stand for is counted by the reader, and given on a resume.
func discardGrant(int64) {}

// onHandover gives the response stream id up to another session of the
// same supervisor. Its late chunks and ends are dropped without a word
// (the id counts as cancelled): the supervisor sends again from the
// offset through the other session. The request body, if it still
// uploads, goes on through this session's writer.
func (s *session) onHandover(ctx actor.Context, h *relaymsg.Handover) {
	var body *wire.StreamReader
	if c := s.calls[h.MessageID]; c != nil && c.body != nil {
		body = c.body
		body.Rebind(discardGrant)
		delete(s.calls, h.MessageID)
		s.cancelled.add(h.MessageID)
		s.logs().WithField("message_id", wire.Excerpt(h.MessageID)).Info("Response stream handed over to another session of the supervisor")
	}
	ctx.Send(s.router(ctx), &relaymsg.HandedOver{MessageID: h.MessageID, To: h.To, Body: body})
}

// onAdopt takes over a resumed response stream. The stream is routed here
// before the supervisor hears stream_resume, so that the chunks it sends
// from the offset find their reader.
func (s *session) onAdopt(a *relaymsg.Adopt) {
	id := a.MessageID
	if s.calls == nil {
		s.calls = make(map[string]*call)
	}
	s.calls[id] = &call{body: a.Body, answered: true}
	offset, credit := a.Body.Rebind(s.granter(id))
	s.logs().WithFields(logrus.Fields{"message_id": wire.Excerpt(id), "offset": offset, "credit": credit}).Info("Response stream resumed")
	s.reply(&wire.Frame{Type: wire.TypeStreamResume, MessageID: id, Offset: offset, Bytes: credit})
}

// refuseResume answers a stream_resume that cannot be honoured.
func (s *session) refuseResume(id string) {
	s.reply(&wire.Frame{Type: wire.TypeError, MessageID: id, Error: cannotResume})
}

// cannotResume is the error frame's text for a refused stream_resume.
const cannotResume = "stream cannot be resumed"

func (s *session) onChunk(id string, data []byte) {
	c := s.calls[id]
	if c == nil || c.body == nil {
		s.unknown(id, "chunk for an unknown stream")
		return
	}
	err := c.body.Push(data)
	if err == nil {
		return
	}
	// The public client's response is cut off; the front then gives the
	// exchange up, and the router has it cancelled.
	c.body.Fail(err)
	c.body = nil
	if errors.Is(err, wire.ErrBudgetExceeded) {
		s.logs().WithFields(logrus.Fields{"message_id": wire.Excerpt(id), "error": err}).Warn("Public client lags while the relay's stream buffers are full; cutting its response off")
		return
	}
	s.logs().WithField("message_id", wire.Excerpt(id)).Warn("Supervisor ignored the stream window")
	s.complain(id, err.Error())
}

func (s *session) onStreamEnd(f *wire.Frame) {
	c := s.calls[f.MessageID]
	if c == nil || c.body == nil {
		s.unknown(f.MessageID, f.Type+" for an unknown stream")
		return
	}
	if f.Type == wire.TypeStreamEnd {
		c.body.FinishWith(f.Trailers)
	} else {
		c.body.Fail(fmt.Errorf("supervisor: %s", f.Error))
	}
	c.body = nil
}

// onGiveUp handles an error or cancel frame from the supervisor: if it names
// a request in flight, that request has failed. Errors are never answered
// with errors, lest two peers trade them forever.
func (s *session) onGiveUp(ctx actor.Context, f *wire.Frame) {
	text := f.Error
	if f.Type == wire.TypeCancel {
		text = "cancelled by the supervisor"
	}
	c := s.calls[f.MessageID]
	switch {
	case c == nil:
		s.logs().WithFields(logrus.Fields{"message_id": wire.Excerpt(f.MessageID), "type": f.Type, "error": wire.Excerpt(f.Error)}).Debug("Supervisor gave up on a message the session does not know")
	case !c.answered:
		ctx.Send(s.router(ctx), &relaymsg.Failed{MessageID: f.MessageID, Error: text})
		s.drop(f.MessageID, c, errors.New(text))
		s.cancelled.add(f.MessageID)
	case c.body != nil:
		c.body.Fail(fmt.Errorf("supervisor: %s", text))
		c.body = nil
	}
}

func (s *session) onCancel(id string) {
	c := s.calls[id]
	if c == nil {
		return
	}
	s.drop(id, c, context.Canceled)
	s.cancelled.add(id)
	s.send(&wire.Frame{Type: wire.TypeCancel, MessageID: id})
}

// drop forgets a call, failing its streams with err.
func (s *session) drop(id string, c *call, err error) {
	delete(s.calls, id)
	if c.upload != nil {
		c.upload.Close(err)
	}
	if c.body != nil {
		c.body.Fail(err)
	}
}

// unknown answers a frame about an id the session does not know, unless
// the id is one it cancelled (frames in flight when the cancel went out).
func (s *session) unknown(id, text string) {
	if !s.cancelled.has(id) {
		s.complain(id, text)
	}
}

// complain sends an error frame about id, once per id.
func (s *session) complain(id, text string) {
	if s.complained.add(id) {
		s.reply(&wire.Frame{Type: wire.TypeError, MessageID: id, Error: text})
	}
}

func (s *session) onReadFailed(ctx actor.Context, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		limit := s.cfg.ReadLimit
		if s.phase != open {
			limit = s.cfg.AuthReadLimit
		}
		s.logs().WithField("limit", limit).Warn("Message over the read limit")
		s.close(ctx, TooBig)
	case errors.As(err, &ne) && ne.Timeout():
		s.logs().WithField("delay", s.cfg.HeartbeatTimeout.String()).Warn("Nothing from the supervisor for the heartbeat timeout; dropping it")
		s.close(ctx, Silent)
	default:
		s.logs().WithError(err).Debug("Connection ended")
		s.close(ctx, PeerGone)
	}
}
