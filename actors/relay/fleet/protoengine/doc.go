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
//   - The remote serves two unary methods it never implemented, which
//     panic and so end the process: they are refused to every caller.
//   - The remote is unauthenticated: with a secret, every gRPC call carries
//     it and the server refuses a call without it (compared in constant
//     time).
//   - Cluster.StartMember panics when the provider or the listener fails:
//     Start recovers, stops what had started, and returns ErrStart.
//   - The etcd provider waits forever for an etcd that does not answer, at
//     start and at shutdown, and its client's goroutines race with the
//     remote's start: see etcdProvider.
//   - After an etcd blip a member can drop out of its own member list for
//     good (upstream issue 1133), and a member that missed heartbeats is
//     blocked by the others for good: the fleet's watchdog calls Rejoin,
//     which starts a new actor system, so a new member id.
//   - MemberList is read without its lock: the engine keeps the member set
//     of the last topology event instead (Joined, Members, and the
//     directory grains' IsMember).
//   - Data races in gossip and disthash (even one member races under
//     -race), and goroutines left after Shutdown (throttles, the gossip and
//     provider loops, the etcd client of an incarnation left by Rejoin): a
//     relay runs one member per process, members are tested as separate
//     processes (test/fleet), and only a relay in fleet mode starts any of
//     it.
package protoengine
