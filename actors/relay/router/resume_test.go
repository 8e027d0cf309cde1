package router_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/enhanced-tunnel/tunnel/actors/relay/router"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

// resumable registers a new session (a probe) with resume for tunnel,
// instance and index.
func (f *fixture) resumable(tunnel, instance string, index int) *probe.Probe {
	f.t.Helper()
	s := probe.New(f.t, f.system)
	s.Wait = time.Hour
	s.Send(f.router, &relaymsg.SessionUp{Tunnel: tunnel, SessionID: "s-" + s.PID.Id, Session: s.PID, Instance: instance, Index: index, Resume: true})
	if r, _ := probe.Expect[*relaymsg.Registered](s); r.Refused {
		f.t.Fatalf("session %s/%d refused: %+v", instance, index, r)
	}
	return s
}

// streaming forwards id on tunnel "a", expects its dispatch to session,
// and answers it with a streamed response: it returns the body.
func (f *fixture) streaming(id string, session *probe.Probe) *wire.StreamReader {
	f.t.Helper()
	ex := f.forward("a", id)
	dispatchedTo(f.t, session, id)
	body := wire.NewStreamReader(wire.DefaultWindow, func(int64) {})
	f.system.Root.Send(f.router, &relaymsg.Response{MessageID: id, Frame: &wire.Frame{Type: wire.TypeResponse, MessageID: id, Status: 200, Stream: true}, Body: body})
	if out := outcome(f.t, ex); out.Body != body {
		f.t.Fatalf("outcome %+v", out)
	}
	return body
}

// orphanOf ends session, which was feeding body as id.
func (f *fixture) orphanOf(session *probe.Probe, id string, body *wire.StreamReader) {
	f.system.Root.Send(f.router, &relaymsg.SessionDown{Tunnel: "a", Session: session.PID, Orphans: []relaymsg.Orphan{{MessageID: id, Body: body}}})
}

func (f *fixture) resume(id string, session *probe.Probe) {
	f.system.Root.Send(f.router, &relaymsg.Resume{MessageID: id, Session: session.PID})
}

func (f *fixture) resumes(result string) float64 {
	f.t.Helper()
	return value(f.t, f.resumeCount.WithLabelValues(result))
}

func adopted(t *testing.T, session *probe.Probe, id string, body *wire.StreamReader) {
	t.Helper()
	if a, _ := probe.Expect[*relaymsg.Adopt](session); a.MessageID != id || a.Body != body {
		t.Fatalf("adopt %+v", a)
	}
}

func refused(t *testing.T, session *probe.Probe, id string) {
	t.Helper()
	if r, _ := probe.Expect[*relaymsg.ResumeRefused](session); r.MessageID != id {
		t.Fatalf("refused %+v", r)
	}
}

// readErr reads body until it fails, and returns how, and when.
func readErr(body io.Reader) (error, time.Time) {
	_, err := io.Copy(io.Discard, body)
	return err, time.Now()
}

// newResumeFixture is a fixture that counts resumes, with two sessions of
// instance i1 with resume on tunnel "a": old gets the first request.
func newResumeFixture(t *testing.T, system *actor.ActorSystem, change func(*router.Config)) (f *fixture, old, next *probe.Probe) {
	f = newFixture(t, system, change)
	return f, f.resumable("a", "i1", 0), f.resumable("a", "i1", 1)
}

func TestOrphanIsAdoptedOnResume(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f, old, next := newResumeFixture(t, system, nil)
		body := f.streaming("m1", old)
		f.orphanOf(old, "m1", body)
		f.resume("m1", next)
		adopted(t, next, "m1", body)
		if v := f.resumes(router.ResultResumed); v != 1 {
			t.Fatalf("resumed %v", v)
		}
		// The exchange is the new session's now.
		f.done("m1")
		if r, _ := probe.Expect[*relaymsg.Release](next); r.MessageID != "m1" {
			t.Fatalf("release %+v", r)
		}
		old.ExpectNoMsg(time.Minute)
		// No expiry later.
		if v := f.resumes(router.ResultExpired); v != 0 {
			t.Fatalf("expired %v", v)
		}
	})
}

func TestResumeWhileTheOldSessionLivesHandsOver(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f, old, next := newResumeFixture(t, system, nil)
		body := f.streaming("m1", old)
		f.resume("m1", next)
		h, _ := probe.Expect[*relaymsg.Handover](old)
		if h.MessageID != "m1" || !h.To.Equal(next.PID) {
			t.Fatalf("handover %+v", h)
		}
		f.system.Root.Send(f.router, &relaymsg.HandedOver{MessageID: "m1", To: next.PID, Body: body})
		adopted(t, next, "m1", body)
		f.system.Root.Send(f.router, &relaymsg.Done{MessageID: "m1", Cancel: true})
		if c, _ := probe.Expect[*relaymsg.Cancel](next); c.MessageID != "m1" {
			t.Fatalf("cancel %+v", c)
		}
		// The old session's end no longer touches the stream.
		f.down(old, "a")
		old.ExpectNoMsg(time.Minute)
		if v := f.resumes(router.ResultResumed); v != 1 {
			t.Fatalf("resumed %v", v)
		}
	})
}

