package relay

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
	"github.com/enhanced-tunnel/tunnel/actors/relay/router"
	"github.com/enhanced-tunnel/tunnel/actors/relay/session"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Defaults of Config that no actor package names.
const (
	// DefaultListen is the address the relay listens on: 127.0.0.1:8080.
	DefaultListen = "127.0.0.1:8080"
	// DefaultAdminListen is the address of /health and /metrics:
	// 127.0.0.1:9091, apart from the public listener.
	DefaultAdminListen = "127.0.0.1:9091"
	// DefaultMaxSessions is how many authenticated supervisor connections
	// the relay holds; one more is closed with 1013: 10000.
	DefaultMaxSessions = 10000
	// DefaultMaxPending is how many connections that have not
	// authenticated yet the relay holds in all: 1000. A newer one makes
	// the oldest leave (1013).
	DefaultMaxPending = 1000
	// DefaultMaxPendingPerAddr is how many of those one client address
	// may hold: 32. A newer one makes that address's oldest leave.
	DefaultMaxPendingPerAddr = 32
	// DefaultMaxConcurrent is how many public requests one tunnel has in
	// flight, from their arrival to the end of their response: 1024 (503
	// beyond).
	DefaultMaxConcurrent = 1024
	// DefaultMaxBody is the largest public request body: 1 GiB (413 beyond).
	DefaultMaxBody = 1 << 30
	// DefaultMaxHeaderBytes is the largest public request header: 32 KiB
	// (431 beyond), nginx's default four 8 KiB buffers.
	DefaultMaxHeaderBytes = 32 << 10
	// DefaultChunkSize is the chunk size of streamed request bodies: 64 KiB,
	// small enough that streams and heartbeats interleave finely.
	DefaultChunkSize = 64 << 10
	// DefaultBodyTimeout is how long a public client may send nothing of
	// its request body before it is answered 408: 60 s, as nginx's
	// client_body_timeout.
	DefaultBodyTimeout = 60 * time.Second
	// DefaultSendTimeout is how long a public client may take nothing of
	// its response before it is cut off: 60 s, as nginx's send_timeout.
	DefaultSendTimeout = 60 * time.Second
	// DefaultMaxBuffered is how many bytes of streamed response bodies the
	// relay buffers for its public clients in all: 256 MiB. Past it, a
	// stream whose client lags is cut off (see wire.Budget).
	DefaultMaxBuffered = 256 << 20
	// DefaultLogRate is how many lines of one message the relay logs per
	// second; the rest are counted in the next line's "suppressed": 10.
	DefaultLogRate = 10
)

