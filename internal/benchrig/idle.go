package benchrig

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The idle phase.
const (
	// idleDialConcurrency is how many idle tunnels are being opened at
	// once; the relay's pending limits are raised above it.
	idleDialConcurrency = 64
	// idleBuffer is the read and write buffer of each idle tunnel here:
	// they carry heartbeats only.
	idleBuffer = 256
	// idleSettle is the wait after the last idle tunnel authenticated,
	// before the relay's resident memory is read again.
	idleSettle = 3 * time.Second
	// trafficSettle is the wait after the traffic supervisor's first
	// request went through, before its bytes are counted, so that none
	// of that request's bytes are.
	trafficSettle = 2 * time.Second
	// heartbeatEvery is the interval of the idle tunnels' heartbeats, the
	// supervisor's default: without them (or pongs) the relay would drop
	// a tunnel after its heartbeat timeout.
	heartbeatEvery = 15 * time.Second
	// fdSpare is the descriptors the relay and this process need beside
	// one per idle tunnel.
	fdSpare = 100
	// trafficTunnel is the tunnel of the real supervisor whose traffic is
	// counted.
	trafficTunnel = "idle-bytes"
)

// IdleResult is what the idle phase measured.
type IdleResult struct {
	// Tunnels idle tunnels were open between the two readings of the
	// relay's resident set, RSSBefore and RSSAfter (bytes).
	Tunnels             int
	RSSBefore, RSSAfter int64
	// TrafficBytes crossed the TCP stream of one idle supervisor, both
	// ways, over Window.
	TrafficBytes int64
	Window       time.Duration
}

// RSSPerTunnel is the relay's resident memory per idle tunnel, in bytes.
func (r IdleResult) RSSPerTunnel() float64 {
	return float64(r.RSSAfter-r.RSSBefore) / float64(r.Tunnels)
}

// TrafficPer15s is an idle tunnel's traffic per 15 s, in bytes.
func (r IdleResult) TrafficPer15s() float64 {
	return float64(r.TrafficBytes) * float64(15*time.Second) / float64(r.Window)
}

// idle starts a fresh relay that knows cfg.IdleTunnels tunnels and
// trafficTunnel, and measures its memory per idle tunnel while one real
// supervisor's idle traffic is counted.
func (r *rig) idle(ctx context.Context) (*IdleResult, error) {
	// Ends the traffic count too, should the phase fail.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := r.cfg.IdleTunnels
	if r.openFiles < uint64(n)+fdSpare {
		return nil, fmt.Errorf("%d idle tunnels need more than %d open files (RLIMIT_NOFILE); raise the hard limit or open fewer", n, r.openFiles)
	}
	names, keys := make([]string, n), make([]string, n)
	var file strings.Builder
	for i := range n {
		key, err := newKey()
		if err != nil {
			return nil, err
		}
		names[i], keys[i] = fmt.Sprintf("idle-%05d", i+1), key
		fmt.Fprintf(&file, "%s %s\n", names[i], key)
	}
	trafficKey, err := newKey()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&file, "%s %s\n", trafficTunnel, trafficKey)
	keysFile := filepath.Join(r.procs.dir, "keys-idle")
	if err := os.WriteFile(keysFile, []byte(file.String()), 0o600); err != nil {
		return nil, err
	}
	// All the tunnels come from 127.0.0.1, fast: the per-address limits
	// of a public relay would refuse them.
	limit := strconv.Itoa(n + 10)
	relay, addr, err := r.startRelay(ctx, "relay-idle", keysFile,
		"-max-sessions", limit, "-upgrade-burst", limit, "-upgrade-rate", limit,
		"-max-pending", strconv.Itoa(2*idleDialConcurrency), "-max-pending-per-addr", strconv.Itoa(2*idleDialConcurrency))
	if err != nil {
		return nil, err
	}
	defer r.procs.stop(relay)

	proxy, err := startCountingProxy(addr)
	if err != nil {
		return nil, err
	}
	defer proxy.close()
	sup, err := r.startSupervisor(ctx, "supervisor-idle", "ws://"+proxy.addr()+"/tunnel", trafficTunnel, trafficKey, addr)
	if err != nil {
		return nil, err
	}
	defer r.procs.stop(sup)

	res := &IdleResult{Window: r.cfg.IdleWindow}
	if res.RSSBefore, err = readRSS(relay.pid()); err != nil {
		return nil, err
	}
	traffic := make(chan error, 1)
	go func() {
		if err := sleep(ctx, trafficSettle); err != nil {
			traffic <- err
			return
		}
		from := proxy.bytes()
		if err := sleep(ctx, r.cfg.IdleWindow); err != nil {
			traffic <- err
			return
		}
		res.TrafficBytes = proxy.bytes() - from
		traffic <- nil
	}()

	progress(r.cfg, "opening %d idle tunnels on %s", n, addr)
	opening := time.Now()
	tunnels, err := openIdleTunnels(ctx, addr, names, keys)
	defer tunnels.close()
	if err != nil {
		return nil, err
	}
	progress(r.cfg, "%d idle tunnels authenticated in %v", n, time.Since(opening).Round(time.Millisecond))
	stopBeats := tunnels.heartbeat()
	defer stopBeats()
	if err := sleep(ctx, idleSettle); err != nil {
		return nil, err
	}
	if res.RSSAfter, err = readRSS(relay.pid()); err != nil {
		return nil, err
	}
	res.Tunnels = n
	progress(r.cfg, "relay RSS %d KiB before, %d KiB after; waiting for the %v traffic window to end", res.RSSBefore>>10, res.RSSAfter>>10, r.cfg.IdleWindow)
	if err := <-traffic; err != nil {
		return nil, err
	}
	if lost := tunnels.lost(); lost != nil {
		return nil, lost
	}
	select {
	case <-sup.done:
		return nil, sup.exitError()
	default:
	}
	return res, nil
}

