// Package fleetmsg is the vocabulary between a relay node's part of a
// fleet (actors/relay/fleet) and the cluster engine behind it
// (actors/relay/fleet/protoengine, or another): the engine's two small
// interfaces, Membership and Directory, and the values they trade. It
// imports nothing of the project, so that either side can change without
// the other.
package fleetmsg

import (
	"context"
	"errors"
	"time"
)

// ErrClosed is returned by an engine, and by a Fleet's Close, once closed.
var ErrClosed = errors.New("fleet: closed")

// Route is a node with live sessions of a tunnel.
type Route struct {
	Node     string // member id
	Internal string // host:port of its internal HTTP listener
	Sessions int
}

// Registration is what a node says of one tunnel to the directory.
type Registration struct {
	Node     string
	Internal string
	Sessions int // 0: the node has none any more
	TTL      time.Duration
}

// Membership is the cluster's view of who is in the fleet.
type Membership interface {
	// Self is this node's member id; it changes on Rejoin.
	Self() string
	// Joined says whether this node is in its own member list.
	Joined() bool
	// Members are the member ids of the fleet.
	Members() []string
	// Topology is signalled (coalesced) on each topology change.
	Topology() <-chan struct{}
	// Rejoin leaves the cluster and joins it again as a new member.
	Rejoin() error
}

// Directory is the tunnel directory.
type Directory interface {
	Register(ctx context.Context, tunnel string, r Registration) error
	Lookup(ctx context.Context, tunnel string) ([]Route, error)
}

// Engine is a cluster: membership and the directory.
type Engine interface {
	Membership
	Directory
	Close() error
}
