package auth

import (
	"crypto/sha256"
	"slices"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
)

// reload replaces the keys with keys (valid: see ValidateKeys) and says
// which tunnels lost theirs: gone, or changed. Keys are compared as
// digests, in constant time, and kept as digests only.
func (m *manager) reload(keys map[string]string) *relaymsg.KeysReloaded {
	next := newKeySet(keys)
	revoked, added := m.keys.diff(next)
	m.keys = next
	m.cfg.Keys = nil // the digests are what is kept
	m.log.WithField("revoked", len(revoked)).WithField("added", len(added)).Debug("Keys reloaded")
	return &relaymsg.KeysReloaded{Revoked: revoked, Added: added}
}

// diff compares ks with next, tunnel by tunnel: revoked are the tunnels of
// ks that next has not, or has with another key; added those of next that
// ks has not. Both sorted.
func (ks *keySet) diff(next *keySet) (revoked, added []string) {
	had := make(map[string][sha256.Size]byte, len(ks.entries))
	for _, e := range ks.entries {
		had[e.tunnel] = e.digest
	}
	has := make(map[string]bool, len(next.entries))
	for _, e := range next.entries {
		has[e.tunnel] = true
		old, ok := had[e.tunnel]
		switch {
		case !ok:
			added = append(added, e.tunnel)
		case compare(old[:], e.digest[:]) != 1:
			revoked = append(revoked, e.tunnel)
		}
	}
	for _, e := range ks.entries {
		if !has[e.tunnel] {
			revoked = append(revoked, e.tunnel)
		}
	}
	slices.Sort(revoked)
	slices.Sort(added)
	return revoked, added
}
