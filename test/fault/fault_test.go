package fault

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/internal/batchconn"
	"github.com/enhanced-tunnel/tunnel/internal/faultproxy"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

func TestBlackholeIsCaughtByTheHeartbeatAndTheTunnelRecovers(t *testing.T) {
	r := newRig(t)
	r.waitAuthenticated(1)

	// Counted from here: a loaded machine may have cost a reconnect already.
	stales, networkErrors := len(r.stale.times()), r.failures(messages.NetworkError)
	authenticated := r.states.Count(messages.Authenticated)
	began := time.Now()
	if err := r.proxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, patience, "a stale connection", func() bool { return len(r.stale.times()) > stales })
	// The last ack can have come up to one interval before the blackhole.
	if d := r.stale.times()[stales].Sub(began); d < heartbeatTimeout-heartbeatInterval {
		t.Errorf("stale %v after the blackhole began, sooner than the heartbeat timeout allows", d)
	}
	harness.Eventually(t, patience, "a NETWORK_ERROR", func() bool { return r.failures(messages.NetworkError) > networkErrors })
	// Attempts into the blackhole get through TCP but no further.
	harness.Eventually(t, patience, "an attempt to time out", func() bool { return r.failures(messages.Timeout) >= 1 })
	if n := r.states.Count(messages.Authenticated); n != authenticated {
		t.Fatalf("AUTHENTICATED %d times during the blackhole", n-authenticated)
	}
	if n := len(r.stale.times()); n != stales+1 {
		t.Fatalf("%d stale connections during the blackhole, want 1", n-stales)
	}

	r.proxy.Clear()
	r.waitAuthenticated(authenticated + 1)
	r.expectSpeech("back after the blackhole")
}

func TestRequestCaughtByABlackholeIsAnsweredWithAnError(t *testing.T) {
	r := newRig(t)
	r.waitAuthenticated(1)

	type answer struct {
		status int
		body   []byte
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := r.client.Get(r.publicURL("/hold"))
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		answered <- answer{resp.StatusCode, body, err}
	}()
	select {
	case <-r.held:
	case <-time.After(patience):
		t.Fatal("the request did not reach the upstream")
	}
	if err := r.proxy.Blackhole(); err != nil {
		t.Fatal(err)
	}

	var a answer
	select {
	case a = <-answered:
	case <-time.After(patience):
		t.Fatal("the request caught by the blackhole got no answer")
	}
	var e struct{ Error string }
	if a.err != nil || a.status != http.StatusBadGateway || json.Unmarshal(a.body, &e) != nil || e.Error == "" {
		t.Fatalf("answer %d %q (%v), want 502 with a JSON error", a.status, a.body, a.err)
	}
	r.proxy.Clear()
	r.waitAuthenticated(2)
}

func TestResetIsANetworkErrorAndTheTunnelReconnects(t *testing.T) {
	r := newRig(t)
	r.waitAuthenticated(1)

	if n := r.proxy.ResetConnections(); n != 1 {
		t.Fatalf("ResetConnections reset %d connections, want 1", n)
	}
	r.waitAuthenticated(2)
	r.expectSpeech("back after the reset")
	if types := r.status().Health.FailureTypes; types[messages.NetworkError.String()] == 0 || len(types) != 1 {
		t.Fatalf("failure types %v, want NETWORK_ERROR only", types)
	}
}

func TestLatencyLeavesTheTunnelUpAndServing(t *testing.T) {
	r := newRig(t)
	r.waitAuthenticated(1)

	const latency = 50 * time.Millisecond
	if err := r.proxy.AddLatency(latency); err != nil {
		t.Fatal(err)
	}
	// Serve for several heartbeat timeouts: long enough for a heartbeat
	// that could not cope with the latency to give up.
	began := time.Now()
	requests := 0
	for time.Since(began) < 4*heartbeatTimeout {
		sent := time.Now()
		r.expectSpeech("slow but steady")
		if d := time.Since(sent); d < 2*latency {
			t.Fatalf("a request took %v, less than the %v round trip of the proxy", d, 2*latency)
		}
		requests++
	}
	st := r.status()
	if st.State != messages.Authenticated || r.states.Count(messages.Authenticated) != 1 || len(st.Health.FailureTypes) != 0 {
		t.Fatalf("after %d requests under latency: state %s, AUTHENTICATED %d times, failures %v; want the first connection still up",
			requests, st.State, r.states.Count(messages.Authenticated), st.Health.FailureTypes)
	}
	if rtt := st.Health.LastHeartbeatRTT; rtt == nil || *rtt < (2*latency).Seconds() {
		t.Fatalf("last heartbeat round trip %v s, want at least %v", rtt, 2*latency)
	}
	r.proxy.Clear()
}

func TestHalfClosedConnectionIsCaught(t *testing.T) {
	for _, dir := range []faultproxy.Direction{faultproxy.ToClient, faultproxy.ToUpstream} {
		t.Run(dir.String(), func(t *testing.T) {
			r := newRig(t)
			r.waitAuthenticated(1)

			if n := r.proxy.HalfClose(dir); n != 1 {
				t.Fatalf("HalfClose shut %d connections, want 1", n)
			}
			r.waitAuthenticated(2)
			r.expectSpeech("back after the half-close")
			if types := r.status().Health.FailureTypes; types[messages.NetworkError.String()] == 0 || len(types) != 1 {
				t.Fatalf("failure types %v, want NETWORK_ERROR only", types)
			}
		})
	}
}

