package connection

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Props returns the props of a connection actor for cfg, zero fields set to
// their defaults. Spawn it as a child of the actor that supervises it.
func Props(cfg Config) *actor.Props {
	cfg = cfg.withDefaults()
	return actor.PropsFromProducer(func() actor.Actor {
		return &connector{cfg: cfg, log: cfg.Logger.WithField("actor", "connection")}
	})
}

// connector is one instance: one connection attempt.
type connector struct {
	cfg   Config
	log   *logrus.Entry
	state messages.State
	sock  *socket
}

func (c *connector) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.start(ctx)
	case *actor.Stopping:
		c.release(ctx, messages.ErrStopped)
	case *actor.Restarting:
		c.release(ctx, nil)

	case *dialed:
		if m.sock == c.sock {
			c.report(ctx, &messages.StateChanged{State: messages.Connected})
		}
	case *authSent:
		if m.sock == c.sock {
			c.report(ctx, &messages.StateChanged{State: messages.Authenticating})
		}
	case *authOK:
		if m.sock == c.sock {
			c.authenticated(ctx, m)
		}
	case *received:
		if m.sock == c.sock {
			c.dispatch(ctx, m)
		}
	case *sockFailed:
		if m.sock == c.sock {
			c.fail(ctx, m.phase, m.err)
		}

	case *actormsg.Outbound:
		if c.state != messages.Authenticated || !c.sock.queue.push(item{out: m}) {
			ctx.Send(ctx.Parent(), &actormsg.Undeliverable{Frames: []*actormsg.Outbound{m}})
		}
	case *actormsg.SendHeartbeat:
		c.sendOwn(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: m.MessageID, Timestamp: m.Timestamp})
	case *actormsg.Stale:
		// A verdict that reaches a new attempt was about the connection
		// before it.
		if c.state == messages.Authenticated {
			c.fail(ctx, PhaseAuthenticated, fmt.Errorf("%w: no heartbeat ack for %.1fs", ErrStale, m.SinceAck.Seconds()))
		}
	}
}

func (c *connector) start(ctx actor.Context) {
	c.sock = newSocket(c.cfg)
	c.report(ctx, &messages.StateChanged{State: messages.Connecting})
	system, self, sock := ctx.ActorSystem(), ctx.Self(), c.sock
	deliver := c.cfg.Deliver
	if deliver == nil {
		parent := ctx.Parent()
		deliver = func(in *actormsg.Inbound) { system.Root.Send(parent, in) }
	}
	sock.wg.Add(1)
	go func() {
		defer sock.wg.Done()
		sock.run(func(msg any) { system.Root.Send(self, msg) }, deliver)
	}()
}

// authenticated reports the new state before the writer starts: whatever
// the relay sees written on this session (an answer to a request the reader
// already delivered) then comes after the parent heard of it, so that a
// status asked for in reply says AUTHENTICATED. Frames queued meanwhile wait
// for the writer.
func (c *connector) authenticated(ctx actor.Context, m *authOK) {
	system, self, sock := ctx.ActorSystem(), ctx.Self(), c.sock
	c.report(ctx, &messages.StateChanged{
		State:       messages.Authenticated,
		Epoch:       m.epoch,
		SessionID:   m.sessionID,
		Resume:      m.resume,
		ConnectTime: time.Since(sock.started),
	})
	sock.wg.Add(1)
	go func() {
		defer sock.wg.Done()
		sock.write(m.ws, func(msg any) { system.Root.Send(self, msg) })
	}()
}

// dispatch handles a frame that is the connection's own business.
// Unknown frame types are answered with an error frame and the connection
// stays up, as PROTOCOL.md asks.
func (c *connector) dispatch(ctx actor.Context, m *received) {
	f := m.frame
	switch f.Type {
	case wire.TypeHeartbeatAck:
		ctx.Send(ctx.Parent(), &actormsg.HeartbeatAck{MessageID: f.MessageID, Timestamp: f.Timestamp, At: m.at})
	case wire.TypeHeartbeat:
		c.sendOwn(&wire.Frame{Type: wire.TypeHeartbeatAck, MessageID: f.MessageID, Timestamp: f.Timestamp})
	default:
		c.sendOwn(&wire.Frame{Type: wire.TypeError, MessageID: f.MessageID, Error: fmt.Sprintf("unknown message type %q", f.Type)})
	}
}

// sendOwn queues a frame of the connection's own; dropped unless authenticated.
func (c *connector) sendOwn(f *wire.Frame) {
	if c.state == messages.Authenticated {
		c.sock.queue.push(item{out: &actormsg.Outbound{Frame: f}, own: true})
	}
}

func (c *connector) report(ctx actor.Context, sc *messages.StateChanged) {
	c.state = sc.State
	sc.At = time.Now()
	entry := c.log.WithField("state", sc.State.String())
	if sc.State == messages.Authenticated {
		entry.WithField("session_id", sc.SessionID).Info("Authenticated with the relay")
	} else {
		entry.Debug("Connection state changed")
	}
	ctx.Send(ctx.Parent(), sc)
}

// fail ends this instance: the frames not yet started go back to the
// parent, the socket is torn down in the background, and the panic hands
// the typed reason to the parent's HandleFailure.
func (c *connector) fail(ctx actor.Context, phase Phase, err error) {
	typ := Classify(phase, err)
	if frames := c.sock.queue.close(); len(frames) > 0 {
		ctx.Send(ctx.Parent(), &actormsg.Undeliverable{Frames: frames})
	}
	code := wire.CloseNormal
	if typ == messages.ProtocolError {
		code = wire.CloseProtocolError
	}
	c.sock.abort(code)

	entry := c.log.WithFields(logrus.Fields{"state": c.state.String(), "failure_type": typ.String()})
	var authErr *AuthError
	switch {
	case errors.As(err, &authErr):
		entry.Error(authErr.Error())
	case typ == messages.AuthFailure:
		entry.Error("Authentication failed: " + err.Error())
	default:
		entry.WithError(err).Warn("Connection failed")
	}
	panic(&actormsg.ConnectionFailed{Type: typ, Err: err, At: time.Now(), WasAuthenticated: c.state == messages.Authenticated})
}

// release ends the socket when the instance stops or restarts. Frames still
// queued are answered with answer, or handed back to the parent when answer
// is nil (a restart: the next connection can still write them).
func (c *connector) release(ctx actor.Context, answer error) {
	if c.sock == nil {
		return
	}
	if frames := c.sock.queue.close(); len(frames) > 0 {
		if answer == nil {
			ctx.Send(ctx.Parent(), &actormsg.Undeliverable{Frames: frames})
		} else {
			for _, o := range frames {
				o.Answer(answer)
			}
		}
	}
	c.sock.release()
	c.log.WithField("state", c.state.String()).Debug("Connection closed")
}
