package relay

// Reloading the keys file without a restart (SIGHUP in tunnel-relay): the
// auth manager takes the new keys and says which tunnels lost theirs, the
// router closes the sessions of those (1008) and learns the new tunnels,
// and the front swaps its tunnel set, host routes and access rules. Every
// other session, and every request in flight on a tunnel left as it was,
// goes on untouched.

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Reload results, the result label of tunnel_relay_reloads_total.
const (
	reloadOK    = "ok"
	reloadError = "error"
)

// revokedReason is the close reason of a session whose key a reload
// revoked (code 1008, policy violation).
const revokedReason = "key revoked"

// reloadKeys asks the root to hand keys to the auth manager and to close
// the sessions of the tunnels that lost theirs; it answers *keysReloaded.
type reloadKeys struct {
	keys map[string]string
}

// String keeps the keys out of a dead letter's log line.
func (m *reloadKeys) String() string {
	return fmt.Sprintf("reloadKeys{%d keys: <redacted>}", len(m.keys))
}

// keysReloaded answers reloadKeys; err is set when the auth manager did not
// answer (nothing changed then).
type keysReloaded struct {
	revoked, added []string
	err            error
}

// Reload reads the keys again (Config.KeysFile, with Config.AuthToken and
// Config.Keys as at the start) and applies them without a restart:
//
//   - a tunnel whose key is gone or changed has its sessions closed with
//     1008 ("key revoked"); its supervisors' next auth with the old key is
//     refused;
//   - a new tunnel is known at once (a public request for it is held for a
//     session, no longer 404), and a removed one is 404;
//   - the access options (bearer=, basic=, allow=, rate=, burst=) take
//     effect for the requests that arrive from then on; a tunnel whose
//     options did not change keeps its rate bucket and its verified
//     credentials;
//   - everything else stays: the sessions of the other tunnels, and the
//     requests in flight through them.
//
// A file that cannot be read, does not parse or holds a key too weak
// changes nothing: the error (which names the line, never a key) is logged
// at error level and returned. Either way tunnel_relay_reloads_total counts
// the result. In a fleet each node reloads its own keys.
func (r *Relay) Reload() error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	revoked, added, err := r.reload()
	if err != nil {
		r.metrics.reloads.WithLabelValues(reloadError).Inc()
		r.log.WithError(err).Error("Reload failed; the keys and access rules stay as they were")
		return err
	}
	r.metrics.reloads.WithLabelValues(reloadOK).Inc()
	r.log.WithFields(logrus.Fields{"revoked": revoked, "added": added}).Info("Keys reloaded")
	return nil
}

func (r *Relay) reload() (revoked, added []string, err error) {
	select {
	case <-r.draining:
		return nil, nil, errors.New("relay: reload: the relay is closing")
	default:
	}
	tunnels, err := r.cfg.tunnels()
	if err != nil {
		return nil, nil, fmt.Errorf("relay: reload: %w", err)
	}
	keys := auth.Keys(tunnels)
	if err := auth.ValidateKeys(keys); err != nil {
		return nil, nil, fmt.Errorf("relay: reload: %w", err)
	}
	res, err := ask[*keysReloaded](r, &reloadKeys{keys: keys})
	if err == nil {
		err = res.err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("relay: reload: %w", err)
	}
	// The router knows the new tunnels now: the front may send them.
	for name := range keys {
		r.metrics.tunnelSessions.WithLabelValues(name)
		r.metrics.held.WithLabelValues(name)
	}
	r.metrics.tunnels.set(keys)
	r.setHosts(newHostRoutes(r.cfg.Domain, keys))
	r.access.reload(tunnels)
	return res.revoked, res.added, nil
}