func TestRelayRestartedBehindTheProxyIsReconnected(t *testing.T) {
	r := newRig(t)
	r.waitAuthenticated(1)

	r.closeRelay()
	harness.Eventually(t, patience, "the loss to be a NETWORK_ERROR", func() bool { return r.failures(messages.NetworkError) >= 1 })
	// The proxy still accepts, but cannot reach the relay: attempt after
	// attempt fails until the breaker opens.
	harness.Eventually(t, patience, "the breaker to open", func() bool { return r.status().CircuitBreaker.Openings >= 1 })
	if n := r.states.Count(messages.Authenticated); n != 1 {
		t.Fatalf("AUTHENTICATED %d times while the relay was down, want once (before)", n)
	}

	r.startRelay()
	r.waitAuthenticated(2)
	r.expectSpeech("back after the relay restart")
	if st := r.status(); st.CircuitBreaker.State != messages.BreakerClosed || st.Health.ConsecutiveFailures != 0 {
		t.Fatalf("breaker %s with %d consecutive failures after the reconnect, want closed and 0",
			st.CircuitBreaker.State, st.Health.ConsecutiveFailures)
	}
}

// A streamed upload refused while the tunnel is down is answered before its
// body is read; the relay then closes the connection, and must say so, or
// the client sends its next request on a dead connection: a POST is not
// retried, and is lost.
func TestUploadRefusedWhileTheTunnelIsDownLeavesNoDeadConnection(t *testing.T) {
	r := newRig(t)
	r.waitAuthenticated(1)
	if err := r.proxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, patience, "the relay to drop the tunnel", func() bool { return len(r.relayTunnels()) == 0 })
	upload := bytes.Repeat([]byte("u"), 96<<10) // over the inline limit: streamed
	for i := range 50 {
		resp, err := r.client.Post(r.publicURL("/echo"), "application/octet-stream", bytes.NewReader(upload))
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
			t.Fatalf("upload %d: %d, Connection: close %v; want 503 with Connection: close", i, resp.StatusCode, resp.Close)
		}
		resp, err = r.client.Post(r.publicURL("/v1/tts"), "application/json", strings.NewReader(`{"text":"x"}`))
		if err != nil {
			t.Fatalf("request %d after a refused upload: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	r.proxy.Clear()
}

// A heartbeat never waits behind megabytes of audio already queued for the
// socket: over a link of a few hundred KB/s carrying two large responses,
// every heartbeat comes back within the time one chunk and the socket's
// bounded unsent bytes take to cross the link, and the connection is never
// judged stale.
func TestHeartbeatsKeepUpWithBulkDataOverASlowLink(t *testing.T) {
	const (
		rate     = 400_000 // bytes per second through the proxy
		size     = 1 << 20 // each response
		interval = 250 * time.Millisecond
	)
	// Ahead of a heartbeat: the rest of the chunk being written, the unsent
	// bytes the socket may hold (batchconn.LimitUnsent) and the link's own
	// queue (the proxy's 64 KiB receive buffers, doubled by the kernel):
	// about 1.6 s at this rate. Without the bound on unsent bytes no
	// heartbeat comes back at all while the 2 MiB cross.
	bound := time.Duration(float64(wire.DefaultChunkLimit+batchconn.DefaultUnsent+256<<10) / rate * float64(time.Second))
	r := newRig(t, func(c *supervisor.Config) {
		c.HeartbeatInterval = interval
		c.HeartbeatTimeout = 2 * bound
	})
	r.waitAuthenticated(1)
	if err := r.proxy.LimitBandwidth(rate); err != nil {
		t.Fatal(err)
	}
	defer r.proxy.Clear()

	done := make(chan error, 2)
	for range 2 {
		go func() {
			resp, err := r.client.Get(r.publicURL("/bytes?n=" + strconv.Itoa(size)))
			if err != nil {
				done <- err
				return
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil && n != size {
				err = fmt.Errorf("got %d bytes, want %d", n, size)
			}
			done <- err
		}()
	}
	var worst float64
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for finished := 0; finished < 2; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished++
		case <-tick.C:
			if rtt := r.status().Health.LastHeartbeatRTT; rtt != nil {
				worst = max(worst, *rtt)
			}
		}
	}
	t.Logf("slowest heartbeat round trip %.2fs (bound %v)", worst, bound)
	if worst == 0 {
		t.Fatal("no heartbeat came back while the responses crossed the link")
	}
	if worst > bound.Seconds() {
		t.Fatalf("slowest heartbeat round trip %.2fs, want within %v", worst, bound)
	}
	if stale := r.stale.times(); len(stale) > 0 || r.states.Count(messages.Authenticated) != 1 {
		t.Fatalf("stale detections %v, AUTHENTICATED %d times; want none and one", stale, r.states.Count(messages.Authenticated))
	}
}
