package batchconn_test

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/internal/batchconn"
)

// recorder is a net.Conn that records each write it gets.
type recorder struct {
	net.Conn
	writes [][]byte
}

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func TestBatching(t *testing.T) {
	big := strings.Repeat("x", batchconn.DefaultLimit)
	for _, tc := range []struct {
		name string
		run  func(c *batchconn.Conn)
		want []string // the writes the underlying connection sees
	}{
		{"outside a batch every write passes", func(c *batchconn.Conn) {
			_, _ = c.Write([]byte("a"))
			_, _ = c.Write([]byte("b"))
		}, []string{"a", "b"}},
		{"a batch leaves in one write", func(c *batchconn.Conn) {
			c.Hold()
			_, _ = c.Write([]byte("a"))
			_, _ = c.Write([]byte("b"))
			_, _ = c.Write([]byte("c"))
			_ = c.Flush()
		}, []string{"abc"}},
		{"an empty batch writes nothing", func(c *batchconn.Conn) {
			c.Hold()
			_ = c.Flush()
		}, nil},
		// The recorder is no TCP connection, so the vectored write shows as
		// its two parts, in order.
		{"a write past the limit goes out at once behind the batch", func(c *batchconn.Conn) {
			c.Hold()
			_, _ = c.Write([]byte("a"))
			_, _ = c.Write([]byte(big))
			_, _ = c.Write([]byte("b"))
			_ = c.Flush()
		}, []string{"a", big, "b"}},
		{"after a flush writes pass again", func(c *batchconn.Conn) {
			c.Hold()
			_, _ = c.Write([]byte("a"))
			_ = c.Flush()
			_, _ = c.Write([]byte("b"))
		}, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			tc.run(batchconn.New(r))
			var got []string
			for _, w := range r.writes {
				got = append(got, string(w))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Fatalf("writes = %d %.20q, want %d %.20q", len(got), got, len(tc.want), tc.want)
			}
		})
	}
}

// Over TCP a batch and a large write behind it leave in one vectored write:
// the peer reads them whole and in order.
func TestBatchOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(c)
		got <- buf.Bytes()
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := batchconn.New(raw)
	big := bytes.Repeat([]byte("y"), 3*batchconn.DefaultLimit)
	c.Hold()
	for _, p := range [][]byte{[]byte("head-"), big, []byte("-tail")} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := append(append([]byte("head-"), big...), "-tail"...)
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes, want %d in order", len(b), len(want))
	}
}

func TestFind(t *testing.T) {
	c := batchconn.New(&recorder{})
	for _, tc := range []struct {
		name string
		conn net.Conn
		want *batchconn.Conn
	}{
		{"itself", c, c},
		{"under a TLS-like wrapper", netConnWrapper{c}, c},
		{"under a PROXY-protocol-like wrapper", rawWrapper{netConnWrapper{c}}, c},
		{"none", &recorder{}, nil},
	} {
		if got := batchconn.Find(tc.conn); got != tc.want {
			t.Errorf("%s: Find = %p, want %p", tc.name, got, tc.want)
		}
	}
}

type netConnWrapper struct{ net.Conn }

func (w netConnWrapper) NetConn() net.Conn { return w.Conn }

type rawWrapper struct{ net.Conn }

func (w rawWrapper) Raw() net.Conn { return w.Conn }
