package benchrig

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Defaults of Config: about four minutes on two cores, long enough that
// each cell's median is steady to a few per cent.
const (
	DefaultRounds      = 5
	DefaultDuration    = 2 * time.Second
	DefaultIdleTunnels = 10000
	// DefaultIdleWindow spans two of the 15 s heartbeat and ping periods,
	// so the traffic counted is a whole number of periods whatever the
	// phase of the window.
	DefaultIdleWindow = 30 * time.Second
	// DefaultReadyTimeout bounds the wait for a process to be ready.
	DefaultReadyTimeout = 20 * time.Second
)

// The smoke run (-smoke and the test): every row filled, figures rough.
const (
	SmokeRounds      = 1
	SmokeDuration    = 300 * time.Millisecond
	SmokeIdleTunnels = 200
	SmokeIdleWindow  = 2 * time.Second
)

// Config configures a run. Start with DefaultConfig or SmokeConfig.
type Config struct {
	// BinDir holds tunnel-relay, tunnel-supervisor and tunnel-bench; empty
	// builds them (see Build) into a temporary directory first.
	BinDir string
	// Rounds of every workload against every target: DefaultRounds.
	Rounds int
	// Duration of each run: DefaultDuration.
	Duration time.Duration
	// IdleTunnels opened on the relay to measure its memory per idle
	// tunnel: DefaultIdleTunnels.
	IdleTunnels int
	// IdleWindow over which an idle tunnel's traffic is counted:
	// DefaultIdleWindow.
	IdleWindow time.Duration
	// ReadyTimeout bounds the wait for each process to be ready:
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Progress receives a line per step (nil: none), apart from the table
	// that Run writes to its out.
	Progress io.Writer
}

// DefaultConfig returns the full run of `make bench`.
func DefaultConfig() Config {
	return Config{
		Rounds:       DefaultRounds,
		Duration:     DefaultDuration,
		IdleTunnels:  DefaultIdleTunnels,
		IdleWindow:   DefaultIdleWindow,
		ReadyTimeout: DefaultReadyTimeout,
	}
}

// SmokeConfig returns a run of a few seconds that fills every row.
func SmokeConfig() Config {
	c := DefaultConfig()
	c.Rounds, c.Duration = SmokeRounds, SmokeDuration
	c.IdleTunnels, c.IdleWindow = SmokeIdleTunnels, SmokeIdleWindow
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Rounds < 1:
		return fmt.Errorf("benchrig: Rounds must be at least 1, got %d", c.Rounds)
	case c.Duration <= 0:
		return fmt.Errorf("benchrig: Duration must be positive, got %v", c.Duration)
	case c.IdleTunnels < 1:
		return fmt.Errorf("benchrig: IdleTunnels must be at least 1, got %d", c.IdleTunnels)
	case c.IdleWindow <= 0:
		return fmt.Errorf("benchrig: IdleWindow must be positive, got %v", c.IdleWindow)
	case c.ReadyTimeout <= 0:
		return errors.New("benchrig: ReadyTimeout must be positive")
	}
	return nil
}
