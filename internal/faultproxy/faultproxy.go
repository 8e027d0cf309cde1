package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
)

func init() {
	// toxiproxy's bandwidth toxic logs to zerolog's global logger, which
	// writes every level to stderr.
	log.Logger = zerolog.Nop()
	toxics.Register(blackholeType, new(blackholeToxic))
}

// blackholeType names blackholeToxic in toxiproxy's registry.
const blackholeType = "faultproxy_blackhole"

// blackholeToxic drops every byte. It is toxiproxy's timeout toxic with
// timeout 0, less its Cleanup: toxiproxy removes a toxic that has one
// without rewiring the chain (link.go, RemoveToxic), so a byte arriving just
// then would block the toxic before it for good, a goroutine leaked. Clear
// closes the connections instead.
type blackholeToxic struct{}

func (blackholeToxic) Pipe(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
		}
	}
}

// dialTimeout bounds the dial to the upstream of each accepted connection.
const dialTimeout = 5 * time.Second

// Direction is one way through the proxy.
type Direction int

const (
	// ToUpstream carries the client's bytes to the upstream.
	ToUpstream Direction = iota
	// ToClient carries the upstream's bytes to the client.
	ToClient
)

func (d Direction) String() string {
	switch d {
	case ToUpstream:
		return "to-upstream"
	case ToClient:
		return "to-client"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// streams are toxiproxy's names of the two directions, in Direction order.
var streams = [2]stream.Direction{stream.Upstream, stream.Downstream}

// Proxy forwards TCP connections from its listener to the upstream and
// injects faults into them. Its methods are safe for concurrent use.
type Proxy struct {
	upstream string
	ln       net.Listener
	server   *toxiproxy.ApiServer
	toxics   *toxiproxy.ToxicCollection

	accepting sync.WaitGroup // the accept loop
	links     sync.WaitGroup // one per direction of each connection, until its toxic chain has ended

	mu         sync.Mutex
	conns      map[*conn]struct{}
	nextID     uint64
	blackholed bool
	closed     bool
}

// Start listens on 127.0.0.1:0 and forwards every connection to upstream
// (host:port).
func Start(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	tp := toxiproxy.NewProxy(server, "faultproxy", ln.Addr().String(), upstream)
	p := &Proxy{
		upstream: upstream,
		ln:       ln,
		server:   server,
		toxics:   tp.Toxics,
		conns:    make(map[*conn]struct{}),
	}
	p.accepting.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Conns is the number of connections open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// AddLatency delays every byte by d in each direction, so a round trip
// takes 2d longer. It replaces a latency set before.
func (p *Proxy) AddLatency(d time.Duration) error {
	return p.setToxic("latency", map[string]int64{"latency": d.Milliseconds()})
}

// LimitBandwidth passes at most bytesPerSecond in each direction. toxiproxy
// counts in kilobytes (1000 bytes) per second, so the rate is rounded down
// to that and must be at least 1000. It replaces a limit set before.
func (p *Proxy) LimitBandwidth(bytesPerSecond int64) error {
	if bytesPerSecond < 1000 {
		return fmt.Errorf("faultproxy: bandwidth must be at least 1000 bytes per second, got %d", bytesPerSecond)
	}
	return p.setToxic("bandwidth", map[string]int64{"rate": bytesPerSecond / 1000})
}

// Blackhole drops every byte both ways, on open connections and on new
// ones, while their sockets stay open; closes still pass. Clear lifts it
// and closes the connections it held.
func (p *Proxy) Blackhole() error {
	if err := p.setToxic(blackholeType, map[string]int64{}); err != nil {
		return err
	}
	p.mu.Lock()
	p.blackholed = true
	p.mu.Unlock()
	return nil
}

// Clear lifts every latency, bandwidth limit and blackhole. Connections
// open during a blackhole have lost bytes and are closed.
func (p *Proxy) Clear() {
	p.toxics.ResetToxics(context.Background())
	p.mu.Lock()
	blackholed := p.blackholed
	p.blackholed = false
	p.mu.Unlock()
	if blackholed {
		for _, c := range p.open() {
			c.abort()
		}
	}
}

// ResetConnections resets every open connection: both the client and the
// upstream get an RST. New connections are not affected. It returns how
// many connections were reset.
func (p *Proxy) ResetConnections() int {
	conns := p.open()
	for _, c := range conns {
		c.reset()
	}
	return len(conns)
}

// HalfClose shuts dir on every open connection: its receiver reads EOF
// (a FIN), and bytes still sent that way are dropped, while the other
// direction keeps flowing until an end closes. New connections are not
// affected. It returns how many connections were half-closed.
func (p *Proxy) HalfClose(dir Direction) int {
	conns := p.open()
	for _, c := range conns {
		c.shutdown(dir)
	}
	return len(conns)
}

// Close stops listening, closes every connection and waits until all the
// proxy's goroutines have ended. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.accepting.Wait()
	for _, c := range p.open() {
		c.abort()
	}
	p.links.Wait()
	return err
}

// setToxic puts a toxic of type typ with attrs on both directions, in place
// of one of the same type.
func (p *Proxy) setToxic(typ string, attrs map[string]int64) error {
	for _, s := range streams {
		name := typ + "_" + s.String()
		if p.toxics.GetToxic(name) != nil {
			if err := p.toxics.RemoveToxic(context.Background(), name); err != nil && !errors.Is(err, toxiproxy.ErrToxicNotFound) {
				return fmt.Errorf("faultproxy: removing %s: %w", name, err)
			}
		}
		spec, err := json.Marshal(map[string]any{
			"name": name, "type": typ, "stream": s.String(), "toxicity": 1, "attributes": attrs,
		})
		if err != nil {
			return fmt.Errorf("faultproxy: %w", err)
		}
		if _, err := p.toxics.AddToxicJson(bytes.NewReader(spec)); err != nil {
			return fmt.Errorf("faultproxy: adding %s: %w", name, err)
		}
	}
	return nil
}

func (p *Proxy) open() []*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	return conns
}

func (p *Proxy) forget(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) serve() {
	defer p.accepting.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // the listener is closed
		}
		p.connect(client.(*net.TCPConn))
	}
}