// Config configures a relay. Start with DefaultConfig and set at least one
// key (AuthToken, KeysFile or Keys).
type Config struct {
	// Listen is the TCP address of the public front: /tunnel and the
	// tunnels. Default DefaultListen; "127.0.0.1:0" picks a free port (see
	// Relay.Addr).
	Listen string
	// AdminListen is the TCP address of /health and /metrics, which say
	// which tunnels exist and are up, and so are not public. Default
	// DefaultAdminListen; empty serves no admin endpoints.
	AdminListen string
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin
	// listener, to profile a relay where it runs (its heap with thousands
	// of idle sessions, its CPU under load). Off by default: profiles show
	// the relay's internals and cost CPU while taken. Needs AdminListen.
	Pprof bool

	// AuthToken is the API key of the tunnel "default".
	AuthToken string
	// KeysFile names a file of "name key [option=value ...]" lines (see
	// auth.ParseTunnels): the options are the public access control of
	// the tunnel (bearer=, basic=, allow=, rate=, burst=), enforced by the
	// node a public request reaches first. Only this source has them.
	KeysFile string
	// Keys maps more tunnel names to their keys. The four sources are
	// merged; a tunnel named twice is an error. Every key needs
	// auth.MinKeyBits (128) of entropy (see auth.KeyBits).
	Keys map[string]string
	// Tunnels maps more tunnel names to their keys and public access
	// control, as a keys file's lines give them (the binary's config file
	// builds them with auth.ParseTunnels).
	Tunnels map[string]auth.Tunnel

	// Domain turns on host routing: a public request whose Host is
	// NAME.Domain (in any case, port ignored) goes to tunnel NAME, its path
	// as it is, before any /t/{name}/ prefix is looked at. The bare Domain
	// and other hosts route by path as without it. Empty (the default):
	// off. A DNS name, such as relay.example.
	Domain string

	// RequestTimeout bounds the wait for a response frame: 60 s (504 beyond).
	RequestTimeout time.Duration
	// BodyTimeout bounds the wait for each read of a public request body:
	// DefaultBodyTimeout (60 s; 408 beyond).
	BodyTimeout time.Duration
	// SendTimeout bounds each write of a response to a public client:
	// DefaultSendTimeout (60 s; the connection is cut beyond).
	SendTimeout time.Duration
	// AuthTimeout bounds the wait for a valid auth frame: 10 s.
	AuthTimeout time.Duration
	// HeartbeatTimeout drops a supervisor that sent nothing for it: 30 s.
	HeartbeatTimeout time.Duration
	// PingInterval is how often supervisors are pinged: 0, never (their
	// heartbeat frames are the keepalive).
	PingInterval time.Duration
	// WriteTimeout bounds each write to a supervisor: 10 s.
	WriteTimeout time.Duration
	// Encoding is the frame encoding sessions agree to when a supervisor's
	// auth offers it: "bin1" (default), the compact binary encoding, or
	// "json", JSON text only.
	Encoding string

	// MaxSessions authenticated sessions, default DefaultMaxSessions (10000).
	MaxSessions int
	// MaxPending unauthenticated connections, default DefaultMaxPending
	// (1000), and MaxPendingPerAddr of them per client address, default
	// DefaultMaxPendingPerAddr (32).
	MaxPending, MaxPendingPerAddr int
	// MaxConcurrent public requests per tunnel, from their arrival to the
	// end of their response, held ones included: 1024 (503 beyond).
	MaxConcurrent int
	// MaxSessionsPerTunnel sessions one tunnel may have at once, from one
	// supervisor process or several; one more is closed with 1013 unless
	// it replaces one (same instance and index):
	// router.DefaultMaxSessionsPerTunnel (16).
	MaxSessionsPerTunnel int
	// HoldTimeout is how long a public request for a tunnel with a key but
	// no session waits for one (503 beyond); 0 answers 503 at once:
	// router.DefaultHoldTimeout (15 s). A name no key opens is 404 at once.
	HoldTimeout time.Duration
	// MaxHeld requests and MaxHeldBytes of their inline bodies one tunnel
	// may hold while it has no session (503 beyond): router.DefaultMaxHeld
	// (256) and router.DefaultMaxHeldBytes (16 MiB).
	MaxHeld      int
	MaxHeldBytes int64
	// RetryIdempotent sends an idempotent request (GET, HEAD, OPTIONS, PUT,
	// DELETE) with an inline body once more, through another session, when
	// its session ends after sending it and before the response headers:
	// router.DefaultRetryIdempotent (true). A request that never left its
	// session always goes through another (see the router package).
	RetryIdempotent bool
	// ResumeTimeout is how long a public response whose supervisor
	// connection was lost mid-body is kept open for the supervisor to
	// resume it on another of its connections (auth with resume, then
	// stream_resume); past it the response is cut off. 0 cuts it off at
	// once and answers auth_ok without resume: router.DefaultResumeTimeout
	// (15 s).
	ResumeTimeout time.Duration
	// MaxBody, default DefaultMaxBody (1 GiB).
	MaxBody int64
	// MaxHeaderBytes, default DefaultMaxHeaderBytes (32 KiB).
	MaxHeaderBytes int
	// ReadLimit is the largest WebSocket message from an authenticated
	// supervisor: wire.DefaultReadLimit (16 MiB; 1009 beyond).
	ReadLimit int64
	// AuthReadLimit is the largest WebSocket message before auth_ok:
	// session.DefaultAuthReadLimit (4 KiB; 1009 beyond).
	AuthReadLimit int64
	// MaxReplyQueue bounds the bytes of answers waiting for one
	// supervisor's socket: session.DefaultMaxReplyQueue (1 MiB); a
	// supervisor that does not read is dropped.
	MaxReplyQueue int
	// InlineLimit is the largest request body sent inline:
	// wire.DefaultInlineLimit (64 KiB); larger ones are streamed.
	InlineLimit int
	// ChunkSize of streamed request bodies: DefaultChunkSize (64 KiB), at
	// most wire.DefaultChunkLimit.
	ChunkSize int
	// Window is the flow-control window of each stream: wire.DefaultWindow (1 MiB).
	Window int64
	// MaxBuffered bounds the response bytes buffered for all public
	// clients together: DefaultMaxBuffered (256 MiB).
	MaxBuffered int64

	// MaxAuthFailures auth failures (wrong keys, auth timeouts) from one
	// address within AuthFailureWindow make its next wrong keys wait their
	// turn, one per AuthFailureWindow/MaxAuthFailures: 20 in 1 minute. A
	// right key is answered at once.
	MaxAuthFailures   int
	AuthFailureWindow time.Duration
	// UpgradeRate and UpgradeBurst bound the WebSocket upgrades of one
	// address (429 beyond): auth.DefaultUpgradeRate (10 per second) and
	// auth.DefaultUpgradeBurst (50).
	UpgradeRate  float64
	UpgradeBurst int

	// TrustedProxies are the networks of the proxies in front of the relay
	// (a load balancer): from them, and only from them, the client address
	// is read from X-Forwarded-For, and their X-Forwarded-*, Forwarded
	// headers are kept. Empty: the client is the TCP peer.
	TrustedProxies []netip.Prefix
	// ProxyProtocol makes connections from TrustedProxies start with a
	// PROXY protocol header (v1 or v2) that names the client; a header
	// from any other peer is refused.
	ProxyProtocol bool

	// TLSCertFile and TLSKeyFile, both set, serve HTTPS and wss://.
	TLSCertFile, TLSKeyFile string

	// Fleet makes the relay a node of a fleet when Fleet.Name is set (see
	// FleetConfig). Empty, the relay runs alone and starts no cluster code.
	Fleet FleetConfig

	// Logger receives the relay's logs; nil discards them. Keys are never
	// logged.
	Logger *logrus.Logger
	// LogRate is how many lines of one message are logged per second, the
	// rest counted: DefaultLogRate (10); 0 logs every line.
	LogRate int
	// AccessLog is the fraction of public requests logged, one line each
	// ("Public request", info level, actor=access; see accesslog.go): 0
	// (the default) logs none, 1 every one, 0.1 one in ten at random.
	// Access lines are not subject to LogRate. They never hold a query
	// string, a credential, a cookie or a key.
	AccessLog float64
	// Now is the clock of the per-address limits, and of the tunnels'
	// rate= limits and verified basic credentials; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with every default set and no key.
func DefaultConfig() Config {
	return Config{
		Listen:               DefaultListen,
		AdminListen:          DefaultAdminListen,
		RequestTimeout:       router.DefaultRequestTimeout,
		BodyTimeout:          DefaultBodyTimeout,
		SendTimeout:          DefaultSendTimeout,
		AuthTimeout:          session.DefaultAuthTimeout,
		HeartbeatTimeout:     session.DefaultHeartbeatTimeout,
		PingInterval:         session.DefaultPingInterval,
		Encoding:             wire.EncodingBin1,
		WriteTimeout:         session.DefaultWriteTimeout,
		MaxSessions:          DefaultMaxSessions,
		MaxPending:           DefaultMaxPending,
		MaxPendingPerAddr:    DefaultMaxPendingPerAddr,
		MaxConcurrent:        DefaultMaxConcurrent,
		MaxSessionsPerTunnel: router.DefaultMaxSessionsPerTunnel,
		HoldTimeout:          router.DefaultHoldTimeout,
		MaxHeld:              router.DefaultMaxHeld,
		MaxHeldBytes:         router.DefaultMaxHeldBytes,
		RetryIdempotent:      router.DefaultRetryIdempotent,
		ResumeTimeout:        router.DefaultResumeTimeout,
		MaxBody:              DefaultMaxBody,
		MaxHeaderBytes:       DefaultMaxHeaderBytes,
		ReadLimit:            wire.DefaultReadLimit,
		AuthReadLimit:        session.DefaultAuthReadLimit,
		MaxReplyQueue:        session.DefaultMaxReplyQueue,
		InlineLimit:          wire.DefaultInlineLimit,
		ChunkSize:            DefaultChunkSize,
		Window:               wire.DefaultWindow,
		MaxBuffered:          DefaultMaxBuffered,
		MaxAuthFailures:      auth.DefaultMaxFailures,
		AuthFailureWindow:    auth.DefaultFailureWindow,
		UpgradeRate:          auth.DefaultUpgradeRate,
		UpgradeBurst:         auth.DefaultUpgradeBurst,
		LogRate:              DefaultLogRate,
		Fleet:                DefaultFleetConfig(),
	}
}

// Validate reports the first setting that cannot work, including a keys
// file that cannot be read. Errors never quote a key.
func (c Config) Validate() error {
	if c.Listen == "" {
		return errors.New("relay: Listen is empty")
	}
	if c.Encoding != wire.EncodingBin1 && c.Encoding != wire.EncodingJSON {
		return fmt.Errorf("relay: Encoding must be %q or %q, got %q", wire.EncodingBin1, wire.EncodingJSON, c.Encoding)
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"MaxSessions", c.MaxSessions}, {"MaxPending", c.MaxPending}, {"MaxPendingPerAddr", c.MaxPendingPerAddr}, {"MaxConcurrent", c.MaxConcurrent}} {
		if n.v < 1 {
			return fmt.Errorf("relay: %s must be at least 1, got %d", n.name, n.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"BodyTimeout", c.BodyTimeout}, {"SendTimeout", c.SendTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("relay: %s must be positive, got %v", d.name, d.v)
		}
	}
	if c.MaxBuffered < 1 {
		return fmt.Errorf("relay: MaxBuffered must be positive, got %d", c.MaxBuffered)
	}
	if !(c.AccessLog >= 0 && c.AccessLog <= 1) {
		return fmt.Errorf("relay: AccessLog must be a fraction from 0 to 1, got %v", c.AccessLog)
	}
	if c.LogRate < 0 {
		return fmt.Errorf("relay: LogRate must not be negative, got %d", c.LogRate)
	}
	if c.Pprof && c.AdminListen == "" {
		return errors.New("relay: Pprof needs AdminListen: profiles are served there only")
	}
	if c.ProxyProtocol && len(c.TrustedProxies) == 0 {
		return errors.New("relay: ProxyProtocol needs TrustedProxies: the header is read from them only")
	}
	if c.MaxBody < 0 {
		return fmt.Errorf("relay: MaxBody must not be negative, got %d", c.MaxBody)
	}
	if c.MaxHeaderBytes < 1 {
		return fmt.Errorf("relay: MaxHeaderBytes must be positive, got %d", c.MaxHeaderBytes)
	}
	if c.InlineLimit < 0 || int64(c.InlineLimit) > c.ReadLimit/2 {
		return fmt.Errorf("relay: InlineLimit must be 0 to half the ReadLimit, got %d", c.InlineLimit)
	}
	if c.ChunkSize < 1 || c.ChunkSize > wire.DefaultChunkLimit {
		return fmt.Errorf("relay: ChunkSize must be 1 to %d, got %d", wire.DefaultChunkLimit, c.ChunkSize)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("relay: TLSCertFile and TLSKeyFile go together")
	}
	if c.Domain != "" && !validDomain(c.Domain) {
		return fmt.Errorf("relay: Domain must be a DNS name, such as relay.example; got %q", c.Domain)
	}
	if err := c.Fleet.validate(); err != nil {
		return err
	}
	if err := c.sessionConfig().Validate(); err != nil {
		return err
	}
	if err := c.routerConfig().Validate(); err != nil {
		return err
	}
	keys, err := c.keys()
	if err != nil {
		return err
	}
	ac := c.authConfig()
	ac.Keys = keys
	return ac.Validate()
}

// keys merges the three sources of keys.
func (c Config) keys() (map[string]string, error) {
	tunnels, err := c.tunnels()
	if err != nil {
		return nil, err
	}
	return auth.Keys(tunnels), nil
}

// tunnels merges the three sources of keys; the tunnels of the keys file
// bring their public access rules.
func (c Config) tunnels() (map[string]auth.Tunnel, error) {
	tunnels := make(map[string]auth.Tunnel)
	if c.KeysFile != "" {
		file, err := auth.LoadTunnelsFile(c.KeysFile)
		if err != nil {
			return nil, err
		}
		maps.Copy(tunnels, file)
	}
	add := func(name, key, source string) error {
		if _, dup := tunnels[name]; dup {
			return fmt.Errorf("relay: tunnel %q has a key from %s and another one", name, source)
		}
		tunnels[name] = auth.Tunnel{Key: key}
		return nil
	}
	if c.AuthToken != "" {
		if err := add(wire.DefaultTunnel, c.AuthToken, "AuthToken"); err != nil {
			return nil, err
		}
	}
	for name, key := range c.Keys {
		if err := add(name, key, "Keys"); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Tunnels)) {
		if err := add(name, "", "Tunnels"); err != nil {
			return nil, err
		}
		tunnels[name] = c.Tunnels[name]
	}
	if err := auth.ValidateAccess(tunnels); err != nil {
		return nil, err
	}
	return tunnels, nil
}

