package health_test

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/actors/health"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/test/probe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a health ledger under a probe in a synctest bubble.
type fixture struct {
	t      *testing.T
	system *actor.ActorSystem
	p      *probe.Probe
	pid    *actor.PID
}

func run(t *testing.T, cfg health.Config, body func(f *fixture)) {
	probe.BubbleChild(t, health.Props(cfg), func(t *testing.T, system *actor.ActorSystem, p *probe.Probe, pid *actor.PID) {
		body(&fixture{t: t, system: system, p: p, pid: pid})
	})
}

func (f *fixture) send(msgs ...any) {
	for _, m := range msgs {
		f.system.Root.Send(f.pid, m)
	}
}

// status asks for a status; the ledger sends nothing else, so the answer is
// the next message.
func (f *fixture) status() *messages.Status {
	f.t.Helper()
	f.p.Send(f.pid, &actormsg.GetStatus{})
	s, _ := probe.Expect[*messages.Status](f.p)
	return s
}

// wait lets d of fake time pass, checking that the ledger says nothing unasked.
func (f *fixture) wait(d time.Duration) { f.p.ExpectNoMsg(d) }

func state(s messages.State) *messages.StateChanged { return &messages.StateChanged{State: s} }

func authenticated(connect time.Duration) *messages.StateChanged {
	return &messages.StateChanged{State: messages.Authenticated, ConnectTime: connect}
}

func failure(ft messages.FailureType, err error, wasAuthenticated bool) *actormsg.ConnectionFailed {
	return &actormsg.ConnectionFailed{Type: ft, Err: err, WasAuthenticated: wasAuthenticated}
}

func TestInitialStatusHasEveryKey(t *testing.T) {
	cfg := health.DefaultConfig()
	cfg.Tunnel = "tts"
	run(t, cfg, func(f *fixture) {
		raw, err := json.Marshal(f.status())
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"state": "DISCONNECTED", "connected": false, "tunnel": "tts"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
		h, _ := got["health"].(map[string]any)
		wantHealth := map[string]any{
			"success_rate": 0.0, "total_attempts": 0.0, "successes": 0.0, "consecutive_failures": 0.0,
			"time_since_last_success": nil, "failure_types": map[string]any{}, "last_error": "",
			"last_failure_type": "", "uptime": nil, "drops": 0.0, "mean_connected_time": 0.0,
			"last_connect_time": nil, "mean_connect_time": 0.0, "last_heartbeat_rtt": nil,
			"mean_heartbeat_rtt": 0.0, "recent_transitions": []any{},
		}
		assertKeys(t, "health", h, wantHealth)
		cb, _ := got["circuit_breaker"].(map[string]any)
		assertKeys(t, "circuit_breaker", cb, map[string]any{"active": false, "recovery_in": 0.0, "state": "closed", "openings": 0.0})
		if got["ready_connections"] != 0.0 {
			t.Errorf("ready_connections %v, want 0", got["ready_connections"])
		}
		if len(got) != 6 {
			t.Errorf("status keys %v, want state, connected, tunnel, health, circuit_breaker, ready_connections", keysOf(got))
		}
	})
}

func assertKeys(t *testing.T, name string, got, want map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s keys %v, want %v", name, keysOf(got), keysOf(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s.%s missing", name, k)
			continue
		}
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		if string(gj) != string(wj) {
			t.Errorf("%s.%s = %s, want %s", name, k, gj, wj)
		}
	}
}

