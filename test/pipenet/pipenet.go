// Package pipenet is an in-memory network for tests: every dial is one
// net.Pipe pair, the client end returned by DialContext and the server end
// handed to the network's Listener.
//
// It exists for testing/synctest bubbles. Fake time advances only while
// every goroutine of a bubble is durably blocked, and a goroutine blocked on
// a real socket is not; a goroutine blocked on a pipe is, and pipe deadlines
// run on fake time. So a gorilla/websocket client and an http.Server can talk
// over pipenet inside a bubble, and a 30 s read deadline passes in no real
// time at all.
//
// A Network has at most one open listener, and every address dials it. Pipes
// are synchronous: a write blocks until the other end reads it, so a peer that
// stops reading stalls the writer until its write deadline.
package pipenet

import (
	"context"
	"net"
	"os"
	"sync"
	"syscall"
)

// Network hands out pipe pairs. The zero value is not usable; call New.
type Network struct {
	mu       sync.Mutex
	listener *listener // nil when nothing listens
	refusing bool
	closed   bool
	conns    map[*conn]struct{}
}

// New returns a network with nothing listening yet.
func New() *Network {
	return &Network{conns: make(map[*conn]struct{})}
}

// Listener returns the network's open listener, opening one if there is none
// (after Close, a closed one). Its Accept returns the server ends of dialed
// pipes. Closing it makes dials fail as refused, like a closed port, until
// Listener is called again.
func (n *Network) Listener() net.Listener {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.listener != nil {
		return n.listener
	}
	l := &listener{n: n, accept: make(chan net.Conn), done: make(chan struct{})}
	if n.closed {
		l.close()
		return l
	}
	n.listener = l
	return l
}

// DialContext returns the client end of a new pipe whose server end the
// listener accepts. addr is not looked at. It fails at once with a
// *net.OpError wrapping syscall.ECONNREFUSED while refusing, when nothing
// listens, or after Close; it waits for Accept until ctx is done. Its
// signature fits websocket.Dialer.NetDialContext.
func (n *Network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	l := n.listener
	refused := n.refusing || n.closed || l == nil
	n.mu.Unlock()
	if refused {
		return nil, refusedError(addr)
	}
	client, server := net.Pipe()
	c, s := n.track(client), n.track(server)
	select {
	case l.accept <- s:
		return c, nil
	case <-l.done:
		c.Close()
		s.Close()
		return nil, refusedError(addr)
	case <-ctx.Done():
		c.Close()
		s.Close()
		return nil, &net.OpError{Op: "dial", Net: "pipe", Addr: pipeAddr(addr), Err: ctx.Err()}
	}
}

// SetRefusing makes every dial fail at once with ECONNREFUSED while on.
// Connections already made are not touched.
func (n *Network) SetRefusing(on bool) {
	n.mu.Lock()
	n.refusing = on
	n.mu.Unlock()
}

// Close closes the listener and every pipe still open, so nothing stays
// blocked on this network. Later dials are refused.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	l := n.listener
	conns := make([]*conn, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	if l != nil {
		l.close()
	}
	for _, c := range conns {
		c.Close()
	}
	return nil
}

func (n *Network) track(c net.Conn) *conn {
	tc := &conn{Conn: c, n: n}
	n.mu.Lock()
	n.conns[tc] = struct{}{}
	n.mu.Unlock()
	return tc
}

func refusedError(addr string) error {
	return &net.OpError{Op: "dial", Net: "pipe", Addr: pipeAddr(addr), Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

// conn is one pipe end that leaves the network's set when closed.
type conn struct {
	net.Conn
	n *Network
}

func (c *conn) Close() error {
	c.n.mu.Lock()
	delete(c.n.conns, c)
	c.n.mu.Unlock()
	return c.Conn.Close()
}

type listener struct {
	n      *Network
	accept chan net.Conn
	done   chan struct{}
	once   sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "pipe", Addr: l.Addr(), Err: net.ErrClosed}
	}
}

func (l *listener) Close() error {
	l.n.mu.Lock()
	if l.n.listener == l {
		l.n.listener = nil
	}
	l.n.mu.Unlock()
	l.close()
	return nil
}

func (l *listener) close() { l.once.Do(func() { close(l.done) }) }

func (l *listener) Addr() net.Addr { return pipeAddr("pipenet") }

// pipeAddr is an address on the pipe network.
type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }
