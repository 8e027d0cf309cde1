package directory

import (
	"cmp"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	fleetv1 "github.com/enhanced-tunnel/tunnel/messages/fleet/v1"
)

// DefaultIdle is how long a grain with no entry lives on: 1 min.
const DefaultIdle = time.Minute

// Config configures a grain.
type Config struct {
	// IsMember says whether a member id is still in the fleet. Nil counts
	// every node as a member.
	IsMember func(id string) bool
	// Now is the clock of the entries' TTLs; nil is time.Now.
	Now func() time.Time
	// Idle is how long a grain with no entry lives on; DefaultIdle if 0.
	Idle time.Duration
}

type entry struct {
	route   *fleetv1.Route
	expires time.Time
}

type grain struct {
	cfg     Config
	entries map[string]entry // by node id
}

// New returns the actor of one tunnel's directory.
func New(cfg Config) actor.Actor {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IsMember == nil {
		cfg.IsMember = func(string) bool { return true }
	}
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultIdle
	}
	return &grain{cfg: cfg, entries: make(map[string]entry)}
}

func (g *grain) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ctx.SetReceiveTimeout(g.cfg.Idle)
	case *fleetv1.Register:
		g.prune()
		if m.GetSessions() <= 0 {
			delete(g.entries, m.GetNode())
		} else {
			g.entries[m.GetNode()] = entry{
				route:   &fleetv1.Route{Node: m.GetNode(), Internal: m.GetInternal(), Sessions: m.GetSessions()},
				expires: g.cfg.Now().Add(time.Duration(m.GetTtlMs()) * time.Millisecond),
			}
		}
		ctx.Respond(&fleetv1.Registered{})
	case *fleetv1.Lookup:
		g.prune()
		routes := make([]*fleetv1.Route, 0, len(g.entries))
		for _, e := range g.entries {
			routes = append(routes, e.route)
		}
		slices.SortFunc(routes, func(a, b *fleetv1.Route) int {
			if c := cmp.Compare(b.GetSessions(), a.GetSessions()); c != 0 {
				return c
			}
			return cmp.Compare(a.GetNode(), b.GetNode())
		})
		ctx.Respond(&fleetv1.Routes{Routes: routes})
	case *actor.ReceiveTimeout:
		// Only the grain's own messages reset the timeout; an empty grain
		// costs a member nothing once stopped, and comes back on the next
		// message to its identity.
		if g.prune(); len(g.entries) == 0 {
			ctx.Stop(ctx.Self())
		} else {
			// protoactor-go cancels the timeout once it fires.
			ctx.SetReceiveTimeout(g.cfg.Idle)
		}
	}
}

// prune drops the entries past their TTL and those of nodes that left.
func (g *grain) prune() {
	now := g.cfg.Now()
	for id, e := range g.entries {
		if now.After(e.expires) || !g.cfg.IsMember(id) {
			delete(g.entries, id)
		}
	}
}
