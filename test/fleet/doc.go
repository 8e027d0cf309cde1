// Package fleet tests relay fleets end to end: real tunnel-relay processes
// (one cluster member per process, since protoactor-go's gossip and
// disthash race when members share one), a real etcd (Debian etcd-server)
// or the automanaged provider, a real tunnel-supervisor process and a
// loopback upstream.
//
// A test that needs etcd and does not find it skips with the reason,
// unless TUNNEL_REQUIRE_TOOLS is set (CI sets it), then it fails.
package fleet
