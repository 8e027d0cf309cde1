package heartbeat

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// Defaults of the seed's "Fiber/LAN Optimized" column.
const (
	DefaultInterval = 15 * time.Second
	DefaultTimeout  = 30 * time.Second
)

// Config configures the heartbeat actor.
type Config struct {
	// Interval between heartbeats while authenticated. Default 15 s.
	Interval time.Duration
	// Timeout is how long without an ack (or since AUTHENTICATED) makes the
	// connection stale. Default 30 s.
	Timeout time.Duration
	// Logger receives the stale warning and debug lines. Default nil, which
	// discards.
	Logger *logrus.Logger
}

// DefaultConfig returns Interval 15 s, Timeout 30 s and a nil (discarding)
// Logger.
func DefaultConfig() Config {
	return Config{Interval: DefaultInterval, Timeout: DefaultTimeout}
}

// Validate reports a configuration the actor cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat: Interval must be positive, got %v", c.Interval))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat: Timeout must be positive, got %v", c.Timeout))
	}
	// A timeout shorter than the interval declares every connection stale
	// before its first heartbeat could be answered.
	if c.Interval > 0 && c.Timeout > 0 && c.Timeout < c.Interval {
		errs = append(errs, fmt.Errorf("heartbeat: Timeout (%v) must be at least Interval (%v)", c.Timeout, c.Interval))
	}
	return errors.Join(errs...)
}

// Props returns the props of a heartbeat actor with cfg, which should have
// passed Validate.
func Props(cfg Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newHeartbeat(cfg) })
}

// tick and deadline are the actor's own timer messages; gen tells a live
// timer from one cancelled after it had already fired.
type tick struct{ gen uint64 }

type deadline struct{ gen uint64 }

type heartbeat struct {
	cfg Config
	log *logrus.Entry

	tickGen, deadlineGen       uint64
	cancelTick, cancelDeadline scheduler.CancelFunc
	nextTick                   time.Time

	lastAck time.Time
	sentAt  map[string]time.Time
	// sent numbers the heartbeats: their message ids. An id only has to tell
	// this connection's heartbeats apart, and a short one keeps an idle
	// tunnel's traffic to a few bytes per heartbeat.
	sent uint64
}

func newHeartbeat(cfg Config) *heartbeat {
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	return &heartbeat{
		cfg:            cfg,
		log:            logger.WithField("actor", "heartbeat"),
		cancelTick:     func() {},
		cancelDeadline: func() {},
		sentAt:         map[string]time.Time{},
	}
}

func (h *heartbeat) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.StateChanged:
		h.stop()
		if m.State == messages.Authenticated {
			h.start(ctx)
		}
	case *actormsg.HeartbeatAck:
		h.ack(ctx, m)
	case *tick:
		if m.gen == h.tickGen {
			h.beat(ctx)
		}
	case *deadline:
		if m.gen == h.deadlineGen {
			h.stale(ctx)
		}
	case *actor.Stopping, *actor.Restarting:
		h.stop()
	}
}

func (h *heartbeat) start(ctx actor.Context) {
	now := time.Now()
	h.lastAck = now
	h.nextTick = now
	h.scheduleTick(ctx)
	h.armDeadline(ctx)
}

// stop cancels both timers and forgets outstanding heartbeats; bumping the
// generations makes any timer message already queued a no-op.
func (h *heartbeat) stop() {
	h.cancelTick()
	h.cancelDeadline()
	h.tickGen++
	h.deadlineGen++
	clear(h.sentAt)
}

// scheduleTick arms the next tick against the previous due time rather than
// the time the tick was handled, so ticks do not drift.
func (h *heartbeat) scheduleTick(ctx actor.Context) {
	h.tickGen++
	h.nextTick = h.nextTick.Add(h.cfg.Interval)
	h.cancelTick = scheduler.NewTimerScheduler(ctx).SendOnce(time.Until(h.nextTick), ctx.Self(), &tick{gen: h.tickGen})
}

func (h *heartbeat) armDeadline(ctx actor.Context) {
	h.cancelDeadline()
	h.deadlineGen++
	due := h.lastAck.Add(h.cfg.Timeout)
	h.cancelDeadline = scheduler.NewTimerScheduler(ctx).SendOnce(time.Until(due), ctx.Self(), &deadline{gen: h.deadlineGen})
}

func (h *heartbeat) beat(ctx actor.Context) {
	now := time.Now()
	// Acks that have not come within the timeout never will in a way that
	// matters: the deadline has judged them, so stop remembering them.
	for id, at := range h.sentAt {
		if now.Sub(at) > h.cfg.Timeout {
			delete(h.sentAt, id)
		}
	}
	h.sent++
	id := strconv.FormatUint(h.sent, 36)
	h.sentAt[id] = now
	ctx.Send(ctx.Parent(), &actormsg.SendHeartbeat{MessageID: id, Timestamp: now.UnixMilli()})
	h.scheduleTick(ctx)
}

func (h *heartbeat) ack(ctx actor.Context, m *actormsg.HeartbeatAck) {
	sent, ok := h.sentAt[m.MessageID]
	if !ok {
		h.log.WithField("message_id", m.MessageID).Debug("Ignoring heartbeat ack for an unknown heartbeat")
		return
	}
	delete(h.sentAt, m.MessageID)
	now := time.Now()
	ctx.Send(ctx.Parent(), &actormsg.HeartbeatRTT{RTT: now.Sub(sent)})
	h.lastAck = now
	h.armDeadline(ctx)
}

func (h *heartbeat) stale(ctx actor.Context) {
	since := time.Since(h.lastAck)
	h.log.WithField("since_ack_seconds", since.Seconds()).
		Warnf("Stale connection detected (no heartbeat ack for %.1fs)", since.Seconds())
	h.stop()
	ctx.Send(ctx.Parent(), &actormsg.Stale{SinceAck: since})
}
