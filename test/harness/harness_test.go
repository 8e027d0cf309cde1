package harness_test

import (
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

func TestStatesCountsEachState(t *testing.T) {
	var s harness.States
	for _, st := range []messages.State{messages.Connecting, messages.Authenticated, messages.Connecting} {
		s.Record(messages.StateChanged{State: st})
	}
	if n := s.Count(messages.Connecting); n != 2 {
		t.Fatalf("Count(CONNECTING) = %d, want 2", n)
	}
	if n := len(s.All()); n != 3 {
		t.Fatalf("All() holds %d changes, want 3", n)
	}
}

func TestLogBufferCountsLines(t *testing.T) {
	var b harness.LogBuffer
	fmt.Fprintln(&b, "refused key")
	fmt.Fprintln(&b, "accepted")
	fmt.Fprintln(&b, "refused again")
	if n := b.Count("refused"); n != 2 {
		t.Fatalf("Count = %d, want 2", n)
	}
}

func TestSelfSignedLoadsAsAKeyPair(t *testing.T) {
	certFile, keyFile, roots := harness.SelfSigned(t)
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if roots == nil {
		t.Fatal("no pool")
	}
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	harness.Eventually(t, harness.StopTimeout, "the third call", func() bool {
		calls++
		return calls == 3
	})
}
