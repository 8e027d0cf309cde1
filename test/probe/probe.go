// Package probe is the test probe actor tests share: it stands in for an
// actor's peers. It can be an actor's parent (SpawnChild), so it sees what a
// child reports to its parent and, as the child's supervisor, its failures;
// it records every message with the time it arrived, so tests in a
// testing/synctest bubble can assert exact delays.
package probe

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// DefaultWait is how long Expect waits unless Probe.Wait is changed.
const DefaultWait = 5 * time.Second

// Envelope is one message the probe received.
type Envelope struct {
	Msg    any
	Sender *actor.PID
	At     time.Time
}

// Failure is what the probe records when a child it supervises fails.
// The child stays suspended until the test calls Restart or Stop.
type Failure struct {
	Who    *actor.PID
	Reason any
}

// Probe is a test actor. Create it with New.
type Probe struct {
	PID *actor.PID
	// Wait is how long Expect waits for a message (DefaultWait). In a
	// testing/synctest bubble it is fake time, which passes only once every
	// goroutine of the bubble is blocked: set it long (an hour) there, so
	// that a 300 s timer can be awaited at no cost.
	Wait   time.Duration
	t      testing.TB
	system *actor.ActorSystem
	inbox  chan Envelope
}

type spawnChild struct {
	props *actor.Props
	reply chan *actor.PID
}

type restartChild struct{ pid *actor.PID }

type probeActor struct {
	inbox chan Envelope
	sup   actor.Supervisor
}

func (p *probeActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *spawnChild:
		m.reply <- ctx.Spawn(m.props)
	case *restartChild:
		if p.sup != nil {
			p.sup.RestartChildren(m.pid)
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	case *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting:
	default:
		p.inbox <- Envelope{Msg: m, Sender: ctx.Sender(), At: time.Now()}
	}
}

// HandleFailure records a child's failure instead of acting on it.
func (p *probeActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	p.sup = sup
	rs.Reset()
	p.inbox <- Envelope{Msg: &Failure{Who: child, Reason: reason}, At: time.Now()}
}

// New spawns a probe in system. It is stopped when the test ends.
func New(t testing.TB, system *actor.ActorSystem) *Probe {
	t.Helper()
	inbox := make(chan Envelope, 4096)
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &probeActor{inbox: inbox} }))
	p := &Probe{PID: pid, Wait: DefaultWait, t: t, system: system, inbox: inbox}
	t.Cleanup(func() { _ = system.Root.StopFuture(pid).Wait() })
	return p
}

// SpawnChild spawns props as a child of the probe, so the child's parent
// messages and failures come to the probe.
func (p *Probe) SpawnChild(props *actor.Props) *actor.PID {
	reply := make(chan *actor.PID, 1)
	p.system.Root.Send(p.PID, &spawnChild{props: props, reply: reply})
	return <-reply
}

// Restart restarts a failed child, as a supervisor's RestartChildren would.
func (p *Probe) Restart(child *actor.PID) {
	p.system.Root.Send(p.PID, &restartChild{pid: child})
}

// Send sends msg to pid with the probe as sender, so answers come back here.
func (p *Probe) Send(pid *actor.PID, msg any) {
	p.system.Root.RequestWithCustomSender(pid, msg, p.PID)
}

// Receive waits up to p.Wait for the next message of any type.
func (p *Probe) Receive() (Envelope, bool) {
	select {
	case e := <-p.inbox:
		return e, true
	case <-time.After(p.Wait):
		return Envelope{}, false
	}
}

// ExpectNoMsg fails the test if a message arrives within d.
func (p *Probe) ExpectNoMsg(d time.Duration) {
	p.t.Helper()
	select {
	case e := <-p.inbox:
		p.t.Fatalf("probe: expected no message within %v, got %T %+v", d, e.Msg, e.Msg)
	case <-time.After(d):
	}
}

// Expect returns the next message, which must be of type T, with its
// envelope. Messages of other types are a test failure.
func Expect[T any](p *Probe) (T, Envelope) {
	p.t.Helper()
	var zero T
	e, ok := p.Receive()
	if !ok {
		p.t.Fatalf("probe: expected %v, got nothing within %v", reflect.TypeFor[T](), p.Wait)
		return zero, e
	}
	m, ok := e.Msg.(T)
	if !ok {
		p.t.Fatalf("probe: expected %v, got %T %+v", reflect.TypeFor[T](), e.Msg, e.Msg)
	}
	return m, e
}

// ExpectSkipping returns the next message of type T, dropping messages of
// other types that come first (a test of one message type among chatter).
func ExpectSkipping[T any](p *Probe) (T, Envelope) {
	p.t.Helper()
	var skipped []string
	for {
		e, ok := p.Receive()
		if !ok {
			var zero T
			p.t.Fatalf("probe: expected %v, got nothing within %v (skipped %v)", reflect.TypeFor[T](), p.Wait, skipped)
			return zero, e
		}
		if m, ok := e.Msg.(T); ok {
			return m, e
		}
		skipped = append(skipped, fmt.Sprintf("%T", e.Msg))
	}
}
