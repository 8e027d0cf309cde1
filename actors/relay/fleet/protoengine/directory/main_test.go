package directory_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every actor system lives in a testing/synctest bubble (probe.Bubble),
// which already waits for its goroutines; goleak also catches a test that
// forgets the bubble.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
