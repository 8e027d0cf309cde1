package supervisor

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/net/http/httpproxy"

	"github.com/enhanced-tunnel/tunnel/actors/breaker"
	"github.com/enhanced-tunnel/tunnel/actors/connection"
	"github.com/enhanced-tunnel/tunnel/actors/heartbeat"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Defaults of the seed's "Fiber/LAN Optimized" column and of PROTOCOL.md.
// Each is declared once, in the package that owns its rule (heartbeat,
// breaker, connection); the restart delays are this package's own (see
// restartDelay).
const (
	DefaultHeartbeatInterval  = heartbeat.DefaultInterval // 15 s
	DefaultHeartbeatTimeout   = heartbeat.DefaultTimeout  // 30 s
	DefaultConnectTimeout     = connection.DefaultConnectTimeout
	DefaultRetryDelay         = 10 * time.Second
	DefaultAuthRetryDelay     = 30 * time.Second
	DefaultBreakerThreshold   = breaker.DefaultThreshold // 5
	DefaultBreakerRecovery    = breaker.DefaultRecovery  // 300 s
	DefaultMaxQueue           = 128
	DefaultReconnectBaseDelay = 500 * time.Millisecond
	DefaultReconnectMaxDelay  = 120 * time.Second
	// DefaultPingInterval is 0: no WebSocket pings, the heartbeat frames
	// are the one keepalive (see connection.DefaultPingInterval).
	DefaultPingInterval = connection.DefaultPingInterval
	DefaultPongTimeout  = connection.DefaultPongTimeout  // 30 s
	DefaultCloseTimeout = connection.DefaultCloseTimeout // 10 s
	DefaultWriteTimeout = connection.DefaultWriteTimeout // 10 s
	DefaultClient       = "tunnel-supervisor/0.1"
	// DefaultResumeTimeout bounds the move of a cut response stream to
	// another connection: the relay keeps a cut stream 15 s by default.
	DefaultResumeTimeout = 15 * time.Second
	// DefaultConnections is how many connections a tunnel keeps: two, so
	// that one path's failure leaves the other serving.
	DefaultConnections = 2
	// MaxConnections bounds Connections; the relay keeps at most 16 sessions
	// per tunnel by default.
	MaxConnections = 16
)

// ReconnectPolicy chooses the delay before the next attempt when the
// breaker is closed.
type ReconnectPolicy int

const (
	// Flat waits RetryDelay (AuthRetryDelay after an AUTH_FAILURE): the seed's
	// predictable 10 s / 30 s rhythm. The default.
	Flat ReconnectPolicy = iota
	// Exponential waits ReconnectBaseDelay doubled per consecutive failure,
	// capped at ReconnectMaxDelay, with up to 20% jitter; an AUTH_FAILURE
	// still waits at least AuthRetryDelay.
	Exponential
)

func (p ReconnectPolicy) String() string {
	switch p {
	case Flat:
		return "flat"
	case Exponential:
		return "exponential"
	}
	return fmt.Sprintf("ReconnectPolicy(%d)", int(p))
}

// Handler receives the relay's requests, and any response or error that is
// not the answer to one of this side's Request calls. It runs in a goroutine
// of its own per message and answers requests with t.Send. ctx ends when the
// relay cancels the request (a cancel frame), when the connection is lost,
// or when the tunnel stops.
type Handler func(ctx context.Context, t *Tunnel, msg *messages.TunnelMessage)

