// Package fleet makes relay nodes one fleet: any node serves any tunnel.
//
// A Fleet sits between a relay and a cluster Engine (membership and the
// tunnel directory; protoengine implements it on protoactor-go's cluster).
// It keeps what the engine does not:
//
//   - the node's live sessions per tunnel, which the relay's router reports
//     (SetSessions) and the Fleet registers in the directory: at once on a
//     change, every tunnel again on each topology change (a directory grain
//     loses its memory when its member dies) and every
//     Config.RegisterPeriod;
//   - a short cache of each tunnel's routes (Config.RouteCache), without
//     this node and without nodes a hop just failed to reach
//     (Config.FailedFor);
//   - a watchdog: a node that has been a member and finds itself missing
//     from its own member list for Config.RejoinAfter (an etcd blip can do
//     that, and nothing else notices) leaves and joins again as a new
//     member (Engine.Rejoin).
//
// The engine sits behind two small interfaces, Membership and Directory
// (declared in messages/fleetmsg, where the two sides meet), so that
// another cluster could stand in for protoactor-go's.
package fleet
