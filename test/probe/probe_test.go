package probe_test

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"github.com/enhanced-tunnel/tunnel/test/probe"
)

type tick struct{}

type boom struct{}

// delayed reports tick to its parent 10 s after start, and fails on boom.
type delayed struct{ cancel scheduler.CancelFunc }

func (d *delayed) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		d.cancel = scheduler.NewTimerScheduler(ctx).SendOnce(10*time.Second, ctx.Parent(), &tick{})
	case *boom:
		panic("boom")
	case *actor.Stopping, *actor.Restarting:
		d.cancel()
	}
}

func TestProbeSeesParentMessagesAndFailuresInVirtualTime(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		p := probe.New(t, system)
		p.Wait = time.Hour
		start := time.Now()
		child := p.SpawnChild(actor.PropsFromProducer(func() actor.Actor { return &delayed{} }))
		_, env := probe.Expect[*tick](p)
		if got := env.At.Sub(start); got != 10*time.Second {
			t.Fatalf("tick after %v, want exactly 10s", got)
		}
		system.Root.Send(child, &boom{})
		f, _ := probe.Expect[*probe.Failure](p)
		if f.Reason != "boom" || !f.Who.Equal(child) {
			t.Fatalf("failure = %+v", f)
		}
		p.Restart(child)
		restarted := time.Now()
		_, env = probe.Expect[*tick](p)
		if got := env.At.Sub(restarted); got != 10*time.Second {
			t.Fatalf("tick after restart at %v, want 10s", got)
		}
		p.ExpectNoMsg(time.Minute)
		_ = system.Root.StopFuture(child).Wait()
	})
}
