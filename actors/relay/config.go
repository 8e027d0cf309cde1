package relay

import (
	"errors"
	"fmt"
	"maps"
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
	// DefaultMaxSessions is how many supervisor connections the relay
	// holds; one more is closed with 1013: 10000.
	DefaultMaxSessions = 10000
	// DefaultMaxBody is the largest public request body: 1 GiB (413 beyond).
	DefaultMaxBody = 1 << 30
	// DefaultMaxHeaderBytes is the largest public request header: 1 MiB
	// (431 beyond).
	DefaultMaxHeaderBytes = 1 << 20
	// DefaultChunkSize is the chunk size of streamed request bodies: 64 KiB,
	// small enough that streams and heartbeats interleave finely.
	DefaultChunkSize = 64 << 10
)

// Config configures a relay. Start with DefaultConfig and set at least one
// key (AuthToken, KeysFile or Keys).
type Config struct {
	// Listen is the TCP address of the HTTP front. Default DefaultListen;
	// "127.0.0.1:0" picks a free port (see Relay.Addr).
	Listen string

	// AuthToken is the API key of the tunnel "default".
	AuthToken string
	// KeysFile names a file of "name key" lines (see auth.ParseKeys).
	KeysFile string
	// Keys maps more tunnel names to their keys. The three sources are
	// merged; a tunnel named twice is an error.
	Keys map[string]string

	// RequestTimeout bounds the wait for a response frame: 60 s (504 beyond).
	RequestTimeout time.Duration
	// AuthTimeout bounds the wait for a valid auth frame: 10 s.
	AuthTimeout time.Duration
	// HeartbeatTimeout drops a supervisor that sent nothing for it: 30 s.
	HeartbeatTimeout time.Duration
	// PingInterval is how often supervisors are pinged: 15 s.
	PingInterval time.Duration
	// WriteTimeout bounds each write to a supervisor: 10 s.
	WriteTimeout time.Duration

	// MaxSessions, default DefaultMaxSessions (10000).
	MaxSessions int
	// MaxConcurrent requests per tunnel: 1024 (503 beyond).
	MaxConcurrent int
	// MaxBody, default DefaultMaxBody (1 GiB).
	MaxBody int64
	// MaxHeaderBytes, default DefaultMaxHeaderBytes (1 MiB).
	MaxHeaderBytes int
	// ReadLimit is the largest WebSocket message from a supervisor:
	// wire.DefaultReadLimit (16 MiB; 1009 beyond).
	ReadLimit int64
	// InlineLimit is the largest request body sent inline:
	// wire.DefaultInlineLimit (64 KiB); larger ones are streamed.
	InlineLimit int
	// ChunkSize of streamed request bodies: DefaultChunkSize (64 KiB), at
	// most wire.DefaultChunkLimit.
	ChunkSize int
	// Window is the flow-control window of each stream: wire.DefaultWindow (1 MiB).
	Window int64

	// MaxAuthFailures wrong keys from one address within AuthFailureWindow
	// get its upgrades answered 429 until the window has passed: 20 in 1 minute.
	MaxAuthFailures   int
	AuthFailureWindow time.Duration

	// TLSCertFile and TLSKeyFile, both set, serve HTTPS and wss://.
	TLSCertFile, TLSKeyFile string

	// Logger receives the relay's logs; nil discards them. Keys are never logged.
	Logger *logrus.Logger
	// Now is the clock of the auth failure window; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with every default set and no key.
func DefaultConfig() Config {
	return Config{
		Listen:            DefaultListen,
		RequestTimeout:    router.DefaultRequestTimeout,
		AuthTimeout:       session.DefaultAuthTimeout,
		HeartbeatTimeout:  session.DefaultHeartbeatTimeout,
		PingInterval:      session.DefaultPingInterval,
		WriteTimeout:      session.DefaultWriteTimeout,
		MaxSessions:       DefaultMaxSessions,
		MaxConcurrent:     router.DefaultMaxConcurrent,
		MaxBody:           DefaultMaxBody,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ReadLimit:         wire.DefaultReadLimit,
		InlineLimit:       wire.DefaultInlineLimit,
		ChunkSize:         DefaultChunkSize,
		Window:            wire.DefaultWindow,
		MaxAuthFailures:   auth.DefaultMaxFailures,
		AuthFailureWindow: auth.DefaultFailureWindow,
	}
}

// Validate reports the first setting that cannot work, including a keys
// file that cannot be read. Errors never quote a key.
func (c Config) Validate() error {
	if c.Listen == "" {
		return errors.New("relay: Listen is empty")
	}
	if c.MaxSessions < 1 {
		return fmt.Errorf("relay: MaxSessions must be at least 1, got %d", c.MaxSessions)
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
	keys := make(map[string]string)
	if c.KeysFile != "" {
		file, err := auth.LoadKeysFile(c.KeysFile)
		if err != nil {
			return nil, err
		}
		maps.Copy(keys, file)
	}
	add := func(name, key, source string) error {
		if _, dup := keys[name]; dup {
			return fmt.Errorf("relay: tunnel %q has a key from %s and another one", name, source)
		}
		keys[name] = key
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
	return keys, nil
}

func (c Config) sessionConfig() session.Config {
	return session.Config{
		AuthTimeout:      c.AuthTimeout,
		HeartbeatTimeout: c.HeartbeatTimeout,
		PingInterval:     c.PingInterval,
		WriteTimeout:     c.WriteTimeout,
		ReadLimit:        c.ReadLimit,
		Window:           c.Window,
		Logger:           c.Logger,
	}
}

func (c Config) routerConfig() router.Config {
	return router.Config{RequestTimeout: c.RequestTimeout, MaxConcurrent: c.MaxConcurrent, Logger: c.Logger}
}

func (c Config) authConfig() auth.Config {
	return auth.Config{MaxFailures: c.MaxAuthFailures, FailureWindow: c.AuthFailureWindow, Now: c.Now, Logger: c.Logger}
}
