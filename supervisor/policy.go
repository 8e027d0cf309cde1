package supervisor

import (
	"math/rand/v2"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages"
)

// restartDelay is the connection actor's restart rule while the breaker is
// closed: by failure type under the flat policy (the seed's), by the
// consecutive failure count under the exponential one.
func (c Config) restartDelay(t messages.FailureType, consecutive int) time.Duration {
	floor := c.RetryDelay
	if t == messages.AuthFailure {
		floor = c.AuthRetryDelay
	}
	if c.ReconnectPolicy != Exponential {
		return floor
	}
	d := c.ReconnectBaseDelay
	for i := 1; i < consecutive && d < c.ReconnectMaxDelay; i++ {
		d *= 2
	}
	d = min(d, c.ReconnectMaxDelay)
	// Jitter spreads the reconnects of many supervisors after a relay restart.
	d += time.Duration(rand.Int64N(int64(d)/5 + 1))
	if t == messages.AuthFailure {
		d = max(d, c.AuthRetryDelay)
	}
	return d
}
