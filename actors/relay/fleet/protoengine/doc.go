// Package protoengine is the fleet's Engine on protoactor-go's cluster:
// membership through a cluster provider (etcd, or automanaged for a fixed
// list of hosts), and the tunnel directory as a grain kind placed by the
// disthash identity lookup.
//
// The engine runs its own actor system, apart from the relay's: the cluster
// can be stopped and joined again (Rejoin) without touching a session, and
// every incarnation is a new member id, since a member that missed
// heartbeats is blocked by the others for good.
//
// Known defects of protoactor-go's cluster at the version in go.mod, and
// what this package does about each:
//
//   - A remote message that is not protobuf is dropped without an error,
//     and a type the receiver does not know crashes it. Every message sent
//     is from messages/fleet/v1, and the grain kind carries the version
//     (Kind, "tunnel-directory.v1"): disthash only places a grain on a
//     member that announced its kind, so a node never sends a v1 message to
//     a node that lacks v1.
//   - The gRPC remote's default 4 MiB receive limit drops whole batches
//     silently: both the server's and the client's limits are MaxMessage
//     (64 MiB).
//   - Cluster.StartMember panics when the provider or the listener fails:
//     Start recovers and returns an error.
//   - The remote is unauthenticated: with a secret, every gRPC call carries
//     it and the server refuses a call without it (compared in constant
//     time).
//   - Data races in gossip and disthash when several members share a
//     process, and goroutines left after Shutdown (throttles, the gossip
//     and provider loops): a relay runs one member per process, the fleet
//     tests run members as separate processes, and only a relay in fleet
//     mode starts any of it.
package protoengine