// Config configures a tunnel. Start with DefaultConfig and set at least
// RelayURL and APIKey.
type Config struct {
	RelayURL string // ws:// or wss:// URL of the relay's tunnel endpoint, e.g. ws://relay:8080/tunnel
	// RelayURLs lists several relays (or several addresses of one); it
	// replaces RelayURL when set. Connection i dials RelayURLs[i mod len].
	RelayURLs []string
	// Connections is how many connections the tunnel keeps, each its own
	// child of the supervision tree with its own breaker; default 2.
	Connections int
	// RetryIdempotent sends a Request again, once, when its connection is
	// lost before the answer and the request is idempotent (GET, HEAD,
	// OPTIONS, PUT, DELETE) with an inline body; default true.
	RetryIdempotent bool
	// ResumeStreams moves a response body being streamed to another
	// connection when its own is lost, where the relay allows it (auth's
	// resume); default true.
	ResumeStreams bool
	// Encoding is the frame encoding offered to the relay in auth: "bin1"
	// (default) offers the compact binary encoding, then JSON; "json" keeps
	// every frame JSON text. The relay's auth_ok chooses.
	Encoding string
	// ResumeTimeout bounds the wait for another connection to take such a
	// stream over; default 15 s, the relay's default hold of a cut stream.
	ResumeTimeout time.Duration
	APIKey        string // the key the relay knows this tunnel by; never logged
	Tunnel        string // tunnel name sent in auth; default "default"
	Client        string // name/version sent in auth; default DefaultClient

	HeartbeatInterval time.Duration // default 15 s
	HeartbeatTimeout  time.Duration // no ack for this long: stale, NETWORK_ERROR; default 30 s
	ConnectTimeout    time.Duration // TCP + upgrade + auth reply; default 10 s
	RetryDelay        time.Duration // restart delay after any failure but AUTH_FAILURE; default 10 s
	AuthRetryDelay    time.Duration // restart delay after AUTH_FAILURE; default 30 s
	BreakerThreshold  int           // consecutive failures that open the breaker; default 5
	BreakerRecovery   time.Duration // how long an open breaker waits before its trial; default 300 s
	MaxQueue          int           // frames held while disconnected; default 128

	ReconnectPolicy    ReconnectPolicy // default Flat
	ReconnectBaseDelay time.Duration   // Exponential only; default 0.5 s
	ReconnectMaxDelay  time.Duration   // Exponential only; default 120 s

	PingInterval time.Duration // WebSocket ping period; default 0, none (heartbeats keep the connection alive)
	PongTimeout  time.Duration // no pong or frame for this long: NETWORK_ERROR; default 30 s
	WriteTimeout time.Duration // per WebSocket message; default 10 s
	CloseTimeout time.Duration // bounds the close handshake of Stop; default 10 s
	ReadLimit    int64         // largest WebSocket message accepted; default 16 MiB
	InlineLimit  int           // larger bodies are streamed; default 64 KiB
	ChunkSize    int           // bytes per binary chunk of a stream; default 256 KiB
	Window       int64         // per-stream flow-control window; default 1 MiB

	TLSConfig *tls.Config // for wss://; nil uses the system roots
	// Proxy chooses the proxy each connection reaches its relay through,
	// as http.Transport's Proxy does: it gets a request for the relay URL
	// (scheme http for ws://, https for wss://) and returns the proxy's URL,
	// or nil to dial the relay directly. An http:// proxy is asked for a
	// CONNECT tunnel, with Basic Proxy-Authorization when its URL has a
	// user and password (http://user:pass@proxy:3128); a socks5:// proxy
	// is supported too. TLS to a wss:// relay runs inside the tunnel, end
	// to end. Nil: http.ProxyFromEnvironment (HTTPS_PROXY, HTTP_PROXY,
	// NO_PROXY, read once per process; loopback relays are always
	// direct), unless NetDialContext is set: a network of the caller's
	// own has no use for the environment's proxy, and nil is then none.
	// DirectProxy never uses one; ParseProxy and ProxyFromEnv make the
	// others the binary offers. Validate calls it once per relay URL.
	Proxy func(*http.Request) (*url.URL, error)
	// NetDialContext replaces the TCP dialer (tests hand out in-memory pipes).
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	OnMessage Handler // nil answers every request with an error frame
	// OnStateChange is called, in order, on every state change of the
	// tunnel (including CIRCUIT_BREAKER). It must not block for long. When
	// it hears AUTHENTICATED, Send already routes over that connection.
	OnStateChange func(messages.StateChanged)
	Logger        *logrus.Logger // nil discards logs
}

