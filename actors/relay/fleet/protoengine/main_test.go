package protoengine_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The engine's members run in relay processes, and their tests in
// test/fleet: several members in one process race in protoactor-go's
// gossip and disthash, and even one races under -race (disthash's
// manager reads its ring while the topology updates it). Here run only
// the tests without a member, and the member start that fails.
//
// A failed start leaves the gossiper's log throttle, which protoactor-go
// starts and never stops. It is allowed here, and nowhere else: a relay
// without a cluster starts none of this (actors/relay's leak checks allow
// nothing).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1"),
	)
}
