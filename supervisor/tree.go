package supervisor

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/enhanced-tunnel/tunnel/actors/breaker"
	"github.com/enhanced-tunnel/tunnel/actors/connection"
	"github.com/enhanced-tunnel/tunnel/actors/health"
	"github.com/enhanced-tunnel/tunnel/actors/heartbeat"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// env is what every actor of the tree is made with: the tunnel's config,
// its hooks into the data path and the host, and the instance id sent in
// auth.
type env struct {
	cfg      Config
	hooks    hooks
	instance string
	// sessions numbers the authenticated sessions of all the tunnel's
	// connections (their epochs), so that an epoch names one session
	// wherever it is seen; read by the connections' readers.
	sessions *atomic.Int64
}

// childSpec is one child of a supervisor in the tree, as Erlang/OTP's child
// specs and Ergo's SupervisorSpec write it: its name, how to make it, and
// its restart rule. HandleFailure reads the rule from here and nowhere else.
type childSpec struct {
	name  string
	props func(e env, conn int) *actor.Props
	// delay is the restart rule. nil restarts the child at once (it holds no
	// resources worth waiting for). Otherwise the child is restarted after
	// delay(failure type, consecutive failures), unless the connection's
	// breaker opens: then at the end of the breaker's recovery, as its one
	// half-open trial.
	delay func(c Config, t messages.FailureType, consecutive int) time.Duration
}

// Indices of pathTree, for the path's routing between its children.
const (
	childHealth = iota
	childBreaker
	childHeartbeat
	childConnection
)

// pathTree is the subtree of one connection: the children a path actor
// spawns, in this order, and supervises. supervisor/doc.go shows the same
// table; keep them in step.
var pathTree = [...]childSpec{
	childHealth: {name: "health", props: func(e env, conn int) *actor.Props {
		c := e.cfg
		return health.Props(health.Config{Tunnel: c.Tunnel, Connection: conn, MaxTransitions: health.DefaultMaxTransitions, Logger: c.Logger})
	}},
	childBreaker: {name: "breaker", props: func(e env, conn int) *actor.Props {
		c := e.cfg
		return breaker.Props(c.breakerConfig())
	}},
	childHeartbeat: {name: "heartbeat", props: func(e env, conn int) *actor.Props {
		c := e.cfg
		return heartbeat.Props(c.heartbeatConfig())
	}},
	childConnection: {name: "connection", props: connectionProps, delay: Config.restartDelay},
}

// rootTree is the tree's top: one path (a connection's subtree) per
// connection, each restarted at once should it ever fail; the paths handle
// their connections' failures themselves.
func rootTree(connections int) []childSpec {
	specs := make([]childSpec, connections)
	for i := range specs {
		specs[i] = childSpec{name: fmt.Sprintf("connection-%d", i), props: pathProps}
	}
	return specs
}

// encodings lists what auth offers for the chosen encoding, most preferred
// first.
func encodings(chosen string) []string {
	if chosen == wire.EncodingJSON {
		return []string{wire.EncodingJSON}
	}
	return []string{wire.EncodingBin1, wire.EncodingJSON}
}

func connectionProps(e env, conn int) *actor.Props {
	c := e.cfg
	return connection.Props(connection.Config{
		URL: c.URLOf(conn), APIKey: c.APIKey, Tunnel: c.Tunnel, Client: c.Client,
		Instance: e.instance, Index: conn, Resume: c.ResumeStreams, Encodings: encodings(c.Encoding),
		Deliver: e.hooks.deliver, NewSession: func() int { return int(e.sessions.Add(1)) },
		ConnectTimeout: c.ConnectTimeout, PingInterval: c.PingInterval, PongTimeout: c.PongTimeout,
		WriteTimeout: c.WriteTimeout, CloseTimeout: c.CloseTimeout, ReadLimit: c.ReadLimit,
		WriteBufferSize: connection.DefaultBufferSize, ReadBufferSize: connection.DefaultBufferSize,
		TLSConfig: c.TLSConfig, NetDialContext: c.NetDialContext, Logger: c.Logger,
		Proxy: c.proxy(),
	})
}
