package stress

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/supervisor"
)

// Level is how hard the network is hit: the quiet time between two faults.
type Level int

const (
	Low    Level = iota // 4 to 6 s of quiet between faults
	Medium              // 1.5 to 3 s
	High                // 0.3 to 1 s
)

var levelNames = [...]string{"low", "medium", "high"}

func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return levelNames[l]
}

// MarshalText spells the level as the flag does.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// ParseLevel reads "low", "medium" or "high".
func ParseLevel(s string) (Level, error) {
	for i, name := range levelNames {
		if strings.EqualFold(s, name) {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("stress: failures must be low, medium or high, got %q", s)
}

// quiet is the range of quiet time between two faults at l.
func (l Level) quiet() (lo, hi time.Duration) {
	switch l {
	case Low:
		return 4 * time.Second, 6 * time.Second
	case Medium:
		return 1500 * time.Millisecond, 3 * time.Second
	}
	return 300 * time.Millisecond, time.Second
}

// Defaults of Config: short enough that a 45 s run at High sees every kind
// of fault several times, blackholes included.
const (
	DefaultDuration          = 300 * time.Second
	DefaultConcurrency       = 8
	DefaultHeartbeatInterval = 250 * time.Millisecond
	DefaultHeartbeatTimeout  = time.Second
	DefaultRetryDelay        = 300 * time.Millisecond
	DefaultBreakerRecovery   = 2 * time.Second
	DefaultConnectTimeout    = time.Second
	DefaultProgressEvery     = 5 * time.Second
	// DefaultConnections is one connection, on one path: the run the seed
	// describes, whose figures earlier runs can be compared with.
	DefaultConnections = 1
)

// Config configures a run. Start with DefaultConfig.
type Config struct {
	Failures    Level         // how often faults come; default High
	Duration    time.Duration // how long load and faults run; default 300 s
	Seed        int64         // picks the faults, their timing and the requests; default 1
	Concurrency int           // clients sending requests one after the other; default 8
	// Connections is how many connections the tunnel keeps, each on a path
	// of its own (its own fault proxy in front of the one relay); faults hit
	// one path at a time. Default 1; at most supervisor.MaxConnections.
	Connections int

	// The supervisor's timing, short so that faults play out in seconds.
	HeartbeatInterval time.Duration // default 250 ms
	HeartbeatTimeout  time.Duration // default 1 s
	RetryDelay        time.Duration // default 300 ms, also after an auth failure
	BreakerRecovery   time.Duration // default 2 s
	ConnectTimeout    time.Duration // default 1 s: an attempt into a blackhole gives up soon

	// Progress receives a line every ProgressEvery (5 s); nil for none.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Logger receives the relay's and the supervisor's logs; nil discards
	// them. The run watches them either way.
	Logger *logrus.Logger
}

// DefaultConfig returns High failures for 300 s with seed 1, 8 clients and
// one connection;
// a 250 ms heartbeat with a 1 s timeout, a 300 ms retry delay, a 2 s breaker
// recovery and a 1 s connect timeout; progress every 5 s to nowhere.
func DefaultConfig() Config {
	return Config{
		Failures:          High,
		Duration:          DefaultDuration,
		Seed:              1,
		Concurrency:       DefaultConcurrency,
		Connections:       DefaultConnections,
		HeartbeatInterval: DefaultHeartbeatInterval,
		HeartbeatTimeout:  DefaultHeartbeatTimeout,
		RetryDelay:        DefaultRetryDelay,
		BreakerRecovery:   DefaultBreakerRecovery,
		ConnectTimeout:    DefaultConnectTimeout,
		ProgressEvery:     DefaultProgressEvery,
	}
}

// Validate names the first setting a run cannot work with.
func (c Config) Validate() error {
	switch {
	case c.Failures < Low || c.Failures > High:
		return fmt.Errorf("stress: unknown failure level %d", int(c.Failures))
	case c.Duration <= 0:
		return fmt.Errorf("stress: duration must be positive, got %v", c.Duration)
	case c.Concurrency < 1:
		return fmt.Errorf("stress: concurrency must be at least 1, got %d", c.Concurrency)
	case c.Connections < 1 || c.Connections > supervisor.MaxConnections:
		return fmt.Errorf("stress: connections must be between 1 and %d, got %d", supervisor.MaxConnections, c.Connections)
	case c.HeartbeatInterval <= 0, c.HeartbeatTimeout <= 0, c.RetryDelay <= 0, c.BreakerRecovery <= 0, c.ConnectTimeout <= 0:
		return errors.New("stress: heartbeat interval and timeout, retry delay, breaker recovery and connect timeout must be positive")
	case c.HeartbeatTimeout <= c.HeartbeatInterval:
		return fmt.Errorf("stress: heartbeat timeout (%v) must exceed the interval (%v)", c.HeartbeatTimeout, c.HeartbeatInterval)
	case c.Progress != nil && c.ProgressEvery <= 0:
		return fmt.Errorf("stress: progress interval must be positive, got %v", c.ProgressEvery)
	}
	return nil
}