// DefaultConfig returns the seed's defaults: heartbeat every 15 s with a
// 30 s timeout, 10 s connect timeout, flat restart delays of 10 s (30 s after
// an auth failure), a breaker that opens after 5 consecutive failures for
// 300 s, a queue of 128 frames, WebSocket ping 15 s / pong timeout 30 s,
// 10 s write and close timeouts, and PROTOCOL.md's limits (16 MiB messages,
// 64 KiB inline bodies, 256 KiB chunks, 1 MiB stream window).
func DefaultConfig() Config {
	return Config{
		Tunnel:             wire.DefaultTunnel,
		Client:             DefaultClient,
		Connections:        DefaultConnections,
		RetryIdempotent:    true,
		ResumeStreams:      true,
		Encoding:           wire.EncodingBin1,
		ResumeTimeout:      DefaultResumeTimeout,
		HeartbeatInterval:  DefaultHeartbeatInterval,
		HeartbeatTimeout:   DefaultHeartbeatTimeout,
		ConnectTimeout:     DefaultConnectTimeout,
		RetryDelay:         DefaultRetryDelay,
		AuthRetryDelay:     DefaultAuthRetryDelay,
		BreakerThreshold:   DefaultBreakerThreshold,
		BreakerRecovery:    DefaultBreakerRecovery,
		MaxQueue:           DefaultMaxQueue,
		ReconnectPolicy:    Flat,
		ReconnectBaseDelay: DefaultReconnectBaseDelay,
		ReconnectMaxDelay:  DefaultReconnectMaxDelay,
		PingInterval:       DefaultPingInterval,
		PongTimeout:        DefaultPongTimeout,
		WriteTimeout:       DefaultWriteTimeout,
		CloseTimeout:       DefaultCloseTimeout,
		ReadLimit:          wire.DefaultReadLimit,
		InlineLimit:        wire.DefaultInlineLimit,
		ChunkSize:          wire.DefaultChunkLimit,
		Window:             wire.DefaultWindow,
	}
}

// URLs returns the relay URLs the connections dial: RelayURLs, or RelayURL
// alone.
func (c Config) URLs() []string {
	if len(c.RelayURLs) > 0 {
		return c.RelayURLs
	}
	if c.RelayURL == "" {
		return nil
	}
	return []string{c.RelayURL}
}

// URLOf is the relay URL connection i dials.
func (c Config) URLOf(i int) string {
	urls := c.URLs()
	return urls[i%len(urls)]
}

// KeyInClear reports whether the API key would cross the network
// unencrypted: a ws:// relay URL to a host that is not loopback. Start warns
// then; it still connects, since a TLS terminator may stand on the same
// host or network path.
func (c Config) KeyInClear() bool {
	for _, raw := range c.URLs() {
		if keyInClear(raw) {
			return true
		}
	}
	return false
}

