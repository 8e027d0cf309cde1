package faultproxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/internal/faultproxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every wait: the tests assert outcomes, and only lower bounds
// of the delays they inject.
const wait = 10 * time.Second

// upstream serves each connection with handle on 127.0.0.1:0 until the
// test ends.
func upstream(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

func start(t *testing.T, upstreamAddr string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(upstreamAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, p *faultproxy.Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr().String(), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(wait))
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads its echo.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo differs: got %d bytes %q..., want %q...", len(got), got[:min(16, len(got))], msg[:min(16, len(msg))])
	}
}

// waitConns polls until the proxy holds n connections.
func waitConns(t *testing.T, p *faultproxy.Proxy, n int) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for p.Conns() != n {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("proxy holds %d connections, want %d", p.Conns(), n)
		}
	}
}

func TestForwardsBothWays(t *testing.T) {
	p := start(t, upstream(t, echo))
	c := dial(t, p)
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	roundTrip(t, c, []byte("hello"))
	go func() { _, _ = c.Write(big) }()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("1 MiB echo: err %v, equal %v", err, bytes.Equal(got, big))
	}
	if n := p.Conns(); n != 1 {
		t.Fatalf("Conns = %d, want 1", n)
	}
	c.Close()
	waitConns(t, p, 0)
}

func TestLatencyDelaysEachDirection(t *testing.T) {
	p := start(t, upstream(t, echo))
	c := dial(t, p)
	roundTrip(t, c, []byte("warm"))
	const latency = 100 * time.Millisecond
	if err := p.AddLatency(latency); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	roundTrip(t, c, []byte("slow"))
	if rtt := time.Since(began); rtt < 2*latency {
		t.Fatalf("round trip took %v, want at least %v", rtt, 2*latency)
	}
	// A second call replaces the first rather than failing on the name.
	if err := p.AddLatency(latency); err != nil {
		t.Fatalf("AddLatency again: %v", err)
	}
	p.Clear()
	roundTrip(t, c, []byte("fast again"))
}

func TestBandwidthLimitsThroughput(t *testing.T) {
	p := start(t, upstream(t, echo))
	c := dial(t, p)
	if err := p.LimitBandwidth(500); err == nil {
		t.Fatal("LimitBandwidth(500) succeeded, want an error below 1000 bytes/s")
	}
	if err := p.LimitBandwidth(20_000); err != nil {
		t.Fatal(err)
	}
	// 40 KB at 20 KB/s each way take about 2 s; the first 100 ms worth may
	// pass at once, so anything under 1 s means no limit.
	msg := bytes.Repeat([]byte{'x'}, 40_000)
	began := time.Now()
	go func() { _, _ = c.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < time.Second {
		t.Fatalf("40 KB at 20 KB/s took %v, want at least 1s", took)
	}
	p.Clear()
	roundTrip(t, c, []byte("unlimited"))
}

func TestResetConnectionsSendsRST(t *testing.T) {
	upstreamErr := make(chan error, 1)
	p := start(t, upstream(t, func(c net.Conn) {
		_, err := io.Copy(c, c)
		upstreamErr <- err
	}))
	c := dial(t, p)
	roundTrip(t, c, []byte("before"))

	if n := p.ResetConnections(); n != 1 {
		t.Fatalf("ResetConnections = %d, want 1", n)
	}
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after reset: %v, want ECONNRESET", err)
	}
	select {
	case err := <-upstreamErr:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("upstream read after reset: %v, want ECONNRESET", err)
		}
	case <-time.After(wait):
		t.Fatal("the upstream's connection was not reset")
	}
	waitConns(t, p, 0)

	roundTrip(t, dial(t, p), []byte("a new connection passes"))
}

