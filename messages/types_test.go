package messages

import (
	"encoding/json"
	"testing"
	"time"
)

func TestNamesAsTheSeedSpellsThem(t *testing.T) {
	for _, tc := range []struct {
		got  interface{ String() string }
		want string
	}{
		{Disconnected, "DISCONNECTED"}, {Connecting, "CONNECTING"}, {Connected, "CONNECTED"},
		{Authenticating, "AUTHENTICATING"}, {Authenticated, "AUTHENTICATED"}, {CircuitBreaker, "CIRCUIT_BREAKER"},
		{AuthFailure, "AUTH_FAILURE"}, {ConnectionRefused, "CONNECTION_REFUSED"}, {NetworkError, "NETWORK_ERROR"},
		{Timeout, "TIMEOUT"}, {ProtocolError, "PROTOCOL_ERROR"}, {Unknown, "UNKNOWN"},
		{BreakerClosed, "closed"}, {BreakerOpen, "open"}, {BreakerHalfOpen, "half-open"},
		{State(42), "State(42)"}, {FailureType(-1), "FailureType(-1)"}, {BreakerState(9), "BreakerState(9)"},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.got, tc.got.String(), tc.want)
		}
	}
}

func TestStatusJSONRoundTrip(t *testing.T) {
	rtt := 0.25
	in := Status{
		State: CircuitBreaker, Tunnel: "default",
		Health: Health{FailureTypes: map[string]int{"TIMEOUT": 2}, LastHeartbeatRTT: &rtt,
			Transitions: []Transition{{From: Connecting, To: Disconnected, At: time.Unix(100, 0).UTC()}}},
		CircuitBreaker: BreakerReport{Active: true, RecoveryIn: 12.5, State: BreakerOpen, Openings: 1},
	}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Status
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	if out.State != in.State || out.CircuitBreaker != in.CircuitBreaker || out.Health.Transitions[0] != in.Health.Transitions[0] || *out.Health.LastHeartbeatRTT != rtt {
		t.Fatalf("round trip: %+v, want %+v", out, in)
	}
	var s State
	if err := json.Unmarshal([]byte(`"SOMETHING"`), &s); err == nil {
		t.Fatal("an unknown state decoded without error")
	}
}