// reload hands msg's keys to the auth manager, then has the router learn
// the new tunnels and close the sessions whose key is revoked: those
// registered, and those whose key checked out before the auth manager took
// the new keys but that have not registered yet (stale: revokeStale closes
// them as they register). It waits for the auth manager, so that no auth
// is forwarded meanwhile: every auth before this answer was checked with
// the old keys, every one after with the new.
func (r *rootActor) reload(ctx actor.Context, msg *reloadKeys) *keysReloaded {
	res, err := ctx.RequestFuture(r.auth, &relaymsg.ReloadKeys{Keys: msg.keys}, askTimeout).Result()
	if err != nil {
		return &keysReloaded{err: fmt.Errorf("the auth manager did not answer: %w", err)}
	}
	done, ok := res.(*relaymsg.KeysReloaded)
	if !ok {
		return &keysReloaded{err: fmt.Errorf("the auth manager answered %T", res)}
	}
	r.keys = msg.keys
	ctx.Send(r.router, &relaymsg.KnownTunnels{Names: slices.Sorted(maps.Keys(msg.keys))})
	if len(done.Revoked) > 0 {
		for id, tunnel := range r.asked {
			if slices.Contains(done.Revoked, tunnel) {
				r.stale[id] = struct{}{}
			}
		}
		ctx.Send(r.router, &relaymsg.CloseSessions{Tunnels: done.Revoked, Code: wire.ClosePolicy, Reason: revokedReason})
	}
	return &keysReloaded{revoked: done.Revoked, added: done.Added}
}

// noteAsked remembers the tunnel an unauthenticated session asks for, as
// its auth goes to the auth manager.
func (r *rootActor) noteAsked(ctx actor.Context, msg *relaymsg.Authenticate) {
	sender := ctx.Sender()
	if sender == nil {
		return
	}
	tunnel := msg.Tunnel
	if tunnel == "" {
		tunnel = wire.DefaultTunnel
	}
	r.asked[sender.Id] = tunnel
	delete(r.stale, sender.Id) // this auth is checked with the keys of now
}

// revokeStale closes a session that just registered with a key a reload
// revoked after it checked out. The router is asked after the SessionUp
// it was forwarded, so the session hears Registered first and then the
// close: it reports its end like any registered session.
func (r *rootActor) revokeStale(ctx actor.Context, session *actor.PID) {
	delete(r.asked, session.Id)
	if _, stale := r.stale[session.Id]; !stale {
		return
	}
	delete(r.stale, session.Id)
	ctx.Send(r.router, &relaymsg.CloseSessions{Sessions: []*actor.PID{session}, Code: wire.ClosePolicy, Reason: revokedReason})
}

// tunnelSet is the set of tunnels a key opens, read by every public
// request and swapped whole by a reload.
type tunnelSet struct {
	p atomic.Pointer[map[string]bool]
}

func newTunnelSet(names map[string]bool) *tunnelSet {
	s := &tunnelSet{}
	s.p.Store(&names)
	return s
}

// has says whether a key opens the tunnel name.
func (s *tunnelSet) has(name string) bool { return (*s.p.Load())[name] }

// set makes the tunnels of keys the set.
func (s *tunnelSet) set(keys map[string]string) {
	names := make(map[string]bool, len(keys))
	for name := range keys {
		names[name] = true
	}
	s.p.Store(&names)
}

// currentHosts are the host routes of the tunnels there are now.
func (r *Relay) currentHosts() hostRoutes { return *r.hosts.Load() }

func (r *Relay) setHosts(h hostRoutes) { r.hosts.Store(&h) }

// reload replaces the access rules by those of tunnels. A tunnel whose
// rules are the same keeps its state (its rate bucket, the credentials
// verified lately); a tunnel with new rules starts afresh.
func (a *access) reload(tunnels map[string]auth.Tunnel) {
	fresh := newAccess(tunnels, a.now, a.denied).tunnels
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, ta := range fresh {
		if old := a.tunnels[name]; old != nil && reflect.DeepEqual(old.rules, ta.rules) {
			fresh[name] = old
		}
	}
	a.tunnels = fresh
}