func keysOf(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func TestAuthenticatedTimings(t *testing.T) {
	run(t, health.DefaultConfig(), func(f *fixture) {
		f.send(state(messages.Connecting), state(messages.Connected), state(messages.Authenticating), authenticated(1500*time.Millisecond))
		f.wait(100 * time.Second)
		s := f.status()
		if s.State != messages.Authenticated || !s.Connected {
			t.Fatalf("state %v connected %v, want AUTHENTICATED and connected", s.State, s.Connected)
		}
		h := s.Health
		if h.TimeSinceLastSuccess == nil || *h.TimeSinceLastSuccess != 100.0 {
			t.Fatalf("time_since_last_success %v, want exactly 100", h.TimeSinceLastSuccess)
		}
		if h.Uptime == nil || *h.Uptime != 100.0 {
			t.Fatalf("uptime %v, want exactly 100", h.Uptime)
		}
		if h.LastConnectTime == nil || *h.LastConnectTime != 1.5 || h.MeanConnectTime != 1.5 {
			t.Fatalf("connect time last %v mean %v, want 1.5", h.LastConnectTime, h.MeanConnectTime)
		}
		if h.TotalAttempts != 1 || h.Successes != 1 || h.SuccessRate != 1 {
			t.Fatalf("attempts %d successes %d rate %v", h.TotalAttempts, h.Successes, h.SuccessRate)
		}

		// Once the connection ends, uptime goes and the success ages.
		f.send(failure(messages.NetworkError, errors.New("stale"), true))
		f.wait(20 * time.Second)
		h = f.status().Health
		if h.Uptime != nil || *h.TimeSinceLastSuccess != 120.0 {
			t.Fatalf("after the drop: uptime %v time_since_last_success %v, want nil and 120", h.Uptime, *h.TimeSinceLastSuccess)
		}
	})
}

func TestFailuresByType(t *testing.T) {
	run(t, health.DefaultConfig(), func(f *fixture) {
		f.send(
			state(messages.Connecting), failure(messages.ConnectionRefused, errors.New("dial tcp: connection refused"), false),
			state(messages.Connecting), failure(messages.ConnectionRefused, errors.New("dial tcp: connection refused"), false),
			state(messages.Connecting), failure(messages.Timeout, errors.New("no auth_ok within 10s"), false),
			state(messages.Connecting), failure(messages.AuthFailure, errors.New("invalid API key"), false),
			state(messages.Connecting), failure(messages.Unknown, nil, false),
		)
		s := f.status()
		want := map[string]int{"CONNECTION_REFUSED": 2, "TIMEOUT": 1, "AUTH_FAILURE": 1, "UNKNOWN": 1}
		if !maps.Equal(s.Health.FailureTypes, want) {
			t.Fatalf("failure_types %v, want %v", s.Health.FailureTypes, want)
		}
		if s.Health.LastError != "" || s.Health.LastFailureType != "UNKNOWN" {
			t.Fatalf("last error %q type %q, want \"\" and UNKNOWN", s.Health.LastError, s.Health.LastFailureType)
		}
		if s.State != messages.Disconnected || s.Connected || s.Health.TotalAttempts != 5 || s.Health.SuccessRate != 0 {
			t.Fatalf("status %+v", s)
		}
		if s.Health.Drops != 0 {
			t.Fatalf("drops %d, failed attempts are not drops", s.Health.Drops)
		}

		f.send(state(messages.Connecting), failure(messages.ProtocolError, errors.New("frame over read limit"), false))
		s = f.status()
		if s.Health.LastError != "frame over read limit" || s.Health.LastFailureType != "PROTOCOL_ERROR" {
			t.Fatalf("last error %q type %q", s.Health.LastError, s.Health.LastFailureType)
		}

		// The status is a copy: changing it changes nothing in the ledger.
		s.Health.FailureTypes["TIMEOUT"] = 99
		if got := f.status().Health.FailureTypes["TIMEOUT"]; got != 1 {
			t.Fatalf("TIMEOUT count %d after changing an answered status, want 1", got)
		}
	})
}

func TestSuccessRate(t *testing.T) {
	run(t, health.DefaultConfig(), func(f *fixture) {
		f.send(
			state(messages.Connecting), failure(messages.ConnectionRefused, errors.New("refused"), false),
			state(messages.Connecting), authenticated(time.Second),
		)
		h := f.status().Health
		if h.TotalAttempts != 2 || h.Successes != 1 || h.SuccessRate != 0.5 {
			t.Fatalf("attempts %d successes %d rate %v, want 2, 1, 0.5", h.TotalAttempts, h.Successes, h.SuccessRate)
		}
	})
}

func TestCircuitBreaker(t *testing.T) {
	run(t, health.DefaultConfig(), func(f *fixture) {
		opened := time.Now()
		f.send(
			state(messages.Connecting),
			failure(messages.ConnectionRefused, errors.New("refused"), false),
			&actormsg.BreakerStatus{State: messages.BreakerOpen, ConsecutiveFailures: 5, OpenUntil: opened.Add(300 * time.Second), Openings: 1, At: opened},
		)
		s := f.status()
		want := messages.BreakerReport{Active: true, RecoveryIn: 300, State: messages.BreakerOpen, Openings: 1}
		if s.CircuitBreaker != want || s.State != messages.CircuitBreaker || s.Connected || s.Health.ConsecutiveFailures != 5 {
			t.Fatalf("status %+v, want breaker %+v and state CIRCUIT_BREAKER", s, want)
		}

		f.wait(100 * time.Second)
		if got := f.status().CircuitBreaker.RecoveryIn; got != 200 {
			t.Fatalf("recovery_in %v after 100s, want 200", got)
		}
		// Past OpenUntil (the half-open status not yet heard), never negative.
		f.wait(250 * time.Second)
		if got := f.status().CircuitBreaker.RecoveryIn; got != 0 {
			t.Fatalf("recovery_in %v past OpenUntil, want 0", got)
		}

		halfOpen := time.Now()
		f.send(&actormsg.BreakerStatus{State: messages.BreakerHalfOpen, ConsecutiveFailures: 5, Openings: 1, At: halfOpen})
		s = f.status()
		want = messages.BreakerReport{State: messages.BreakerHalfOpen, Openings: 1}
		if s.CircuitBreaker != want || s.State != messages.Disconnected {
			t.Fatalf("status %+v, want breaker %+v and state DISCONNECTED", s, want)
		}
		got := s.Health.Transitions
		wantTransitions := []messages.Transition{
			{From: messages.Disconnected, To: messages.Connecting, At: opened},
			{From: messages.Connecting, To: messages.Disconnected, At: opened},
			{From: messages.Disconnected, To: messages.CircuitBreaker, At: opened},
			{From: messages.CircuitBreaker, To: messages.Disconnected, At: halfOpen},
		}
		if len(got) != len(wantTransitions) {
			t.Fatalf("transitions %+v, want %+v", got, wantTransitions)
		}
		for i := range got {
			if got[i].From != wantTransitions[i].From || got[i].To != wantTransitions[i].To || !got[i].At.Equal(wantTransitions[i].At) {
				t.Fatalf("transition %d = %+v, want %+v", i, got[i], wantTransitions[i])
			}
		}
	})
}

func TestTransitionsBounded(t *testing.T) {
	cfg := health.DefaultConfig()
	cfg.MaxTransitions = 3
	run(t, cfg, func(f *fixture) {
		for range 4 {
			f.send(state(messages.Connecting), failure(messages.Timeout, errors.New("timeout"), false))
		}
		f.send(state(messages.Connecting), state(messages.Connected))
		// A repeated state is no transition.
		f.send(state(messages.Connected))
		got := f.status().Health.Transitions
		want := []messages.State{messages.Disconnected, messages.Connecting, messages.Disconnected, messages.Connecting, messages.Connected}
		if len(got) != 3 {
			t.Fatalf("%d transitions %+v, want the last 3", len(got), got)
		}
		for i, tr := range got {
			if tr.From != want[i+1] || tr.To != want[i+2] {
				t.Fatalf("transition %d = %v -> %v, want %v -> %v", i, tr.From, tr.To, want[i+1], want[i+2])
			}
		}
	})
}

func TestDropsAndMeanConnectedTime(t *testing.T) {
	run(t, health.DefaultConfig(), func(f *fixture) {
		f.send(state(messages.Connecting), authenticated(time.Second))
		f.wait(10 * time.Second)
		f.send(failure(messages.NetworkError, errors.New("stale"), true))
		f.send(state(messages.Connecting), failure(messages.ConnectionRefused, errors.New("refused"), false))
		f.send(state(messages.Connecting), authenticated(3*time.Second))
		f.wait(30 * time.Second)
		// A clean stop ends a connection too, without being a drop.
		f.send(state(messages.Disconnected))
		f.wait(time.Minute)
		h := f.status().Health
		if h.Drops != 1 {
			t.Fatalf("drops %d, want 1", h.Drops)
		}
		if h.MeanConnectedTime != 20 {
			t.Fatalf("mean_connected_time %v, want 20 (10s and 30s)", h.MeanConnectedTime)
		}
		if *h.LastConnectTime != 3 || h.MeanConnectTime != 2 {
			t.Fatalf("connect time last %v mean %v, want 3 and 2", *h.LastConnectTime, h.MeanConnectTime)
		}
		if h.Uptime != nil {
			t.Fatalf("uptime %v while disconnected, want nil", *h.Uptime)
		}
	})
}

func TestHeartbeatRTT(t *testing.T) {
	run(t, health.DefaultConfig(), func(f *fixture) {
		f.send(&actormsg.HeartbeatRTT{RTT: 100 * time.Millisecond}, &actormsg.HeartbeatRTT{RTT: 300 * time.Millisecond})
		h := f.status().Health
		if h.LastHeartbeatRTT == nil || *h.LastHeartbeatRTT != 0.3 || h.MeanHeartbeatRTT != 0.2 {
			t.Fatalf("heartbeat rtt last %v mean %v, want 0.3 and 0.2", h.LastHeartbeatRTT, h.MeanHeartbeatRTT)
		}
	})
}

func TestDefaultConfig(t *testing.T) {
	cfg := health.DefaultConfig()
	if cfg.Tunnel != "" || cfg.MaxTransitions != 20 || cfg.Logger != nil {
		t.Fatalf("DefaultConfig() = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if err := (health.Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "MaxTransitions") {
		t.Fatalf("Validate() of a zero config = %v, want a MaxTransitions error", err)
	}
}
