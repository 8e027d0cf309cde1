package supervisor_test

import (
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/relaystub"
)

// Over real loopback sockets: once Stop returns, nothing of the tunnel is
// left running, its own actor system included.
func TestStopLeavesNoGoroutine(t *testing.T) {
	before := goleak.IgnoreCurrent()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stub := relaystub.New(l, relaystub.Options{APIKey: stubKey})
	defer stub.Close()

	up := make(chan struct{})
	cfg := supervisor.DefaultConfig()
	cfg.Connections = 1 // the one-connection behaviour under test
	cfg.RelayURL = stub.URL()
	cfg.APIKey = stubKey
	cfg.HeartbeatInterval, cfg.HeartbeatTimeout = 50*time.Millisecond, time.Second
	cfg.OnStateChange = func(s messages.StateChanged) {
		if s.State == messages.Authenticated {
			close(up)
		}
	}
	tun, err := supervisor.Start(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-up:
	case <-time.After(10 * time.Second):
		t.Fatal("not authenticated within 10s")
	}
	// Some traffic first, so that every goroutine kind has run.
	if err := tun.Send(context.Background(), &messages.TunnelMessage{Type: messages.TypeError, MessageID: "x", Error: "e"}); err != nil {
		t.Fatal(err)
	}
	if err := tun.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = stub.Close()
	// goleak retries for about a second before it reports.
	goleak.VerifyNone(t, before)
}
