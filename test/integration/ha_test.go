package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/internal/faultproxy"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// tally counts the outcomes of a load's requests. Every request ends in
// exactly one of them: no answer at all (lost) is a failure of the test.
type tally struct {
	mu       sync.Mutex
	byStatus map[int]int
	byMethod map[string]map[int]int
	lost     []string
}

func newTally() *tally {
	return &tally{byStatus: map[int]int{}, byMethod: map[string]map[int]int{}}
}

func (c *tally) add(method string, status int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.lost = append(c.lost, fmt.Sprintf("%s: %v", method, err))
		return
	}
	c.byStatus[status]++
	if c.byMethod[method] == nil {
		c.byMethod[method] = map[int]int{}
	}
	c.byMethod[method][status]++
}

func (c *tally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("by method %v, %d without an answer", c.byMethod, len(c.lost))
}

func (c *tally) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.lost)
	for _, k := range c.byStatus {
		n += k
	}
	return n
}

// load sends requests from workers goroutines to url until stop is
// closed, alternating GET and POST when mixed, each with a client deadline
// far beyond the relay's: a request without an answer is lost.
func (w *world) load(url string, workers int, mixed bool, stop <-chan struct{}) (*tally, func()) {
	c := newTally()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				method := http.MethodGet
				if mixed && (n+i)%2 == 1 {
					method = http.MethodPost
				}
				ctx, cancel := context.WithTimeout(context.Background(), patience)
				req, _ := http.NewRequestWithContext(ctx, method, fmt.Sprintf("%s?w=%d&n=%d", url, i, n), strings.NewReader("speak"))
				resp, err := w.client.Do(req)
				status := 0
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				cancel()
				c.add(method, status, err)
			}
		}()
	}
	return c, wg.Wait
}

// haTunnel starts a supervisor with a connection to each of urls.
func (w *world) haTunnel(urls []string, upstream string, change func(*supervisor.Config)) *tunnel {
	return w.startTunnel(urls[0], upstream, func(c *supervisor.Config) {
		c.RelayURL, c.RelayURLs, c.Connections = "", urls, len(urls)
		c.BreakerThreshold = 100 // however long a relay takes to come back
		if change != nil {
			change(c)
		}
	})
}

// readyConnections waits until the tunnel's status counts n.
func (tn *tunnel) readyConnections(t *testing.T, n int) {
	t.Helper()
	harness.Eventually(t, patience, fmt.Sprintf("%d ready connections", n), func() bool { return tn.Status().ReadyConnections == n })
}

// Two relays, one supervisor with a connection to each: relay A goes away
// and comes back while load runs through relay B, which never fails a
// request; the supervisor's ready connections go 2 -> 1 -> 2.
func TestRelayRestartLeavesTheOtherRelaysLoadUntouched(t *testing.T) {
	w := newWorld(t)
	a := w.startRelay("127.0.0.1:0", nil)
	addrA := a.Addr().String()
	b := w.startRelay("127.0.0.1:0", nil)
	up := w.startUpstream(echoUpstream())
	tn := w.haTunnel([]string{harness.TunnelURL(a), harness.TunnelURL(b)}, up.URL, nil)
	tn.readyConnections(t, 2)

	stop := make(chan struct{})
	counts, wait := w.load(publicURL(b, "/echo"), 4, true, stop)
	harness.Eventually(t, patience, "load through B", func() bool { return counts.total() > 20 })
	harness.CloseRelay(t, a)
	tn.readyConnections(t, 1)
	if st := tn.Status(); !st.Connected || st.Connections[0].Connected || !st.Connections[1].Connected {
		t.Errorf("with A down: connected %v, connections %v %v; want connected through B alone", st.Connected, st.Connections[0].State, st.Connections[1].State)
	}
	before := counts.total()
	harness.Eventually(t, patience, "load through B while A is down", func() bool { return counts.total() > before+20 })
	w.startRelay(addrA, nil)
	tn.readyConnections(t, 2)
	after := counts.total()
	harness.Eventually(t, patience, "load through B after A is back", func() bool { return counts.total() > after+20 })
	close(stop)
	wait()

	if counts.byStatus[http.StatusOK] != counts.total() {
		t.Errorf("requests through B: %s; want every one 200", counts)
	}
	if st := tn.Status(); st.Connections[1].Health.TotalAttempts != 1 || st.Connections[1].Health.Drops != 0 {
		t.Errorf("connection to B: %d attempts, %d drops; want 1 and 0", st.Connections[1].Health.TotalAttempts, st.Connections[1].Health.Drops)
	}
}

