package breaker

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages"
)

// Defaults of the seed's circuit breaker settings.
const (
	DefaultThreshold  = 5
	DefaultRecovery   = 300 * time.Second
	DefaultFlapWindow = 15 * time.Second
)

// Config configures the breaker actor.
type Config struct {
	// Threshold is the number of consecutive failures that opens the
	// breaker. Default 5.
	Threshold int
	// Recovery is how long an open breaker holds attempts back before the
	// half-open trial. Default 300 s.
	Recovery time.Duration
	// FlapWindow: a drop this soon after a success counts as if the success
	// had not happened. Default 15 s, the heartbeat interval; 0 disables
	// flap detection.
	FlapWindow time.Duration
	// Logger receives the breaker's state changes. Default nil, which
	// discards.
	Logger *logrus.Logger
}

// DefaultConfig returns Threshold 5, Recovery 300 s, FlapWindow 15 s and a
// nil (discarding) Logger.
func DefaultConfig() Config {
	return Config{Threshold: DefaultThreshold, Recovery: DefaultRecovery, FlapWindow: DefaultFlapWindow}
}

// Validate reports a configuration the actor cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.Threshold < 1 {
		errs = append(errs, fmt.Errorf("breaker: Threshold must be at least 1, got %d", c.Threshold))
	}
	if c.Recovery <= 0 {
		errs = append(errs, fmt.Errorf("breaker: Recovery must be positive, got %v", c.Recovery))
	}
	if c.FlapWindow < 0 {
		errs = append(errs, fmt.Errorf("breaker: FlapWindow must not be negative, got %v", c.FlapWindow))
	}
	return errors.Join(errs...)
}

// Props returns the props of a breaker actor with cfg, which should have
// passed Validate.
func Props(cfg Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newBreaker(cfg) })
}

// recovered is the recovery timer's message; gen tells the live timer from
// one cancelled after it had already fired.
type recovered struct{ gen uint64 }

type breaker struct {
	cfg Config
	log *logrus.Entry

	state       messages.BreakerState
	consecutive int
	// countBeforeSuccess and lastSuccessAt let a drop right after a success
	// undo that success (flapping).
	countBeforeSuccess int
	lastSuccessAt      time.Time
	openUntil          time.Time
	openings           int

	gen    uint64
	cancel scheduler.CancelFunc
}

func newBreaker(cfg Config) *breaker {
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	return &breaker{cfg: cfg, log: logger.WithField("actor", "breaker"), cancel: func() {}}
}

func (b *breaker) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.StateChanged:
		if m.State == messages.Authenticated {
			b.success(ctx)
		}
	case *messages.ConnectionFailed:
		b.failure(ctx, m)
	case *recovered:
		if m.gen == b.gen && b.state == messages.BreakerOpen {
			b.halfOpen(ctx)
		}
	case *actor.Stopping, *actor.Restarting:
		b.cancelRecovery()
	}
}

func (b *breaker) success(ctx actor.Context) {
	b.countBeforeSuccess = b.consecutive
	b.consecutive = 0
	b.lastSuccessAt = time.Now()
	if b.state != messages.BreakerClosed {
		b.cancelRecovery()
		b.state = messages.BreakerClosed
		b.openUntil = time.Time{}
		b.log.WithField("state", b.state.String()).Info("Circuit breaker closed")
	}
	b.sendStatus(ctx)
}

func (b *breaker) failure(ctx actor.Context, f *messages.ConnectionFailed) {
	now := time.Now()
	if f.WasAuthenticated && now.Sub(b.lastSuccessAt) < b.cfg.FlapWindow {
		b.consecutive = b.countBeforeSuccess + 1
	} else {
		b.consecutive++
	}
	switch {
	case b.state == messages.BreakerHalfOpen:
		b.open(ctx, now)
	case b.state == messages.BreakerClosed && b.consecutive >= b.cfg.Threshold:
		b.open(ctx, now)
	}
	ctx.Send(ctx.Parent(), &messages.BreakerVerdict{
		Failure:             f,
		Open:                b.state == messages.BreakerOpen,
		OpenedAt:            b.openedAt(),
		ConsecutiveFailures: b.consecutive,
	})
	b.sendStatus(ctx)
}

func (b *breaker) open(ctx actor.Context, now time.Time) {
	b.cancelRecovery()
	b.state = messages.BreakerOpen
	b.openings++
	b.openUntil = now.Add(b.cfg.Recovery)
	b.cancel = scheduler.NewTimerScheduler(ctx).SendOnce(b.cfg.Recovery, ctx.Self(), &recovered{gen: b.gen})
	b.log.WithFields(logrus.Fields{
		"state":                b.state.String(),
		"consecutive_failures": b.consecutive,
		"recovery":             b.cfg.Recovery.String(),
	}).Warnf("Circuit breaker activated - too many consecutive failures (%d)", b.consecutive)
}

func (b *breaker) halfOpen(ctx actor.Context) {
	b.state = messages.BreakerHalfOpen
	b.openUntil = time.Time{}
	b.log.WithFields(logrus.Fields{
		"state":                b.state.String(),
		"consecutive_failures": b.consecutive,
	}).Info("Circuit breaker half-open, allowing one trial connection")
	b.sendStatus(ctx)
}

// cancelRecovery stops the recovery timer; bumping the generation makes a
// recovery message already queued a no-op.
func (b *breaker) cancelRecovery() {
	b.cancel()
	b.gen++
}

func (b *breaker) sendStatus(ctx actor.Context) {
	ctx.Send(ctx.Parent(), &messages.BreakerStatus{
		State:               b.state,
		ConsecutiveFailures: b.consecutive,
		OpenUntil:           b.openUntil,
		Openings:            b.openings,
		At:                  time.Now(),
	})
}

// openedAt is when the open breaker started its recovery; zero unless open.
func (b *breaker) openedAt() time.Time {
	if b.state != messages.BreakerOpen {
		return time.Time{}
	}
	return b.openUntil.Add(-b.cfg.Recovery)
}
