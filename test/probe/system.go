package probe

import (
	"io"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Quiet returns actor system options for tests: protoactor's own logging
// discarded, and a short dead-letter throttle so its goroutine ends soon
// after a test (goleak).
func Quiet() []actor.ConfigOption {
	return []actor.ConfigOption{
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(slog.NewTextHandler(io.Discard, nil))
		}),
		actor.WithDeadLetterThrottleInterval(10 * time.Millisecond),
	}
}
