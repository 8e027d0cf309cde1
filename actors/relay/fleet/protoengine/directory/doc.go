// Package directory is the tunnel directory grain: one actor per tunnel,
// placed on a fleet member by the cluster's identity lookup, that records
// which relay nodes hold live sessions of its tunnel.
//
// Its memory is soft state. Each node registers the number of sessions it
// holds when that number changes, again on every topology change (the grain
// may have moved, or died with its member) and on a period; an entry lasts
// its TTL unless registered again. Entries of nodes that are no longer
// members are dropped as soon as the member list says so: Config.IsMember is
// asked on every message, so a node that left is never routed to from the
// topology event on, without a subscription per grain. A grain with no entry
// left stops after Config.Idle, so a fleet keeps grains only for tunnels
// that are up.
//
// Messages (from messages/fleet/v1), each answered to its sender:
//
//	*fleetv1.Register -> *fleetv1.Registered (sessions 0 removes the node)
//	*fleetv1.Lookup   -> *fleetv1.Routes, most sessions first
package directory
