package connection

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Defaults of Config: the seed's "Fiber/LAN Optimized" column and PROTOCOL.md.
const (
	DefaultConnectTimeout = 10 * time.Second
	// DefaultPingInterval is 0: no WebSocket pings. The supervisor's
	// heartbeat frames (every 15 s) keep the connection alive and prove it,
	// so pings would only double the idle traffic.
	DefaultPingInterval = 0
	DefaultPongTimeout  = 30 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultCloseTimeout = 10 * time.Second
	DefaultBufferSize   = 64 << 10
)

// Config configures the connection actor. Props fills every zero field but
// URL, APIKey, Client, TLSConfig and NetDialContext with its default.
type Config struct {
	URL    string // ws:// or wss:// URL of the relay's tunnel endpoint
	APIKey string // sent in the auth frame, never logged
	Tunnel string // tunnel name sent in the auth frame; default "default"
	Client string // "client" field of the auth frame (name/version); empty omits it
	// Instance and Index are sent in the auth frame so that the relay keeps
	// this connection beside the supervisor's others (and beside other
	// supervisors') and replaces only its own earlier session. Empty omits.
	Instance string
	Index    int
	// Resume asks the relay, in auth, to keep this connection's response
	// streams open when it is lost, for the supervisor to move them to
	// another connection (stream_resume).
	Resume bool
	// Deliver receives, on the socket's reader goroutine, every application
	// frame and chunk of an authenticated session, in order, tagged with
	// Index, the session's epoch and its Sink: the data path takes them
	// without a mailbox hop. It must not block. Nil sends them to the
	// connection actor's parent as *actormsg.Inbound.
	Deliver func(*actormsg.Inbound)
	// NewSession numbers each authenticated session (its epoch); numbers
	// must grow. Nil numbers them from 1 for this Config's connections.
	NewSession func() int
	// Encodings are offered in the auth frame, most preferred first; the
	// relay's auth_ok chooses. Default [bin1, json]; [json] keeps every
	// frame JSON text.
	Encodings []string

	// ConnectTimeout bounds TCP connect, TLS, the upgrade and the wait for
	// the auth reply, all counted from the start of the dial; default 10 s.
	ConnectTimeout time.Duration
	// PingInterval is the WebSocket ping period once authenticated; default
	// 0, none (the heartbeat frames are the keepalive).
	PingInterval time.Duration
	// PongTimeout is how long the connection lives without a pong or any
	// message from the relay; default 30 s.
	PongTimeout  time.Duration
	WriteTimeout time.Duration // deadline of each write; default 10 s
	// CloseTimeout bounds the wait for the relay's close frame on Stop, and
	// the background write of the close frame after a failure; default 10 s.
	CloseTimeout time.Duration

	ReadLimit       int64 // largest message accepted; default wire.DefaultReadLimit (16 MiB)
	WriteBufferSize int   // default 64 KiB
	ReadBufferSize  int   // default 64 KiB

	TLSConfig *tls.Config // for wss://; nil uses the system roots
	// NetDialContext opens the TCP connection; nil uses the real network.
	// Tests hand out in-memory pipes here.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Proxy chooses the proxy to reach URL through, as the WebSocket
	// dialer's Proxy (an http:// proxy's CONNECT, with Basic
	// Proxy-Authorization from its URL's user and password, or socks5://);
	// NetDialContext then dials the proxy. Nil, or a nil URL: none. A
	// failure on the way through the proxy is a *ProxyError.
	Proxy  func(*http.Request) (*url.URL, error)
	Logger *logrus.Logger // nil discards logs
}

// DefaultConfig returns a Config with every default set: Tunnel "default",
// encodings bin1 then json,
// ConnectTimeout 10 s, no pings, PongTimeout 30 s, WriteTimeout
// 10 s, CloseTimeout 10 s, ReadLimit 16 MiB, write and read buffers 64 KiB,
// the real network and a discarding logger. Set URL and APIKey.
func DefaultConfig() Config {
	return Config{
		Tunnel:          wire.DefaultTunnel,
		Encodings:       []string{wire.EncodingBin1, wire.EncodingJSON},
		ConnectTimeout:  DefaultConnectTimeout,
		PingInterval:    DefaultPingInterval,
		PongTimeout:     DefaultPongTimeout,
		WriteTimeout:    DefaultWriteTimeout,
		CloseTimeout:    DefaultCloseTimeout,
		ReadLimit:       wire.DefaultReadLimit,
		WriteBufferSize: DefaultBufferSize,
		ReadBufferSize:  DefaultBufferSize,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Tunnel == "" {
		c.Tunnel = d.Tunnel
	}
	if len(c.Encodings) == 0 {
		c.Encodings = d.Encodings
	}
	if c.NewSession == nil {
		var sessions atomic.Int64
		c.NewSession = func() int { return int(sessions.Add(1)) }
	}
	c.ConnectTimeout = orDefault(c.ConnectTimeout, d.ConnectTimeout)
	c.PingInterval = max(c.PingInterval, 0)
	c.PongTimeout = orDefault(c.PongTimeout, d.PongTimeout)
	c.WriteTimeout = orDefault(c.WriteTimeout, d.WriteTimeout)
	c.CloseTimeout = orDefault(c.CloseTimeout, d.CloseTimeout)
	if c.ReadLimit <= 0 {
		c.ReadLimit = d.ReadLimit
	}
	if c.WriteBufferSize <= 0 {
		c.WriteBufferSize = d.WriteBufferSize
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = d.ReadBufferSize
	}
	if c.NetDialContext == nil {
		c.NetDialContext = (&net.Dialer{}).DialContext
	}
	if c.Logger == nil {
		c.Logger = logrus.New()
		c.Logger.SetOutput(io.Discard)
	}
	return c
}

func orDefault(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}
