package pipenet_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/enhanced-tunnel/tunnel/test/pipenet"
)

func TestDialReachesListener(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		defer n.Close()
		l := n.Listener()
		go func() {
			s, err := l.Accept()
			if err != nil {
				return
			}
			defer s.Close()
			_, _ = io.Copy(s, s)
		}()
		c, err := n.DialContext(context.Background(), "tcp", "anything:80")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo = %q, %v", buf, err)
		}
	})
}

func TestRefused(t *testing.T) {
	n := pipenet.New()
	defer n.Close()
	refused := func(when string) {
		t.Helper()
		_, err := n.DialContext(context.Background(), "tcp", "relay:80")
		var opErr *net.OpError
		if !errors.As(err, &opErr) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: err = %v, want a *net.OpError wrapping ECONNREFUSED", when, err)
		}
	}
	refused("nothing listening")

	l := n.Listener()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	n.SetRefusing(true)
	refused("refusing")
	n.SetRefusing(false)
	c, err := n.DialContext(context.Background(), "tcp", "relay:80")
	if err != nil {
		t.Fatalf("after SetRefusing(false): %v", err)
	}
	c.Close()

	l.Close()
	refused("listener closed")
	n.Close()
	refused("network closed")
}

func TestDialWaitsForAcceptUntilContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		defer n.Close()
		n.Listener() // open, but nobody accepts
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err := n.DialContext(ctx, "tcp", "relay:80")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		if got := time.Since(start); got != 5*time.Second {
			t.Fatalf("dial gave up after %v, want 5s", got)
		}
	})
}

func TestDeadlinesRunOnFakeTimeAndCloseEndsPipes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pipenet.New()
		l := n.Listener()
		accepted := make(chan net.Conn, 1)
		go func() {
			s, err := l.Accept()
			if err == nil {
				accepted <- s
			}
		}()
		c, err := n.DialContext(context.Background(), "tcp", "relay:80")
		if err != nil {
			t.Fatal(err)
		}
		server := <-accepted

		start := time.Now()
		_ = c.SetReadDeadline(start.Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read err = %v, want deadline exceeded", err)
		}
		if got := time.Since(start); got != 30*time.Second {
			t.Fatalf("deadline after %v, want 30s", got)
		}

		_ = c.SetReadDeadline(time.Time{})
		go n.Close()
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("read after Close succeeded")
		}
		if _, err := server.Read(make([]byte, 1)); err == nil {
			t.Fatal("server read after Close succeeded")
		}
	})
}
