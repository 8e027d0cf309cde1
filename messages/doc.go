// Package messages is the tunnel's public vocabulary: the TunnelMessage a
// host sends and receives, the seed's states and failure types, the status
// shape, the StateChanged a host's OnStateChange hears, and the errors every
// part returns (one prefix, "tunnel: ", told apart with errors.Is). It
// imports nothing of the project but its own wire sub-package.
//
// The messages the supervisor's actors exchange among themselves are in
// messages/actormsg; the relay's, in messages/relaymsg.
package messages
