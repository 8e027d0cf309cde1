package hardening_test

import (
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// 300 connections opened first, then a wrong key on each: the wrong-key
// limit was looked at only at the upgrade, so all 300 were answered in one
// burst. Now it applies to every auth frame: 20 are answered, the other 280
// wait their turn (one per window/limit, here 30 s, at most their auth
// timeout), and a right key from the same address, sent after all of them,
// is answered at once.
func TestWrongKeysOnConnectionsOpenedFirstWaitTheirTurn(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) {
		// Room for 300 from one address, so that the failure limit alone
		// holds them back.
		c.MaxPendingPerAddr, c.UpgradeBurst = 400, 400
		c.AuthFailureWindow = 10 * time.Minute
		c.AuthTimeout = time.Minute
	})
	const n = 300
	limit := int64(relay.DefaultConfig().MaxAuthFailures)
	ip := loopback(0)
	var answered atomic.Int64
	conns := make([]*websocket.Conn, n)
	done := make(chan struct{}, n)
	t.Cleanup(func() {
		closeAll(conns)
		for range n {
			<-done
		}
	})
	for i := range conns {
		conn, status, err := upgrade(r, ip)
		if err != nil {
			t.Fatalf("upgrade %d: %d %v", i+1, status, err)
		}
		conns[i] = conn
		go func() {
			defer func() { done <- struct{}{} }()
			if _, _, err := conn.ReadMessage(); err == nil {
				answered.Add(1)
			}
		}()
	}
	for _, conn := range conns {
		if err := sendFrame(conn, &wire.Frame{Type: wire.TypeAuth, APIKey: wrongKey}); err != nil {
			t.Fatal(err)
		}
	}
	harness.Eventually(t, wait, "all 300 keys refused", func() bool {
		return metric(t, r, `tunnel_relay_auth_failures_total{reason="invalid_key"}`) == n
	})
	harness.Eventually(t, wait, "the first 20 answered", func() bool { return answered.Load() >= limit })

	right, status, err := upgrade(r, ip)
	if err != nil {
		t.Fatalf("upgrade of the right key: %d %v", status, err)
	}
	defer right.Close()
	if err := sendFrame(right, &wire.Frame{Type: wire.TypeAuth, APIKey: defaultKey}); err != nil {
		t.Fatal(err)
	}
	_ = right.SetReadDeadline(time.Now().Add(wait))
	if _, data, err := right.ReadMessage(); err != nil || frameType(data) != wire.TypeAuthOK {
		t.Fatalf("right key from the same address answered %q, %v; want auth_ok", data, err)
	}
	if got := answered.Load(); got != limit {
		t.Fatalf("%d wrong keys answered by the time the right one was, want %d", got, limit)
	}
}

// 21 wrong keys from one address got it 429 for a minute, and the
// supervisor behind the same address (a NAT, a load balancer) got
// AUTH_FAILURE and lost its tunnel. Now a client retrying a wrong key from
// that address has its refusals slowed down, while the supervisor with the
// right key reconnects at once, serves, and another one joins from there.
func TestWrongKeysFromAnAddressNeverLockOutItsRightKey(t *testing.T) {
	r := startRelay(t, nil)
	legit := startTunnel(t, harness.TunnelURL(r), defaultKey, upstream(t, hello), nil)
	legit.await(messages.Authenticated)

	flood := startTunnel(t, harness.TunnelURL(r), wrongKey, "", func(c *supervisor.Config) {
		fastRetry(c)
		// Under the address's upgrade rate (10 a second): the wrong keys,
		// not the upgrades, are what is tried here.
		c.RetryDelay, c.AuthRetryDelay = 150*time.Millisecond, 150*time.Millisecond
	})
	harness.Eventually(t, wait, "more than 20 wrong keys from the address", func() bool {
		return metric(t, r, `tunnel_relay_auth_failures_total{reason="invalid_key"}`) > 20
	})

	legit.Reconnect()
	legit.await(messages.Disconnected)
	legit.await(messages.Authenticated)
	if st := legit.Status(); len(st.Health.FailureTypes) != 0 {
		t.Fatalf("the right key failed during the flood: %v (%s)", st.Health.FailureTypes, st.Health.LastError)
	}
	if status, body := get(t, httpClient(t), publicURL(r)+"/tts"); status != http.StatusOK || body != "hello" {
		t.Fatalf("public request during the flood: %d %q", status, body)
	}
	other := startTunnel(t, harness.TunnelURL(r), keyB, "", func(c *supervisor.Config) {
		c.Tunnel = "b"
		c.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).DialContext
	})
	other.await(messages.Authenticated)
	if st := flood.Status(); st.Connected || st.Health.FailureTypes[messages.AuthFailure.String()] == 0 {
		t.Fatalf("the wrong key: connected %v, failures %v", st.Connected, st.Health.FailureTypes)
	}
}