// idleTunnels are bare protocol clients of the relay, authenticated, each
// with a goroutine reading (and so answering the relay's pings).
type idleTunnels struct {
	mu      sync.Mutex
	conns   []*websocket.Conn
	closed  int   // tunnels that ended before close
	lastErr error // why the last of them ended
	readers sync.WaitGroup
	done    chan struct{}
}

// openIdleTunnels opens a tunnel per name, idleDialConcurrency at a time,
// and returns once all are authenticated or one failed.
func openIdleTunnels(ctx context.Context, addr string, names, keys []string) (*idleTunnels, error) {
	t := &idleTunnels{done: make(chan struct{})}
	dialer := websocket.Dialer{ReadBufferSize: idleBuffer, WriteBufferSize: idleBuffer, HandshakeTimeout: requestTimeout}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range idleDialConcurrency {
		wg.Go(func() {
			for i := range next {
				c, err := openIdleTunnel(ctx, &dialer, "ws://"+addr+"/tunnel", names[i], keys[i])
				if err != nil {
					cancel(fmt.Errorf("idle tunnel %s: %w", names[i], err))
					continue
				}
				t.mu.Lock()
				t.conns = append(t.conns, c)
				t.mu.Unlock()
				t.readers.Go(func() { t.read(c) })
			}
		})
	}
feed:
	for i := range names {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return t, context.Cause(ctx)
}

// openIdleTunnel dials url and authenticates as tunnel name.
func openIdleTunnel(ctx context.Context, dialer *websocket.Dialer, url, name, key string) (*websocket.Conn, error) {
	c, _, err := dialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	auth, _ := json.Marshal(map[string]string{"type": "auth", "api_key": key, "tunnel": name})
	deadline := time.Now().Add(requestTimeout)
	_ = c.SetWriteDeadline(deadline)
	_ = c.SetReadDeadline(deadline)
	if err := c.WriteMessage(websocket.TextMessage, auth); err != nil {
		c.Close()
		return nil, err
	}
	_, msg, err := c.ReadMessage()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("waiting for auth_ok: %w", err)
	}
	var answer struct {
		Type  string `json:"type"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(msg, &answer); err != nil || answer.Type != "auth_ok" {
		c.Close()
		return nil, fmt.Errorf("answer %q %q instead of auth_ok", answer.Type, answer.Error)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// read discards what the relay sends c (heartbeat acks); gorilla answers
// its pings meanwhile. An end before close is counted.
func (t *idleTunnels) read(c *websocket.Conn) {
	for {
		if _, _, err := c.NextReader(); err != nil {
			select {
			case <-t.done:
			default:
				t.mu.Lock()
				t.closed++
				t.lastErr = err
				t.mu.Unlock()
			}
			return
		}
	}
}

// heartbeat sends each tunnel a heartbeat every heartbeatEvery, until the
// returned function is called.
func (t *idleTunnels) heartbeat() (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(heartbeatEvery)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				frame := []byte(fmt.Sprintf(`{"type":"heartbeat","timestamp":%d}`, now.UnixMilli()))
				t.mu.Lock()
				conns := t.conns
				t.mu.Unlock()
				for _, c := range conns {
					_ = c.SetWriteDeadline(time.Now().Add(requestTimeout))
					// A failure shows in read, which counts it.
					_ = c.WriteMessage(websocket.TextMessage, frame)
				}
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
	}
}

// lost reports the tunnels the relay closed before the end.
func (t *idleTunnels) lost() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed > 0 {
		return fmt.Errorf("the relay closed %d idle tunnels early, one with: %w", t.closed, t.lastErr)
	}
	return nil
}

// close closes every tunnel and waits for their readers.
func (t *idleTunnels) close() {
	close(t.done)
	t.mu.Lock()
	for _, c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.readers.Wait()
}

// countingProxy forwards TCP connections to a target and counts the bytes
// it forwards, both ways: the WebSocket stream, framing included, without
// the TCP/IP headers.
type countingProxy struct {
	ln     net.Listener
	target string
	n      atomic.Int64
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startCountingProxy(target string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	return p, nil
}

func (p *countingProxy) addr() string { return p.ln.Addr().String() }

func (p *countingProxy) bytes() int64 { return p.n.Load() }

func (p *countingProxy) accept() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, up)
		p.mu.Unlock()
		p.wg.Go(func() { p.copy(up, down) })
		p.wg.Go(func() { p.copy(down, up) })
	}
}

// copy forwards src to dst, counting, and closes both at the end.
func (p *countingProxy) copy(dst, src net.Conn) {
	_, _ = io.Copy(countingWriter{dst, &p.n}, src)
	dst.Close()
	src.Close()
}

func (p *countingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// countingWriter adds what it writes to n.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	k, err := c.w.Write(b)
	c.n.Add(int64(k))
	return k, err
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
