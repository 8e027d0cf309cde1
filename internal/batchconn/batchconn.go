package batchconn

import (
	"net"
	"sync"
	"syscall"
)

// DefaultUnsent is the most bytes LimitUnsent lets wait unsent in the
// kernel: 128 KiB, a few milliseconds of a fast link and well under a second
// of a slow one, where the kernel would otherwise queue megabytes.
const DefaultUnsent = 128 << 10

// DefaultLimit is the most bytes a Conn holds before writing them: 64 KiB,
// enough for dozens of small frames and under the window of one TCP send
// buffer, so that holding never delays a write the socket could take.
const DefaultLimit = 64 << 10

// Conn is a net.Conn whose writes between Hold and Flush are batched.
type Conn struct {
	net.Conn
	limit int

	mu   sync.Mutex
	held bool
	buf  *[]byte // from pool while a batch holds bytes, so that an idle Conn holds no buffer
}

var pool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// New wraps c with the DefaultLimit.
func New(c net.Conn) *Conn { return &Conn{Conn: c, limit: DefaultLimit} }

// Hold starts a batch: writes are kept until Flush, or until they exceed
// the limit.
func (c *Conn) Hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

// Flush ends the batch and writes what it holds in one system call.
func (c *Conn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	return c.flushLocked(nil)
}

// Write writes p at once outside a batch; inside one it keeps p, or, when p
// would take the batch past the limit, writes the batch and p together.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = pool.Get().(*[]byte)
	}
	if len(*c.buf)+len(p) <= c.limit {
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// LimitUnsent bounds the bytes the kernel holds written but not yet sent on
// the TCP connection under c to about n (TCP_NOTSENT_LOWAT, on Linux; a no-op
// elsewhere or when there is no TCP connection). A frame written behind bulk
// data then waits for at most n bytes to leave, not for megabytes queued in
// an autotuned send buffer: that is what keeps a heartbeat on time over a
// slow link. The link stays full: bytes in flight are not limited.
func (c *Conn) LimitUnsent(n int) error {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return limitUnsent(sc, n)
	}
	return nil
}

// CloseWrite shuts down the writing side of a TCP connection, as
// net.TCPConn does; an HTTP server relies on it to end a response cleanly.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Listen wraps every connection ln accepts in a Conn.
func Listen(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return New(c), nil
}

// Find returns the Conn under c, looking through the wrappers that expose
// the connection they wrap (TLS's NetConn, the PROXY protocol's Raw); nil
// when there is none.
func Find(c net.Conn) *Conn {
	for c != nil {
		switch w := c.(type) {
		case *Conn:
			return w
		case interface{ NetConn() net.Conn }:
			c = w.NetConn()
		case interface{ Raw() net.Conn }:
			c = w.Raw()
		default:
			return nil
		}
	}
	return nil
}

// flushLocked writes the held bytes followed by p, in one vectored write
// when both are there.
func (c *Conn) flushLocked(p []byte) error {
	var held []byte
	if c.buf != nil {
		held = *c.buf
	}
	var err error
	switch {
	case len(held) == 0 && len(p) == 0:
	case len(held) == 0:
		_, err = c.Conn.Write(p)
	case len(p) == 0:
		_, err = c.Conn.Write(held)
	default:
		bufs := net.Buffers{held, p}
		_, err = bufs.WriteTo(c.Conn)
	}
	if c.buf != nil {
		*c.buf = held[:0]
		pool.Put(c.buf)
		c.buf = nil
	}
	return err
}