func TestBlackholeStopsBytesAndKeepsTCPOpen(t *testing.T) {
	received := make(chan []byte, 16)
	p := start(t, upstream(t, func(c net.Conn) {
		buf := make([]byte, 1024)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			received <- append([]byte(nil), buf[:n]...)
			_, _ = c.Write(buf[:n])
		}
	}))
	c := dial(t, p)
	roundTrip(t, c, []byte("before"))
	<-received

	if err := p.Blackhole(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("into the void")); err != nil {
		t.Fatalf("write into a blackhole: %v, want it accepted", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a blackhole: %d bytes, %v; want a timeout with nothing", n, err)
	}
	select {
	case b := <-received:
		t.Fatalf("upstream received %q through a blackhole", b)
	default:
	}
	if n := p.Conns(); n != 1 {
		t.Fatalf("Conns = %d during the blackhole, want 1 (TCP stays open)", n)
	}
	// A connection made during the blackhole is accepted, and just as mute.
	during := dial(t, p)
	_, _ = during.Write([]byte("also lost"))
	_ = during.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := during.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a connection opened during the blackhole: %v, want a timeout", err)
	}

	p.Clear()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a blackholed connection survived Clear, want it closed")
	}
	waitConns(t, p, 0)
	roundTrip(t, dial(t, p), []byte("after"))
}

func TestHalfClose(t *testing.T) {
	t.Run("to client: the client reads EOF, its bytes still arrive", func(t *testing.T) {
		received := make(chan string, 1)
		p := start(t, upstream(t, func(c net.Conn) {
			b, _ := io.ReadAll(c)
			received <- string(b)
		}))
		c := dial(t, p)
		waitConns(t, p, 1)
		if n := p.HalfClose(faultproxy.ToClient); n != 1 {
			t.Fatalf("HalfClose = %d, want 1", n)
		}
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("client read: %d bytes, %v; want EOF", n, err)
		}
		if _, err := c.Write([]byte("still flowing")); err != nil {
			t.Fatal(err)
		}
		_ = c.CloseWrite()
		if got := <-received; got != "still flowing" {
			t.Fatalf("upstream received %q", got)
		}
		waitConns(t, p, 0)
	})
	t.Run("to upstream: the upstream reads EOF and can still answer", func(t *testing.T) {
		first := make(chan string, 1)
		p := start(t, upstream(t, func(c net.Conn) {
			hello := make([]byte, 5)
			_, _ = io.ReadFull(c, hello)
			first <- string(hello)
			rest, err := io.ReadAll(c)
			_, _ = fmt.Fprintf(c, "after %s%s: %v", hello, rest, err)
		}))
		c := dial(t, p)
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		// The FIN must not overtake "hello".
		if got := <-first; got != "hello" {
			t.Fatalf("upstream received %q", got)
		}
		if n := p.HalfClose(faultproxy.ToUpstream); n != 1 {
			t.Fatalf("HalfClose = %d, want 1", n)
		}
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "after hello: <nil>" {
			t.Fatalf("client read %q, %v", got, err)
		}
		// The client's direction is still open until the client closes.
		if n := p.Conns(); n != 1 {
			t.Fatalf("Conns = %d before the client closed, want 1", n)
		}
		c.Close()
		waitConns(t, p, 0)
	})
}

func TestUnreachableUpstreamClosesTheClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := start(t, addr)
	c := dial(t, p)
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read succeeded, want the connection closed")
	}
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns = %d, want 0", n)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	p, err := faultproxy.Start(upstream(t, echo))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	roundTrip(t, c, []byte("x"))
	if err := p.Blackhole(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after Close succeeded")
	}
	if _, err := net.DialTimeout("tcp", p.Addr().String(), wait); err == nil {
		t.Fatal("dial after Close succeeded")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Lifting a blackhole while bytes keep coming must not leave a goroutine
// of the toxic chain blocked (goleak checks at the end of the package).
func TestClearingABlackholeUnderTrafficLeavesNoGoroutine(t *testing.T) {
	p := start(t, upstream(t, echo))
	for range 20 {
		c := dial(t, p)
		roundTrip(t, c, []byte("up"))
		writing := make(chan struct{})
		go func() {
			defer close(writing)
			for {
				if _, err := c.Write([]byte("more bytes")); err != nil {
					return
				}
			}
		}()
		go func() { _, _ = io.Copy(io.Discard, c) }()
		if err := p.Blackhole(); err != nil {
			t.Fatal(err)
		}
		p.Clear()
		<-writing // Clear closed the connection
		c.Close()
	}
	waitConns(t, p, 0)
}