// One relay, two connections through two fault proxies: one path is
// blackholed under load. Requests keep succeeding over the other path;
// those caught on the dead path are retried when idempotent and answered
// 502 otherwise; none is left without an answer.
func TestBlackholedPathLosesNoRequest(t *testing.T) {
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", func(c *relay.Config) {
		c.HeartbeatTimeout = 2 * time.Second // the relay gives the dead session up fast
		c.PingInterval = 500 * time.Millisecond
	})
	var proxies [2]*faultproxy.Proxy
	var urls []string
	for i := range proxies {
		p, err := faultproxy.Start(r.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		proxies[i] = p
		urls = append(urls, "ws://"+p.Addr().String()+"/tunnel")
	}
	// Slow answers keep requests in flight on both paths when one dies.
	up := w.startUpstream(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		<-time.After(20 * time.Millisecond)
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(rw, "ok")
	}))
	tn := w.haTunnel(urls, up.URL, func(c *supervisor.Config) {
		c.HeartbeatTimeout = 3 * time.Second
		c.PongTimeout = 3 * time.Second
		c.PingInterval = 500 * time.Millisecond
		c.RetryDelay = time.Second
	})
	tn.readyConnections(t, 2)

	stop := make(chan struct{})
	counts, wait := w.load(publicURL(r, "/speak"), 8, true, stop)
	harness.Eventually(t, patience, "load on both paths", func() bool { return counts.total() > 50 })
	if err := proxies[0].Blackhole(); err != nil {
		t.Fatal(err)
	}
	tn.readyConnections(t, 1)
	before := counts.total()
	harness.Eventually(t, patience, "requests over the live path", func() bool { return counts.total() > before+100 })
	close(stop)
	wait()

	if len(counts.lost) > 0 {
		t.Fatalf("%d requests got no answer: %v", len(counts.lost), counts.lost[:min(5, len(counts.lost))])
	}
	for method, statuses := range counts.byMethod {
		for status, n := range statuses {
			switch {
			case status == http.StatusOK:
			case method == http.MethodPost && status == http.StatusBadGateway:
			default:
				t.Errorf("%d %s requests answered %d; want 200 (or 502 for a POST caught on the dead path)", n, method, status)
			}
		}
	}
	t.Logf("outcomes: %s", counts)
}

// A relay restart with a hold timeout longer than the supervisor's retry
// delay is invisible to public clients: requests sent during the gap wait
// for the tunnel and succeed.
func TestRequestsDuringARelayRestartAreHeldAndSucceed(t *testing.T) {
	w := newWorld(t)
	const retry = time.Second
	hold := func(c *relay.Config) { c.HoldTimeout = 10 * retry }
	r1 := w.startRelay("127.0.0.1:0", hold)
	addr := r1.Addr().String()
	up := w.startUpstream(echoUpstream())
	tn := w.startTunnel(harness.TunnelURL(r1), up.URL, func(c *supervisor.Config) {
		c.RetryDelay = retry
		c.BreakerThreshold = 100
	})
	w.waitConnected(tn, r1)

	harness.CloseRelay(t, r1)
	harness.Eventually(t, patience, "the supervisor to notice", func() bool { return !tn.Status().Connected })
	r2 := w.startRelay(addr, hold)
	codes := make(chan int, 8)
	for i := range cap(codes) {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, publicURL(r2, fmt.Sprintf("/echo?i=%d", i)), strings.NewReader("held"))
			resp, _, err := w.do(req)
			if err != nil {
				codes <- 0
				return
			}
			codes <- resp.StatusCode
		}()
	}
	// A 200 is itself the proof that the request was held no longer than
	// the hold timeout: past it the relay answers 503.
	for range cap(codes) {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("a request sent while the tunnel reconnected got %d, want 200", code)
		}
	}
}

// Two supervisor processes serve one tunnel side by side for a minute:
// neither reconnects (one attempt per connection), and both get requests.
func TestTwoSupervisorProcessesBothServeOneTunnel(t *testing.T) {
	w := newWorld(t)
	r := w.startRelay("127.0.0.1:0", nil)
	var statusURLs []string
	for _, name := range []string{"first", "second"} {
		up := w.startUpstream(named(name))
		listen := freeAddr(t)
		startBinary(t, "tunnel-supervisor", []string{"-log-format", "json"}, []string{
			"TUNNEL_RELAY_URL=" + harness.TunnelURL(r), "TUNNEL_API_KEY=" + testKey,
			"TUNNEL_FORWARD=" + up.URL, "TUNNEL_LISTEN=" + listen,
		})
		statusURLs = append(statusURLs, "http://"+listen+"/status")
	}
	statusOf := func(url string) (st supervisor.Status) {
		resp, err := http.Get(url)
		if err != nil {
			return st
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st
	}
	for _, url := range statusURLs {
		harness.Eventually(t, patience, "both connections of "+url, func() bool { return statusOf(url).ReadyConnections == 2 })
	}

	served := map[string]int{}
	tick := time.NewTicker(50 * time.Millisecond) // a steady trickle for the minute, not a load
	defer tick.Stop()
	for end := time.Now().Add(time.Minute); time.Now().Before(end); <-tick.C {
		code, body := w.get(publicURL(r, "/who"))
		if code != http.StatusOK {
			t.Fatalf("request answered %d %q", code, body)
		}
		served[string(body)]++
	}
	if served["first"] == 0 || served["second"] == 0 {
		t.Errorf("served %v; want both supervisors to serve", served)
	}
	for _, url := range statusURLs {
		st := statusOf(url)
		for _, c := range st.Connections {
			if c.State != messages.Authenticated || c.Health.TotalAttempts != 1 || c.Health.Drops != 0 {
				t.Errorf("%s connection %d: %s after %d attempts, %d drops; want AUTHENTICATED on its one attempt", url, c.Index, c.State, c.Health.TotalAttempts, c.Health.Drops)
			}
		}
	}
}