func keyInClear(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "ws" {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.IsLoopback()
}

// ErrInvalidConfig is wrapped by every error Validate returns: it is
// messages.ErrInvalidConfig, the one sentinel of the whole tunnel.
var ErrInvalidConfig = messages.ErrInvalidConfig

// Validate reports the first problem with c. A nil OnMessage, OnStateChange
// or Logger is valid.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if len(c.URLs()) == 0 {
		return bad("RelayURL is empty")
	}
	if c.Encoding != wire.EncodingBin1 && c.Encoding != wire.EncodingJSON {
		return bad("Encoding must be %q or %q, got %q", wire.EncodingBin1, wire.EncodingJSON, c.Encoding)
	}
	for i, raw := range c.URLs() {
		u, err := url.Parse(raw)
		switch {
		case raw == "":
			return bad("RelayURLs has an empty URL")
		case err != nil:
			// url.Parse's error quotes the URL, password and all.
			return bad("relay URL %d does not parse as a URL", i)
		case u.Scheme != "ws" && u.Scheme != "wss":
			return bad("relay URL must be ws:// or wss://, got %q", u.Scheme)
		case u.Host == "":
			return bad("relay URL %q has no host", u.Redacted())
		}
	}
	switch {
	case c.Connections < 1 || c.Connections > MaxConnections:
		return bad("Connections must be between 1 and %d, got %d", MaxConnections, c.Connections)
	case c.Connections < len(c.URLs()):
		return bad("Connections (%d) must be at least the number of relay URLs (%d), or some relay gets no connection", c.Connections, len(c.URLs()))
	case c.APIKey == "":
		return bad("APIKey is empty")
	case c.Tunnel == "":
		return bad("Tunnel is empty")
	case c.BreakerThreshold < 1:
		return bad("BreakerThreshold must be at least 1, got %d", c.BreakerThreshold)
	case c.MaxQueue < 1:
		return bad("MaxQueue must be at least 1, got %d", c.MaxQueue)
	case c.ReadLimit < 1024:
		return bad("ReadLimit must be at least 1024, got %d", c.ReadLimit)
	case c.InlineLimit < 0 || int64(c.InlineLimit) > c.ReadLimit/2:
		return bad("InlineLimit must be between 0 and ReadLimit/2, got %d", c.InlineLimit)
	case c.ChunkSize < 1 || int64(c.ChunkSize) > c.ReadLimit-wire.MaxIDLength-1:
		return bad("ChunkSize must be between 1 and ReadLimit-256, got %d", c.ChunkSize)
	case c.Window < int64(c.ChunkSize):
		return bad("Window must be at least ChunkSize, got %d", c.Window)
	case c.ReconnectPolicy != Flat && c.ReconnectPolicy != Exponential:
		return bad("unknown ReconnectPolicy %d", int(c.ReconnectPolicy))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"HeartbeatInterval", c.HeartbeatInterval}, {"HeartbeatTimeout", c.HeartbeatTimeout},
		{"ConnectTimeout", c.ConnectTimeout}, {"RetryDelay", c.RetryDelay},
		{"AuthRetryDelay", c.AuthRetryDelay}, {"BreakerRecovery", c.BreakerRecovery},
		{"ReconnectBaseDelay", c.ReconnectBaseDelay}, {"ReconnectMaxDelay", c.ReconnectMaxDelay},
		{"PongTimeout", c.PongTimeout},
		{"WriteTimeout", c.WriteTimeout}, {"CloseTimeout", c.CloseTimeout},
		{"ResumeTimeout", c.ResumeTimeout},
	} {
		if d.v <= 0 {
			return bad("%s must be positive, got %v", d.name, d.v)
		}
	}
	if c.PingInterval < 0 {
		return bad("PingInterval must not be negative, got %v", c.PingInterval)
	}
	for i, raw := range c.URLs() {
		p, err := c.ProxyFor(raw)
		switch {
		case err != nil:
			// The setting's own error quotes it, password and all.
			return bad("the proxy for relay URL %d is not a valid URL (check -proxy, HTTPS_PROXY and HTTP_PROXY; the value is not repeated here as it may hold a password)", i)
		case p == nil:
		case p.Scheme != "http" && p.Scheme != "socks5":
			return bad("proxy %s: only http:// and socks5:// proxies are supported (TLS to a wss:// relay runs inside the proxy's tunnel)", p.Redacted())
		case p.Host == "":
			return bad("proxy %s has no host", p.Redacted())
		}
	}
	if c.HeartbeatTimeout <= c.HeartbeatInterval {
		return bad("HeartbeatTimeout (%v) must exceed HeartbeatInterval (%v)", c.HeartbeatTimeout, c.HeartbeatInterval)
	}
	// The actors' own rules, on the configs the tree gives them (tree.go).
	if err := c.heartbeatConfig().Validate(); err != nil {
		return bad("%v", err)
	}
	if err := c.breakerConfig().Validate(); err != nil {
		return bad("%v", err)
	}
	return nil
}

// heartbeatConfig is the config of each connection's heartbeat actor.
func (c Config) heartbeatConfig() heartbeat.Config {
	return heartbeat.Config{Interval: c.HeartbeatInterval, Timeout: c.HeartbeatTimeout, Logger: c.Logger}
}

// breakerConfig is the config of each connection's breaker actor: a drop
// within one heartbeat interval of a success is a flap.
func (c Config) breakerConfig() breaker.Config {
	return breaker.Config{Threshold: c.BreakerThreshold, Recovery: c.BreakerRecovery, FlapWindow: c.HeartbeatInterval, Logger: c.Logger}
}

