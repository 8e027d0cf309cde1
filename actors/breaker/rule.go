package breaker

import (
	"time"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// Settings configures a Rule. Like sony/gobreaker's Settings, a field left at
// its zero value takes its default, so Settings{} is the seed's breaker.
type Settings struct {
	// Threshold is the number of consecutive failures that opens a closed
	// breaker. Zero or negative takes the default, DefaultThreshold (5).
	Threshold int
	// Recovery is how long an open breaker holds attempts back before its
	// half-open trial is due. Zero or negative takes the default,
	// DefaultRecovery (300 s).
	Recovery time.Duration
	// FlapWindow: a drop (a failure that ended an authenticated connection)
	// less than FlapWindow after a success counts as if that success had not
	// happened. Zero takes the default, DefaultFlapWindow (15 s, the heartbeat
	// interval); negative disables flap detection.
	FlapWindow time.Duration
}

// withDefaults returns s with every zero field replaced by its default.
func (s Settings) withDefaults() Settings {
	if s.Threshold <= 0 {
		s.Threshold = DefaultThreshold
	}
	if s.Recovery <= 0 {
		s.Recovery = DefaultRecovery
	}
	if s.FlapWindow == 0 {
		s.FlapWindow = DefaultFlapWindow
	}
	return s
}

// Verdict is a Rule's answer to one failure.
type Verdict struct {
	// Open is true when the breaker is open after this failure: the next
	// attempt waits for OpenUntil.
	Open bool
	// Tripped is true when this very failure opened the breaker (the
	// Threshold-th consecutive failure of a closed breaker, or a failed
	// half-open trial): a new recovery time runs from OpenedAt. A failure
	// while the breaker is already open leaves it open and does not trip it
	// again.
	Tripped bool
	// OpenedAt is when the breaker opened, OpenUntil when its recovery time
	// ends (OpenedAt + Recovery); both zero unless Open.
	OpenedAt  time.Time
	OpenUntil time.Time
	// ConsecutiveFailures is the count after this failure.
	ConsecutiveFailures int
}

// Rule is the circuit breaker's state machine as a pure value: counts in,
// verdict out. It has no actor, no goroutine, no timer and no clock; every
// method that needs the time takes it as an argument, and its answers depend
// only on its settings and the calls made so far, so a copy is a snapshot.
//
// A closed breaker opens on the Threshold-th consecutive failure, for
// Recovery. While open it stays open, whatever the time, until StartTrial
// moves it to half-open, which it does only once the recovery time is over
// (TrialDue). In half-open one trial is let through: its success closes the
// breaker, its failure opens it again for a full Recovery. A success in any
// state resets the count to 0 and closes the breaker. A drop less than
// FlapWindow after a success restores the count from before that success,
// plus one, so a flapping link still trips the breaker.
//
// The zero Rule is a closed breaker with the default settings. Methods that
// change the Rule have pointer receivers; the others have value receivers.
type Rule struct {
	settings Settings

	state       messages.BreakerState
	consecutive int
	openings    int
	// openedAt is when the open breaker started its recovery; zero unless open.
	openedAt time.Time

	// succeeded, lastSuccessAt and countBeforeSuccess let a drop right
	// after a success undo that success (flapping).
	succeeded          bool
	lastSuccessAt      time.Time
	countBeforeSuccess int
}

// NewRule returns a closed breaker with settings s (zero fields take their
// defaults).
func NewRule(s Settings) Rule {
	return Rule{settings: s}
}

// Settings returns the Rule's settings with the defaults filled in.
func (r Rule) Settings() Settings { return r.settings.withDefaults() }

// State is the breaker's state. It changes only in OnFailure, OnSuccess and
// StartTrial: an open breaker whose recovery time is over stays open until
// StartTrial.
func (r Rule) State() messages.BreakerState { return r.state }

// ConsecutiveFailures is the current count of consecutive failures.
func (r Rule) ConsecutiveFailures() int { return r.consecutive }

// Openings counts how often the breaker has opened.
func (r Rule) Openings() int { return r.openings }

// OpenedAt is when the open breaker opened; zero unless open.
func (r Rule) OpenedAt() time.Time { return r.openedAt }

// OpenUntil is when the open breaker's recovery time ends and its trial is
// due; zero unless open.
func (r Rule) OpenUntil() time.Time {
	if r.state != messages.BreakerOpen {
		return time.Time{}
	}
	return r.openedAt.Add(r.Settings().Recovery)
}

// TrialDue reports whether at is at or after the end of an open breaker's
// recovery time, so StartTrial would move it to half-open.
func (r Rule) TrialDue(at time.Time) bool {
	return r.state == messages.BreakerOpen && !at.Before(r.OpenUntil())
}

// StartTrial moves an open breaker whose trial is due at at (TrialDue) to
// half-open and reports true; otherwise it changes nothing and reports
// false. The count and the openings are kept.
func (r *Rule) StartTrial(at time.Time) bool {
	if !r.TrialDue(at) {
		return false
	}
	r.state = messages.BreakerHalfOpen
	r.openedAt = time.Time{}
	return true
}

// OnSuccess records a success (AUTHENTICATED) at at: the count goes to 0 and
// the breaker closes. It reports whether the breaker was open or half-open
// before, that is whether this success closed it.
func (r *Rule) OnSuccess(at time.Time) (closed bool) {
	r.countBeforeSuccess = r.consecutive
	r.consecutive = 0
	r.succeeded = true
	r.lastSuccessAt = at
	if r.state == messages.BreakerClosed {
		return false
	}
	r.state = messages.BreakerClosed
	r.openedAt = time.Time{}
	return true
}

// OnFailure records a failure at at; wasAuthenticated is true when it ended
// an authenticated connection (a drop), false when it ended an attempt. A
// drop less than FlapWindow after the last success sets the count to the
// count before that success plus one; any other failure adds one. Then a
// half-open breaker opens again, and a closed one opens when the count has
// reached Threshold; an open one stays open with its recovery time
// unchanged.
func (r *Rule) OnFailure(at time.Time, wasAuthenticated bool) Verdict {
	s := r.Settings()
	if wasAuthenticated && r.succeeded && s.FlapWindow > 0 && at.Sub(r.lastSuccessAt) < s.FlapWindow {
		r.consecutive = r.countBeforeSuccess + 1
	} else {
		r.consecutive++
	}
	tripped := r.state == messages.BreakerHalfOpen ||
		r.state == messages.BreakerClosed && r.consecutive >= s.Threshold
	if tripped {
		r.state = messages.BreakerOpen
		r.openings++
		r.openedAt = at
	}
	return Verdict{
		Open:                r.state == messages.BreakerOpen,
		Tripped:             tripped,
		OpenedAt:            r.openedAt,
		OpenUntil:           r.OpenUntil(),
		ConsecutiveFailures: r.consecutive,
	}
}

// Status is the breaker's status at at, as the actor sends it.
func (r Rule) Status(at time.Time) actormsg.BreakerStatus {
	return actormsg.BreakerStatus{
		State:               r.state,
		ConsecutiveFailures: r.consecutive,
		OpenUntil:           r.OpenUntil(),
		Openings:            r.openings,
		At:                  at,
	}
}

// Report is the breaker's part of the tunnel status at at: Active while
// open, with RecoveryIn the seconds from at to OpenUntil (never negative,
// 0 unless open).
func (r Rule) Report(at time.Time) messages.BreakerReport {
	rep := messages.BreakerReport{State: r.state, Openings: r.openings}
	if r.state == messages.BreakerOpen {
		rep.Active = true
		rep.RecoveryIn = max(0, r.OpenUntil().Sub(at)).Seconds()
	}
	return rep
}
