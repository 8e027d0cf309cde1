package fleet_test

import (
	"testing"

	"go.uber.org/goleak"
)

// A Fleet runs a goroutine until Close; this catches one left running by a
// test outside a synctest bubble (the example), which no bubble checks.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