// ProxyFor is the proxy the connections to relayURL go through, nil for
// none: what Proxy (or its default) chooses for it.
func (c Config) ProxyFor(relayURL string) (*url.URL, error) {
	u, err := url.Parse(relayURL)
	if err != nil {
		return nil, fmt.Errorf("%w: relay URL does not parse", ErrInvalidConfig)
	}
	// What the WebSocket dialer hands Proxy: the URL with its HTTP scheme.
	r := *u
	switch r.Scheme {
	case "ws":
		r.Scheme = "http"
	case "wss":
		r.Scheme = "https"
	}
	return c.proxy()(&http.Request{Method: http.MethodGet, URL: &r, Host: r.Host, Header: http.Header{}})
}

// proxy is Proxy, or its default.
func (c Config) proxy() func(*http.Request) (*url.URL, error) {
	switch {
	case c.Proxy != nil:
		return c.Proxy
	case c.NetDialContext != nil:
		return DirectProxy
	}
	return http.ProxyFromEnvironment
}

// DirectProxy is a Config.Proxy that uses none: every connection dials its
// relay, whatever the environment says.
func DirectProxy(*http.Request) (*url.URL, error) { return nil, nil }

// ParseProxy reads a proxy setting as the binary's -proxy flag takes it:
// "direct" or "none" is DirectProxy; anything else is the URL of the proxy
// every connection goes through, http://[user:pass@]host:port or
// socks5://[user:pass@]host:port (NO_PROXY does not apply to it). Its
// errors never hold the URL's password.
func ParseProxy(s string) (func(*http.Request) (*url.URL, error), error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "direct", "none":
		return DirectProxy, nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		// url.Parse's error quotes the URL, password and all.
		return nil, fmt.Errorf("%w: the proxy URL does not parse (want http://[user:pass@]host:port, socks5://host:port, direct or none)", ErrInvalidConfig)
	case u.Scheme != "http" && u.Scheme != "socks5":
		return nil, fmt.Errorf("%w: proxy %s: want http://[user:pass@]host:port, socks5://host:port, direct or none", ErrInvalidConfig, u.Redacted())
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%w: proxy %s has no host", ErrInvalidConfig, u.Redacted())
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%w: proxy %s: want only a scheme, host and port (and user:pass)", ErrInvalidConfig, u.Redacted())
	}
	return http.ProxyURL(u), nil
}

// ProxyFromEnv is http.ProxyFromEnvironment over the variables getenv
// returns, read now rather than once per process: HTTPS_PROXY for wss://
// relays, HTTP_PROXY for ws:// ones (a value without a scheme is http://),
// none for the hosts NO_PROXY lists nor for loopback relays; each upper
// case name first, then lower case. One difference: a value that does not
// parse is an error (which Validate reports) where Go would ignore it and
// dial directly.
func ProxyFromEnv(getenv func(string) string) func(*http.Request) (*url.URL, error) {
	either := func(name string) (string, error) {
		v := getenv(name)
		if v == "" {
			name = strings.ToLower(name)
			v = getenv(name)
		}
		return v, checkEnvProxy(name, v)
	}
	httpProxy, httpErr := either("HTTP_PROXY")
	httpsProxy, httpsErr := either("HTTPS_PROXY")
	noProxy, _ := either("NO_PROXY")
	proxyFunc := (&httpproxy.Config{
		HTTPProxy:  httpProxy,
		HTTPSProxy: httpsProxy,
		NoProxy:    noProxy,
		CGI:        getenv("REQUEST_METHOD") != "",
	}).ProxyFunc()
	return func(r *http.Request) (*url.URL, error) {
		switch {
		case r.URL.Scheme == "https" && httpsErr != nil:
			return nil, httpsErr
		case r.URL.Scheme == "http" && httpErr != nil:
			return nil, httpErr
		}
		return proxyFunc(r.URL)
	}
}

// checkEnvProxy reports a proxy variable that Go's proxy functions would
// ignore: one that parses neither as it is nor after "http://". The error
// names the variable, not its value (which may hold a password).
func checkEnvProxy(name, v string) error {
	if v == "" || name == "no_proxy" {
		return nil
	}
	if u, err := url.Parse(v); err == nil && u.Scheme != "" && u.Host != "" {
		return nil
	}
	if _, err := url.Parse("http://" + v); err == nil {
		return nil
	}
	return fmt.Errorf("%s does not parse as a URL", name)
}
