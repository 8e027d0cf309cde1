package fleet_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/enhanced-tunnel/tunnel/actors/relay/fleet"
)

// memDirectory is a tunnel directory in memory, shared by the nodes of one
// process. A relay uses protoengine, whose directory is a grain per tunnel
// spread over the cluster.
type memDirectory struct {
	mu     sync.Mutex
	routes map[string]map[string]fleet.Route // tunnel -> node -> route
	// registered hears of each registration: a Fleet registers in the
	// background.
	registered chan string
}

// memNode is one node's Engine on a memDirectory, always a member.
type memNode struct {
	*memDirectory
	id string
}

func (n memNode) Self() string              { return n.id }
func (n memNode) Joined() bool              { return true }
func (n memNode) Members() []string         { return []string{n.id} }
func (n memNode) Topology() <-chan struct{} { return nil } // never changes
func (n memNode) Rejoin() error             { return nil }
func (n memNode) Close() error              { return nil }

func (d *memDirectory) Register(_ context.Context, tunnel string, r fleet.Registration) error {
	d.mu.Lock()
	if d.routes[tunnel] == nil {
		d.routes[tunnel] = make(map[string]fleet.Route)
	}
	if r.Sessions > 0 {
		d.routes[tunnel][r.Node] = fleet.Route{Node: r.Node, Internal: r.Internal, Sessions: r.Sessions}
	} else {
		delete(d.routes[tunnel], r.Node)
	}
	d.mu.Unlock()
	d.registered <- tunnel
	return nil
}

func (d *memDirectory) Lookup(_ context.Context, tunnel string) ([]fleet.Route, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var routes []fleet.Route
	for _, r := range d.routes[tunnel] {
		routes = append(routes, r)
	}
	slices.SortFunc(routes, func(a, b fleet.Route) int { return cmp.Compare(b.Sessions, a.Sessions) })
	return routes, nil
}

// Two relay nodes share a directory: the node holding a tunnel's sessions
// registers them, and the other finds it there.
func Example() {
	dir := &memDirectory{routes: make(map[string]map[string]fleet.Route), registered: make(chan string, 16)}
	a, err := fleet.New(memNode{dir, "node-a"}, fleet.Config{Internal: "10.0.0.1:7000"})
	if err != nil {
		panic(err)
	}
	b, err := fleet.New(memNode{dir, "node-b"}, fleet.Config{Internal: "10.0.0.2:7000"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	// node-a's router reports two live sessions of tunnel "web".
	a.SetSessions("web", 2)
	fmt.Println("registered", <-dir.registered)

	routes, _ := b.Routes(ctx, "web")
	fmt.Println("node-b sends web to", routes)
	routes, _ = a.Routes(ctx, "web")
	fmt.Println("node-a sends web to", len(routes), "other nodes")

	_ = a.Close(ctx)
	_ = b.Close(ctx)
	// Output:
	// registered web
	// node-b sends web to [{node-a 10.0.0.1:7000 2}]
	// node-a sends web to 0 other nodes
}