// A handover that finds the old session gone takes its orphan instead.
func TestHandoverToASessionThatEndedFirstTakesTheOrphan(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f, old, next := newResumeFixture(t, system, nil)
		body := f.streaming("m1", old)
		f.resume("m1", next)
		probe.Expect[*relaymsg.Handover](old)
		f.orphanOf(old, "m1", body)
		adopted(t, next, "m1", body)
	})
}

func TestResumeRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(f *fixture, old, next, other *probe.Probe)
	}{
		{"other instance", func(f *fixture, old, _, other *probe.Probe) {
			f.orphanOf(old, "m1", f.streaming("m1", old))
			f.resume("m1", other)
			refused(f.t, other, "m1")
		}},
		{"unknown id", func(f *fixture, _, next, _ *probe.Probe) {
			f.resume("nope", next)
			refused(f.t, next, "nope")
		}},
		{"not answered yet", func(f *fixture, old, next, _ *probe.Probe) {
			f.forward("a", "m1")
			dispatchedTo(f.t, old, "m1")
			f.resume("m1", next)
			refused(f.t, next, "m1")
		}},
		{"ended stream", func(f *fixture, old, next, _ *probe.Probe) {
			f.streaming("m1", old)
			f.resume("m1", next)
			probe.Expect[*relaymsg.Handover](old)
			// The old session had seen stream_end: it no longer feeds it.
			f.system.Root.Send(f.router, &relaymsg.HandedOver{MessageID: "m1", To: next.PID})
			refused(f.t, next, "m1")
		}},
		{"expired", func(f *fixture, old, next, _ *probe.Probe) {
			f.orphanOf(old, "m1", f.streaming("m1", old))
			next.ExpectNoMsg(router.DefaultResumeTimeout + time.Second)
			f.resume("m1", next)
			refused(f.t, next, "m1")
		}},
		{"session without resume", func(f *fixture, old, _, _ *probe.Probe) {
			f.orphanOf(old, "m1", f.streaming("m1", old))
			plain := f.replica("a", "i1", 3)
			f.resume("m1", plain)
			refused(f.t, plain, "m1")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
				f, old, next := newResumeFixture(t, system, nil)
				other := f.resumable("a", "i2", 0)
				tc.run(f, old, next, other)
				if v := f.resumes(router.ResultRefused); v != 1 {
					t.Fatalf("refused %v", v)
				}
			})
		})
	}
}

func TestOrphanExpiresAtExactlyTheResumeTimeout(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f, old, _ := newResumeFixture(t, system, nil)
		body := f.streaming("m1", old)
		start := time.Now()
		f.orphanOf(old, "m1", body)
		err, at := readErr(body)
		if !errors.Is(err, relaymsg.ErrTunnelLost) || at.Sub(start) != router.DefaultResumeTimeout {
			t.Fatalf("body failed with %v after %v, want ErrTunnelLost after %v", err, at.Sub(start), router.DefaultResumeTimeout)
		}
		if v := f.resumes(router.ResultExpired); v != 1 {
			t.Fatalf("expired %v", v)
		}
	})
}

func TestDoneDropsAnOrphan(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f, old, _ := newResumeFixture(t, system, nil)
		body := f.streaming("m1", old)
		start := time.Now()
		f.orphanOf(old, "m1", body)
		f.system.Root.Send(f.router, &relaymsg.Done{MessageID: "m1", Cancel: true})
		err, at := readErr(body)
		if !errors.Is(err, io.ErrClosedPipe) || at != start {
			t.Fatalf("body ended with %v after %v, want closed at once", err, at.Sub(start))
		}
		// Its session is gone: nobody is told.
		old.ExpectNoMsg(time.Minute)
		if v := f.resumes(router.ResultExpired); v != 0 {
			t.Fatalf("expired %v", v)
		}
	})
}

func TestResumeTimeoutZeroFailsOrphansAtOnce(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f, old, next := newResumeFixture(t, system, func(c *router.Config) { c.ResumeTimeout = 0 })
		body := f.streaming("m1", old)
		start := time.Now()
		f.orphanOf(old, "m1", body)
		err, at := readErr(body)
		if !errors.Is(err, relaymsg.ErrTunnelLost) || at != start {
			t.Fatalf("body failed with %v after %v, want ErrTunnelLost at once", err, at.Sub(start))
		}
		f.resume("m1", next)
		refused(t, next, "m1")
	})
}

func TestDrainCutsOrphansOff(t *testing.T) {
	probe.Bubble(t, func(t *testing.T, system *actor.ActorSystem) {
		f, old, next := newResumeFixture(t, system, nil)
		body := f.streaming("m1", old)
		body2 := f.streaming("m2", next)
		start := time.Now()
		f.orphanOf(old, "m1", body)
		f.system.Root.Send(f.router, &relaymsg.Drain{})
		err, at := readErr(body)
		if !errors.Is(err, relaymsg.ErrTunnelLost) || at != start {
			t.Fatalf("body failed with %v after %v, want ErrTunnelLost at once", err, at.Sub(start))
		}
		// And one orphaned while the relay closes is not kept either.
		f.orphanOf(next, "m2", body2)
		if err, at := readErr(body2); !errors.Is(err, relaymsg.ErrTunnelLost) || at != start {
			t.Fatalf("body failed with %v after %v, want ErrTunnelLost at once", err, at.Sub(start))
		}
	})
}