// linkQueue is the receive buffer of the proxy's sockets: 64 KiB.
const linkQueue = 64 << 10

// connect dials the upstream for a new client and starts a toxic chain for
// each direction. The dial is made before the next Accept, as toxiproxy
// does: on loopback it is immediate.
func (p *Proxy) connect(client *net.TCPConn) {
	up, err := net.DialTimeout("tcp", p.upstream, dialTimeout)
	if err != nil {
		_ = client.Close()
		return
	}
	c := &conn{p: p, client: client, upstream: up.(*net.TCPConn)}
	// A link's queue is what its routers hold, some tens of kilobytes, not
	// the megabytes a loopback receive buffer grows to: under a bandwidth
	// limit the bytes in flight then sit in the sender's socket, where the
	// sender bounds them, as they would on a real slow link.
	for _, s := range []*net.TCPConn{c.client, c.upstream} {
		_ = s.SetReadBuffer(linkQueue)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.abort()
		return
	}
	p.conns[c] = struct{}{}
	p.nextID++
	name := fmt.Sprintf("conn-%d-", p.nextID)
	p.links.Add(2)
	p.mu.Unlock()
	p.toxics.StartLink(p.server, name+stream.Upstream.String(), client, &sink{c: c, dir: ToUpstream}, stream.Upstream)
	p.toxics.StartLink(p.server, name+stream.Downstream.String(), c.upstream, &sink{c: c, dir: ToClient}, stream.Downstream)
}

// conn is one proxied connection: the client's socket and the proxy's
// socket to the upstream.
type conn struct {
	p                *Proxy
	client, upstream *net.TCPConn

	mu    sync.Mutex
	shut  [2]bool // by Direction: nothing more is written that way
	ended int     // directions whose toxic chain has ended
}

// dest is the socket the bytes going dir are written to.
func (c *conn) dest(dir Direction) *net.TCPConn {
	if dir == ToClient {
		return c.client
	}
	return c.upstream
}

func (c *conn) isShut(dir Direction) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shut[dir]
}

func (c *conn) shutdown(dir Direction) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shutLocked(dir)
}

func (c *conn) shutLocked(dir Direction) {
	if !c.shut[dir] {
		c.shut[dir] = true
		_ = c.dest(dir).CloseWrite()
	}
}

// abort closes both sockets; the toxic chains then end on their read errors.
func (c *conn) abort() {
	c.mu.Lock()
	c.shut = [2]bool{true, true}
	c.mu.Unlock()
	_ = c.client.Close()
	_ = c.upstream.Close()
}

func (c *conn) reset() {
	_ = c.client.SetLinger(0)
	_ = c.upstream.SetLinger(0)
	c.abort()
}

// chainEnded is called once per direction when its toxic chain is done.
// The end of a direction is passed on as a FIN; when both are done, the
// sockets are closed.
func (c *conn) chainEnded(dir Direction) {
	c.mu.Lock()
	c.shutLocked(dir)
	c.ended++
	last := c.ended == 2
	c.mu.Unlock()
	if last {
		_ = c.client.Close()
		_ = c.upstream.Close()
		c.p.forget(c)
	}
	c.p.links.Done()
}

// sink is where a toxic chain writes one direction of a connection.
//
// It never reports a write error: toxiproxy's chain would stop reading on
// one, leaving its goroutines blocked for good, so instead a failed write
// aborts the connection and the rest of the chain's output is dropped
// until the read side, now closed, ends it.
type sink struct {
	c   *conn
	dir Direction
}

func (s *sink) Write(b []byte) (int, error) {
	if s.c.isShut(s.dir) {
		return len(b), nil
	}
	if _, err := s.c.dest(s.dir).Write(b); err != nil && !s.c.isShut(s.dir) {
		s.c.abort()
	}
	return len(b), nil
}

// Close is toxiproxy's signal that the chain has ended.
func (s *sink) Close() error {
	s.c.chainEnded(s.dir)
	return nil
}
