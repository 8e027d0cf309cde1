package heartbeat_test

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/actors/heartbeat"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// run starts a heartbeat actor under a probe in a synctest bubble and stops
// it when body returns.
func run(t *testing.T, cfg heartbeat.Config, body func(system *actor.ActorSystem, p *probe.Probe, pid *actor.PID)) {
	synctest.Test(t, func(t *testing.T) {
		system := actor.NewActorSystem(probe.Quiet()...)
		p := probe.New(t, system)
		p.Wait = time.Hour
		pid := p.SpawnChild(heartbeat.Props(cfg))
		body(system, p, pid)
		// A timer that fired just before the end may still be delivering its
		// message: let it land before the stop, and let the probe hear that
		// its child terminated before its own cleanup stops it. Either would
		// otherwise make a dead letter, whose throttle timer outlives the
		// bubble.
		synctest.Wait()
		_ = system.Root.StopFuture(pid).Wait()
		synctest.Wait()
	})
}

func authenticated() *messages.StateChanged {
	return &messages.StateChanged{State: messages.Authenticated, At: time.Now()}
}

func TestHeartbeatsEveryInterval(t *testing.T) {
	run(t, heartbeat.DefaultConfig(), func(system *actor.ActorSystem, p *probe.Probe, pid *actor.PID) {
		start := time.Now()
		system.Root.Send(pid, authenticated())
		seen := map[string]bool{}
		for _, want := range []time.Duration{15 * time.Second, 30 * time.Second} {
			hb, env := probe.Expect[*actormsg.SendHeartbeat](p)
			if got := env.At.Sub(start); got != want {
				t.Fatalf("heartbeat after %v, want exactly %v", got, want)
			}
			if hb.Timestamp != env.At.UnixMilli() {
				t.Fatalf("timestamp %d, want %d", hb.Timestamp, env.At.UnixMilli())
			}
			if hb.MessageID == "" || len(hb.MessageID) > 4 || seen[hb.MessageID] {
				t.Fatalf("message id %q is not a fresh short id", hb.MessageID)
			}
			seen[hb.MessageID] = true
			// Answer at once, so the connection stays fresh.
			system.Root.Send(pid, &actormsg.HeartbeatAck{MessageID: hb.MessageID, Timestamp: hb.Timestamp})
			probe.Expect[*actormsg.HeartbeatRTT](p)
		}
	})
}

func TestAckMeasuresRoundTrip(t *testing.T) {
	run(t, heartbeat.DefaultConfig(), func(system *actor.ActorSystem, p *probe.Probe, pid *actor.PID) {
		system.Root.Send(pid, authenticated())
		hb, _ := probe.Expect[*actormsg.SendHeartbeat](p)
		p.ExpectNoMsg(200 * time.Millisecond)
		system.Root.Send(pid, &actormsg.HeartbeatAck{MessageID: hb.MessageID, Timestamp: hb.Timestamp})
		rtt, _ := probe.Expect[*actormsg.HeartbeatRTT](p)
		if rtt.RTT != 200*time.Millisecond {
			t.Fatalf("RTT %v, want exactly 200ms", rtt.RTT)
		}
		// A second ack for the same heartbeat is unknown by now.
		system.Root.Send(pid, &actormsg.HeartbeatAck{MessageID: hb.MessageID})
		system.Root.Send(pid, &actormsg.HeartbeatAck{MessageID: "never-sent"})
		p.ExpectNoMsg(time.Second)
	})
}

func TestStaleWithoutAcks(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	cfg := heartbeat.DefaultConfig()
	cfg.Logger = logger
	run(t, cfg, func(system *actor.ActorSystem, p *probe.Probe, pid *actor.PID) {
		start := time.Now()
		system.Root.Send(pid, authenticated())
		stale, env := probe.ExpectSkipping[*actormsg.Stale](p)
		if got := env.At.Sub(start); got != 30*time.Second {
			t.Fatalf("stale after %v, want exactly 30s", got)
		}
		if stale.SinceAck != 30*time.Second {
			t.Fatalf("SinceAck %v, want 30s", stale.SinceAck)
		}
		// Ticking stops until the next AUTHENTICATED.
		p.ExpectNoMsg(5 * time.Minute)

		entry := hook.LastEntry()
		if entry == nil || entry.Level != logrus.WarnLevel {
			t.Fatalf("last log entry %+v, want a warning", entry)
		}
		if want := "Stale connection detected (no heartbeat ack for 30.0s)"; entry.Message != want {
			t.Fatalf("log %q, want %q", entry.Message, want)
		}
		if entry.Data["actor"] != "heartbeat" || entry.Data["since_ack_seconds"] != 30.0 {
			t.Fatalf("log fields %v", entry.Data)
		}

		restarted := time.Now()
		system.Root.Send(pid, authenticated())
		_, env = probe.Expect[*actormsg.SendHeartbeat](p)
		if got := env.At.Sub(restarted); got != 15*time.Second {
			t.Fatalf("heartbeat after re-authentication at %v, want 15s", got)
		}
	})
}

