package relay

import (
	"reflect"
	"slices"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// pendingPID is the PID of a test session named id.
func pendingPID(id string) *actor.PID { return actor.NewPID("nonhost", id) }

// pendingOp is one step on a pendingConns: add id from addr, or remove id
// (wantRemoved says what remove must report).
type pendingOp struct {
	remove      bool
	id, addr    string
	wantRemoved bool
}

func addOp(id, addr string) pendingOp { return pendingOp{id: id, addr: addr} }
func removeOp(id string, removed bool) pendingOp {
	return pendingOp{remove: true, id: id, wantRemoved: removed}
}

// checkPending checks every view of p against the expected state: all ids
// pending in insertion order, and the ids of each address in insertion
// order (no entry for an address with none).
func checkPending(t *testing.T, p *pendingConns, wantAll []string, wantByAddr map[string][]string) {
	t.Helper()
	var all []string
	for e := p.all.Front(); e != nil; e = e.Next() {
		all = append(all, e.Value.(*pendingConn).pid.Id)
	}
	if !slices.Equal(all, wantAll) {
		t.Errorf("all = %q, want %q", all, wantAll)
	}
	byAddr := map[string][]string{}
	for addr, l := range p.byAddr {
		var ids []string
		for e := l.Front(); e != nil; e = e.Next() {
			ids = append(ids, e.Value.(*pendingConn).pid.Id)
		}
		byAddr[addr] = ids
	}
	if wantByAddr == nil {
		wantByAddr = map[string][]string{}
	}
	if !reflect.DeepEqual(byAddr, wantByAddr) {
		t.Errorf("byAddr = %q, want %q (no entry for an address with none pending)", byAddr, wantByAddr)
	}
	if p.len() != len(wantAll) || len(p.byID) != len(wantAll) {
		t.Errorf("len() = %d, byID has %d, want %d", p.len(), len(p.byID), len(wantAll))
	}
	for _, id := range wantAll {
		if !p.has(pendingPID(id)) {
			t.Errorf("has(%q) = false, want true", id)
		}
	}
	wantOldest := ""
	if len(wantAll) > 0 {
		wantOldest = wantAll[0]
	}
	if got := pidID(p.oldest("")); got != wantOldest {
		t.Errorf(`oldest("") = %q, want %q`, got, wantOldest)
	}
	for addr, ids := range wantByAddr {
		if got := p.count(addr); got != len(ids) {
			t.Errorf("count(%q) = %d, want %d", addr, got, len(ids))
		}
		if got := pidID(p.oldest(addr)); got != ids[0] {
			t.Errorf("oldest(%q) = %q, want %q", addr, got, ids[0])
		}
	}
}

// pidID is pid's id, "" for nil.
func pidID(pid *actor.PID) string {
	if pid == nil {
		return ""
	}
	return pid.Id
}

// TestPendingConns proves pendingConns' bookkeeping: add appends to the
// list of all and of the address, oldest is the first added (overall, or
// of one address), remove takes a session out of both lists wherever it
// stands and reports whether it was pending, and an address's list goes
// away with its last session.
func TestPendingConns(t *testing.T) {
	tests := []struct {
		name       string
		ops        []pendingOp
		wantAll    []string
		wantByAddr map[string][]string
	}{
		{"empty", nil, nil, nil},
		{"one", []pendingOp{addOp("p1", "A")}, []string{"p1"}, map[string][]string{"A": {"p1"}}},
		{
			"insertion order, overall and per address",
			[]pendingOp{addOp("p1", "A"), addOp("p2", "B"), addOp("p3", "A"), addOp("p4", "B"), addOp("p5", "C")},
			[]string{"p1", "p2", "p3", "p4", "p5"},
			map[string][]string{"A": {"p1", "p3"}, "B": {"p2", "p4"}, "C": {"p5"}},
		},
		{
			"remove the oldest moves oldest on",
			[]pendingOp{addOp("p1", "A"), addOp("p2", "B"), addOp("p3", "A"), removeOp("p1", true)},
			[]string{"p2", "p3"},
			map[string][]string{"A": {"p3"}, "B": {"p2"}},
		},
		{
			"remove the middle",
			[]pendingOp{addOp("p1", "A"), addOp("p2", "A"), addOp("p3", "A"), removeOp("p2", true)},
			[]string{"p1", "p3"},
			map[string][]string{"A": {"p1", "p3"}},
		},
		{
			"remove the newest",
			[]pendingOp{addOp("p1", "A"), addOp("p2", "A"), removeOp("p2", true)},
			[]string{"p1"},
			map[string][]string{"A": {"p1"}},
		},
		{
			"the last of an address takes its list away",
			[]pendingOp{addOp("p1", "A"), addOp("p2", "B"), removeOp("p2", true)},
			[]string{"p1"},
			map[string][]string{"A": {"p1"}},
		},
		{
			"remove all",
			[]pendingOp{addOp("p1", "A"), addOp("p2", "B"), removeOp("p2", true), removeOp("p1", true)},
			nil, nil,
		},
		{
			"unknown pid",
			[]pendingOp{addOp("p1", "A"), removeOp("nobody", false)},
			[]string{"p1"},
			map[string][]string{"A": {"p1"}},
		},
		{
			"remove twice",
			[]pendingOp{addOp("p1", "A"), addOp("p2", "A"), removeOp("p1", true), removeOp("p1", false)},
			[]string{"p2"},
			map[string][]string{"A": {"p2"}},
		},
		{
			"remove from empty",
			[]pendingOp{removeOp("p1", false)},
			nil, nil,
		},
		{
			"added again after removal goes to the back",
			[]pendingOp{addOp("p1", "A"), addOp("p2", "A"), removeOp("p1", true), addOp("p1", "A")},
			[]string{"p2", "p1"},
			map[string][]string{"A": {"p2", "p1"}},
		},
		{
			"empty address is an address",
			[]pendingOp{addOp("p1", ""), addOp("p2", "A")},
			[]string{"p1", "p2"},
			map[string][]string{"": {"p1"}, "A": {"p2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPendingConns()
			for i, op := range tt.ops {
				if !op.remove {
					p.add(pendingPID(op.id), op.addr)
					continue
				}
				if got := p.remove(pendingPID(op.id)); got != op.wantRemoved {
					t.Errorf("op %d: remove(%q) = %v, want %v", i, op.id, got, op.wantRemoved)
				}
			}
			checkPending(t, p, tt.wantAll, tt.wantByAddr)
		})
	}
}

// TestPendingConnsUnknownQueries proves the answers about what is not
// pending: has is false, count is 0, oldest is nil (of an unknown address,
// and overall when nothing is pending).
func TestPendingConnsUnknownQueries(t *testing.T) {
	p := newPendingConns()
	if p.has(pendingPID("x")) || p.count("A") != 0 || p.oldest("A") != nil || p.oldest("") != nil || p.len() != 0 {
		t.Errorf("empty pendingConns: has %v, count %d, oldest(A) %v, oldest() %v, len %d",
			p.has(pendingPID("x")), p.count("A"), p.oldest("A"), p.oldest(""), p.len())
	}
	p.add(pendingPID("p1"), "A")
	if p.has(pendingPID("x")) || p.count("B") != 0 || p.oldest("B") != nil {
		t.Errorf("has(x) %v, count(B) %d, oldest(B) %v; want false, 0, nil", p.has(pendingPID("x")), p.count("B"), p.oldest("B"))
	}
	if _, ok := p.byAddr["B"]; ok {
		t.Error("asking about address B made it an entry of byAddr")
	}
	// Identity is the id: another PID value of the same id is the same session.
	if !p.has(actor.NewPID("otherhost", "p1")) {
		t.Error("has(otherhost/p1) = false, want true: sessions are known by id")
	}
	if got := p.oldest("A"); got == nil || got.Id != "p1" || got.Address != "nonhost" {
		t.Errorf("oldest(A) = %v, want the PID that was added", got)
	}
}

// TestPendingConnsEvictionOrder proves the way root.makeRoom uses
// pendingConns: evicting the oldest of an address, then the oldest of all,
// until there is room, leaves the newest ones.
func TestPendingConnsEvictionOrder(t *testing.T) {
	p := newPendingConns()
	for _, c := range []struct{ id, addr string }{{"a1", "A"}, {"b1", "B"}, {"a2", "A"}, {"a3", "A"}, {"b2", "B"}} {
		p.add(pendingPID(c.id), c.addr)
	}
	var evicted []string
	for p.count("A") >= 2 {
		pid := p.oldest("A")
		evicted = append(evicted, pid.Id)
		if !p.remove(pid) {
			t.Fatalf("remove(%q) = false", pid.Id)
		}
	}
	for p.len() >= 2 {
		pid := p.oldest("")
		evicted = append(evicted, pid.Id)
		if !p.remove(pid) {
			t.Fatalf("remove(%q) = false", pid.Id)
		}
	}
	if want := []string{"a1", "a2", "b1", "a3"}; !slices.Equal(evicted, want) {
		t.Errorf("evicted %q, want %q", evicted, want)
	}
	checkPending(t, p, []string{"b2"}, map[string][]string{"B": {"b2"}})
}