// validDomain reports whether d is a DNS name: dot-separated labels of 1
// to 63 letters, digits and '-' (not at either end), 253 characters at
// most, one trailing dot allowed, the last label not all digits (that
// would be an IPv4 address).
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return false
	}
	labels := strings.Split(d, ".")
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// encodings is what sessions accept besides JSON.
func (c Config) encodings() []string {
	if c.Encoding == wire.EncodingBin1 {
		return []string{wire.EncodingBin1}
	}
	return nil
}

func (c Config) sessionConfig() session.Config {
	return session.Config{
		AuthTimeout:      c.AuthTimeout,
		HeartbeatTimeout: c.HeartbeatTimeout,
		PingInterval:     c.PingInterval,
		WriteTimeout:     c.WriteTimeout,
		ReadLimit:        c.ReadLimit,
		AuthReadLimit:    c.AuthReadLimit,
		MaxReplyQueue:    c.MaxReplyQueue,
		Window:           c.Window,
		Resume:           c.ResumeTimeout > 0,
		Encodings:        c.encodings(),
		Logger:           c.Logger,
	}
}

func (c Config) routerConfig() router.Config {
	return router.Config{
		RequestTimeout:       c.RequestTimeout,
		MaxSessionsPerTunnel: c.MaxSessionsPerTunnel,
		HoldTimeout:          c.HoldTimeout,
		MaxHeld:              c.MaxHeld,
		MaxHeldBytes:         c.MaxHeldBytes,
		RetryIdempotent:      c.RetryIdempotent,
		ResumeTimeout:        c.ResumeTimeout,
		Logger:               c.Logger,
	}
}

func (c Config) authConfig() auth.Config {
	return auth.Config{
		MaxFailures: c.MaxAuthFailures, FailureWindow: c.AuthFailureWindow,
		UpgradeRate: c.UpgradeRate, UpgradeBurst: c.UpgradeBurst,
		Now: c.Now, Logger: c.Logger,
	}
}
