package agent_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Once every test's agent, relay and upstream are shut down, nothing of
// them is left running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