func TestAckMovesStaleDeadline(t *testing.T) {
	run(t, heartbeat.DefaultConfig(), func(system *actor.ActorSystem, p *probe.Probe, pid *actor.PID) {
		start := time.Now()
		system.Root.Send(pid, authenticated())
		hb, _ := probe.Expect[*actormsg.SendHeartbeat](p)
		p.ExpectNoMsg(5 * time.Second)
		system.Root.Send(pid, &actormsg.HeartbeatAck{MessageID: hb.MessageID, Timestamp: hb.Timestamp})
		rtt, env := probe.Expect[*actormsg.HeartbeatRTT](p)
		if got := env.At.Sub(start); got != 20*time.Second || rtt.RTT != 5*time.Second {
			t.Fatalf("RTT %v at %v, want 5s at 20s", rtt.RTT, got)
		}
		stale, env := probe.ExpectSkipping[*actormsg.Stale](p)
		if got := env.At.Sub(start); got != 50*time.Second {
			t.Fatalf("stale after %v, want exactly 50s", got)
		}
		if stale.SinceAck != 30*time.Second {
			t.Fatalf("SinceAck %v, want 30s", stale.SinceAck)
		}
	})
}

func TestOtherStatesStopEverything(t *testing.T) {
	for _, state := range []messages.State{messages.Disconnected, messages.Connecting, messages.Connected, messages.Authenticating, messages.CircuitBreaker} {
		t.Run(state.String(), func(t *testing.T) {
			run(t, heartbeat.DefaultConfig(), func(system *actor.ActorSystem, p *probe.Probe, pid *actor.PID) {
				system.Root.Send(pid, authenticated())
				hb, _ := probe.Expect[*actormsg.SendHeartbeat](p)
				system.Root.Send(pid, &messages.StateChanged{State: state})
				// The outstanding heartbeat is forgotten: its ack measures nothing.
				system.Root.Send(pid, &actormsg.HeartbeatAck{MessageID: hb.MessageID, Timestamp: hb.Timestamp})
				p.ExpectNoMsg(10 * time.Minute)
			})
		})
	}
}

func TestReauthenticationRestartsTimers(t *testing.T) {
	run(t, heartbeat.DefaultConfig(), func(system *actor.ActorSystem, p *probe.Probe, pid *actor.PID) {
		system.Root.Send(pid, authenticated())
		p.ExpectNoMsg(10 * time.Second)
		again := time.Now()
		system.Root.Send(pid, authenticated())
		_, env := probe.Expect[*actormsg.SendHeartbeat](p)
		if got := env.At.Sub(again); got != 15*time.Second {
			t.Fatalf("heartbeat %v after re-authentication, want 15s (the old timer must be gone)", got)
		}
		_, env = probe.ExpectSkipping[*actormsg.Stale](p)
		if got := env.At.Sub(again); got != 30*time.Second {
			t.Fatalf("stale %v after re-authentication, want 30s", got)
		}
	})
}

func TestDefaultConfig(t *testing.T) {
	cfg := heartbeat.DefaultConfig()
	if cfg.Interval != 15*time.Second || cfg.Timeout != 30*time.Second || cfg.Logger != nil {
		t.Fatalf("DefaultConfig() = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		timeout  time.Duration
		wantErr  string
	}{
		{"defaults", 15 * time.Second, 30 * time.Second, ""},
		{"equal", time.Second, time.Second, ""},
		{"zero interval", 0, 30 * time.Second, "Interval must be positive"},
		{"negative timeout", 15 * time.Second, -time.Second, "Timeout must be positive"},
		{"timeout below interval", 15 * time.Second, 10 * time.Second, "must be at least Interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := heartbeat.Config{Interval: tt.interval, Timeout: tt.timeout}.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
