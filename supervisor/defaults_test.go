package supervisor_test

import (
	"errors"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/breaker"
	"github.com/enhanced-tunnel/tunnel/actors/connection"
	"github.com/enhanced-tunnel/tunnel/actors/heartbeat"
	"github.com/enhanced-tunnel/tunnel/actors/relay/router"
	"github.com/enhanced-tunnel/tunnel/actors/relay/session"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/supervisor/agent"
)

// TestDefaultsAgree checks that the composed defaults are the actors' own,
// and that the supervisor's and the relay's agree where they meet.
func TestDefaultsAgree(t *testing.T) {
	c := supervisor.DefaultConfig()
	hb, br, conn := heartbeat.DefaultConfig(), breaker.DefaultConfig(), connection.DefaultConfig()
	for _, d := range []struct {
		name      string
		got, want any
	}{
		{"HeartbeatInterval", c.HeartbeatInterval, hb.Interval},
		{"HeartbeatTimeout", c.HeartbeatTimeout, hb.Timeout},
		{"BreakerThreshold", c.BreakerThreshold, br.Threshold},
		{"BreakerRecovery", c.BreakerRecovery, br.Recovery},
		{"breaker FlapWindow (the heartbeat interval)", br.FlapWindow, hb.Interval},
		{"ConnectTimeout", c.ConnectTimeout, conn.ConnectTimeout},
		{"PingInterval", c.PingInterval, conn.PingInterval},
		{"PongTimeout", c.PongTimeout, conn.PongTimeout},
		{"WriteTimeout", c.WriteTimeout, conn.WriteTimeout},
		{"CloseTimeout", c.CloseTimeout, conn.CloseTimeout},
		{"ReadLimit", c.ReadLimit, conn.ReadLimit},
		{"agent's tunnel", agent.DefaultConfig().Tunnel.HeartbeatInterval, hb.Interval},
		// Where the supervisor meets the relay.
		{"ResumeTimeout (the relay's hold of a cut stream)", c.ResumeTimeout, router.DefaultResumeTimeout},
		{"MaxConnections (the relay's sessions per tunnel)", supervisor.MaxConnections, router.DefaultMaxSessionsPerTunnel},
		{"the relay's heartbeat timeout (the supervisor's stale timeout)", session.DefaultHeartbeatTimeout, hb.Timeout},
	} {
		if d.got != d.want {
			t.Errorf("%s: %v, want %v", d.name, d.got, d.want)
		}
	}
	// The seed's values, written out once more on purpose.
	if c.HeartbeatInterval.Seconds() != 15 || c.HeartbeatTimeout.Seconds() != 30 || c.RetryDelay.Seconds() != 10 ||
		c.AuthRetryDelay.Seconds() != 30 || c.BreakerThreshold != 5 || c.BreakerRecovery.Seconds() != 300 || c.ConnectTimeout.Seconds() != 10 {
		t.Errorf("the seed's defaults changed: %+v", c)
	}
}

// TestValidateCallsTheActors checks that Config.Validate applies the
// actors' own rules: a breaker config the breaker refuses is refused.
func TestValidateCallsTheActors(t *testing.T) {
	c := supervisor.DefaultConfig()
	c.RelayURL, c.APIKey = "ws://relay:8080/tunnel", "key"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.BreakerThreshold = 0
	if err := c.Validate(); !errors.Is(err, supervisor.ErrInvalidConfig) {
		t.Errorf("threshold 0: %v", err)
	}
}
