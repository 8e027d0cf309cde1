package supervisor

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages"
)

func validConfig() Config {
	c := DefaultConfig()
	c.RelayURL = "ws://127.0.0.1:8080/tunnel"
	c.APIKey = "k"
	return c
}

func TestDefaultConfigHoldsTheSeedDefaults(t *testing.T) {
	c := DefaultConfig()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"HeartbeatInterval", c.HeartbeatInterval, 15 * time.Second},
		{"HeartbeatTimeout", c.HeartbeatTimeout, 30 * time.Second},
		{"ConnectTimeout", c.ConnectTimeout, 10 * time.Second},
		{"RetryDelay", c.RetryDelay, 10 * time.Second},
		{"AuthRetryDelay", c.AuthRetryDelay, 30 * time.Second},
		{"BreakerThreshold", c.BreakerThreshold, 5},
		{"BreakerRecovery", c.BreakerRecovery, 300 * time.Second},
		{"MaxQueue", c.MaxQueue, 128},
		{"ReconnectPolicy", c.ReconnectPolicy, Flat},
		{"ReconnectBaseDelay", c.ReconnectBaseDelay, 500 * time.Millisecond},
		{"ReconnectMaxDelay", c.ReconnectMaxDelay, 120 * time.Second},
		{"PingInterval", c.PingInterval, time.Duration(0)},
		{"PongTimeout", c.PongTimeout, 30 * time.Second},
		{"CloseTimeout", c.CloseTimeout, 10 * time.Second},
		{"Tunnel", c.Tunnel, "default"},
		{"ReadLimit", c.ReadLimit, int64(16 << 20)},
		{"InlineLimit", c.InlineLimit, 64 << 10},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"nil handlers and logger are valid", func(c *Config) { c.OnMessage, c.OnStateChange, c.Logger = nil, nil, nil }, ""},
		{"wss", func(c *Config) { c.RelayURL = "wss://relay.example/tunnel" }, ""},
		{"no url", func(c *Config) { c.RelayURL = "" }, "RelayURL is empty"},
		{"http url", func(c *Config) { c.RelayURL = "http://x/tunnel" }, "ws:// or wss://"},
		{"no host", func(c *Config) { c.RelayURL = "ws:///tunnel" }, "no host"},
		{"no key", func(c *Config) { c.APIKey = "" }, "APIKey is empty"},
		{"no tunnel", func(c *Config) { c.Tunnel = "" }, "Tunnel is empty"},
		{"threshold 0", func(c *Config) { c.BreakerThreshold = 0 }, "BreakerThreshold"},
		{"queue 0", func(c *Config) { c.MaxQueue = 0 }, "MaxQueue"},
		{"zero retry", func(c *Config) { c.RetryDelay = 0 }, "RetryDelay must be positive"},
		{"negative recovery", func(c *Config) { c.BreakerRecovery = -time.Second }, "BreakerRecovery must be positive"},
		{"timeout not above interval", func(c *Config) { c.HeartbeatTimeout = c.HeartbeatInterval }, "must exceed"},
		{"window below chunk", func(c *Config) { c.Window = int64(c.ChunkSize) - 1 }, "Window"},
		{"unknown policy", func(c *Config) { c.ReconnectPolicy = 7 }, "ReconnectPolicy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an ErrInvalidConfig naming %q", err, tc.want)
			}
		})
	}
}

func TestValidateNeverShowsTheKey(t *testing.T) {
	c := validConfig()
	c.APIKey = "s3cret-key"
	c.RelayURL = "ftp://x"
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Validate() = %v", err)
	}
}

func TestRestartDelay(t *testing.T) {
	flat := validConfig()
	for _, tc := range []struct {
		typ  messages.FailureType
		want time.Duration
	}{
		{messages.AuthFailure, 30 * time.Second},
		{messages.ConnectionRefused, 10 * time.Second},
		{messages.NetworkError, 10 * time.Second},
		{messages.Timeout, 10 * time.Second},
		{messages.ProtocolError, 10 * time.Second},
		{messages.Unknown, 10 * time.Second},
	} {
		if got := flat.restartDelay(tc.typ, 3); got != tc.want {
			t.Errorf("flat %s: %v, want %v", tc.typ, got, tc.want)
		}
	}

	exp := validConfig()
	exp.ReconnectPolicy = Exponential
	for _, tc := range []struct {
		consecutive int
		base        time.Duration // the delay before jitter, which adds up to 20%
	}{
		{1, 500 * time.Millisecond},
		{2, time.Second},
		{3, 2 * time.Second},
		{9, 120 * time.Second},
		{40, 120 * time.Second},
	} {
		got := exp.restartDelay(messages.NetworkError, tc.consecutive)
		if got < tc.base || got > tc.base+tc.base/5 {
			t.Errorf("exponential after %d failures: %v, want %v plus at most 20%%", tc.consecutive, got, tc.base)
		}
	}
	if got := exp.restartDelay(messages.AuthFailure, 1); got != 30*time.Second {
		t.Errorf("exponential auth failure: %v, want at least the auth retry delay 30s", got)
	}
}

// TestKeyInClear pins when the API key would cross the network unencrypted:
// only over ws:// to a host that is not loopback. wss:// never sends it in
// clear, and ws:// to localhost, 127.x or ::1 never leaves the machine.
func TestKeyInClear(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"ws://relay.example:8080/tunnel", true},
		{"ws://10.0.0.5/tunnel", true},
		{"ws://127.0.0.1:8080/tunnel", false},
		{"ws://localhost/tunnel", false},
		{"ws://[::1]:8080/tunnel", false},
		{"wss://relay.example/tunnel", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			c := validConfig()
			c.RelayURL = tc.url
			if got := c.KeyInClear(); got != tc.want {
				t.Errorf("KeyInClear() with RelayURL %s = %v, want %v", tc.url, got, tc.want)
			}
		})
	}
}
