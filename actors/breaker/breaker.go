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
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// Defaults of the seed's circuit breaker settings, for Config and Settings.
const (
	DefaultThreshold = 5
	DefaultRecovery  = 300 * time.Second
	// DefaultFlapWindow is the heartbeat interval (heartbeat.DefaultInterval,
	// 15 s): a drop before the first heartbeat after a success is a flap.
	// Actor packages do not import one another: supervisor's defaults test
	// checks the two agree.
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

// Settings returns the Rule settings of cfg. A zero FlapWindow, which in a
// Config disables flap detection, becomes a negative one, which does the same
// in Settings.
func (c Config) Settings() Settings {
	s := Settings{Threshold: c.Threshold, Recovery: c.Recovery, FlapWindow: c.FlapWindow}
	if s.FlapWindow == 0 {
		s.FlapWindow = -1
	}
	return s
}

// Props returns the props of a breaker actor with cfg, which should have
// passed Validate (a Threshold or Recovery that fails it takes the Settings
// default).
func Props(cfg Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newBreaker(cfg) })
}

// recovered is the recovery timer's message; gen tells the live timer from
// one cancelled after it had already fired.
type recovered struct{ gen uint64 }

// breaker is the actor around a Rule: it translates messages into the
// Rule's calls and its answers into messages and log lines, and owns the
// recovery timer. Every decision is the Rule's.
type breaker struct {
	rule Rule
	log  *logrus.Entry

	gen    uint64
	cancel scheduler.CancelFunc
}

func newBreaker(cfg Config) *breaker {
	logger := cfg.Logger
	if logger == nil {
		logger = logrus.New()
		logger.SetOutput(io.Discard)
	}
	return &breaker{rule: NewRule(cfg.Settings()), log: logger.WithField("actor", "breaker"), cancel: func() {}}
}

func (b *breaker) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.StateChanged:
		if m.State == messages.Authenticated {
			b.success(ctx)
		}
	case *actormsg.ConnectionFailed:
		b.failure(ctx, m)
	case *recovered:
		if m.gen == b.gen {
			b.startTrial(ctx)
		}
	case *actor.Stopping, *actor.Restarting:
		b.cancelRecovery()
	}
}

func (b *breaker) success(ctx actor.Context) {
	if b.rule.OnSuccess(time.Now()) {
		b.cancelRecovery()
		b.log.WithField("state", b.rule.State().String()).Info("Circuit breaker closed")
	}
	b.sendStatus(ctx)
}

func (b *breaker) failure(ctx actor.Context, f *actormsg.ConnectionFailed) {
	v := b.rule.OnFailure(time.Now(), f.WasAuthenticated)
	if v.Tripped {
		recovery := b.rule.Settings().Recovery
		b.cancelRecovery()
		b.schedule(ctx, recovery)
		b.log.WithFields(logrus.Fields{
			"state":                b.rule.State().String(),
			"consecutive_failures": v.ConsecutiveFailures,
			"recovery":             recovery.String(),
		}).Warnf("Circuit breaker activated - too many consecutive failures (%d)", v.ConsecutiveFailures)
	}
	ctx.Send(ctx.Parent(), &actormsg.BreakerVerdict{
		Failure:             f,
		Open:                v.Open,
		OpenedAt:            v.OpenedAt,
		ConsecutiveFailures: v.ConsecutiveFailures,
	})
	b.sendStatus(ctx)
}

// startTrial handles the live recovery timer: the Rule moves to half-open if
// its trial is due. The timer fires no earlier than the recovery time's end,
// so it is; should it not be, the timer is set again for the rest.
func (b *breaker) startTrial(ctx actor.Context) {
	now := time.Now()
	if !b.rule.StartTrial(now) {
		if b.rule.State() == messages.BreakerOpen {
			b.schedule(ctx, b.rule.OpenUntil().Sub(now))
		}
		return
	}
	b.log.WithFields(logrus.Fields{
		"state":                b.rule.State().String(),
		"consecutive_failures": b.rule.ConsecutiveFailures(),
	}).Info("Circuit breaker half-open, allowing one trial connection")
	b.sendStatus(ctx)
}

// schedule sets the recovery timer to fire after d.
func (b *breaker) schedule(ctx actor.Context, d time.Duration) {
	b.cancel = scheduler.NewTimerScheduler(ctx).SendOnce(d, ctx.Self(), &recovered{gen: b.gen})
}

// cancelRecovery stops the recovery timer; bumping the generation makes a
// recovery message already queued a no-op.
func (b *breaker) cancelRecovery() {
	b.cancel()
	b.gen++
}

func (b *breaker) sendStatus(ctx actor.Context) {
	status := b.rule.Status(time.Now())
	ctx.Send(ctx.Parent(), &status)
}
