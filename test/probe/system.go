package probe

import (
	"io"
	"log/slog"
	"testing"
	"testing/synctest"
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

// Bubble runs f in a testing/synctest bubble with a fresh quiet actor system
// made inside it, and ends the bubble cleanly: after f and every cleanup f
// registered (such as the probe's), it waits until every goroutine is idle
// and lets fake time run past protoactor's dead-letter throttle, whose timer
// a message to an actor that has just stopped can start. Without that, the
// bubble could end with that timer's goroutine still blocked.
func Bubble(t *testing.T, f func(t *testing.T, system *actor.ActorSystem)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		system := actor.NewActorSystem(Quiet()...)
		t.Cleanup(func() {
			synctest.Wait()
			time.Sleep(time.Second) // fake time: returns at once
			system.Shutdown()
		})
		f(t, system)
	})
}

// BubbleChild runs body in a testing/synctest bubble with a quiet actor
// system made inside it, a probe whose waits are in fake time, and props
// spawned as the probe's child. At the end it lets a timer message that
// fired just before land, stops the child, and lets the probe hear that
// its child terminated before its own cleanup stops it: either would
// otherwise make a dead letter, whose throttle timer outlives the bubble.
func BubbleChild(t *testing.T, props *actor.Props, body func(t *testing.T, system *actor.ActorSystem, p *Probe, child *actor.PID)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		system := actor.NewActorSystem(Quiet()...)
		p := New(t, system)
		p.Wait = time.Hour
		child := p.SpawnChild(props)
		body(t, system, p, child)
		synctest.Wait()
		_ = system.Root.StopFuture(child).Wait()
		synctest.Wait()
	})
}
