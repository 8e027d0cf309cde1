package relay

import (
	"container/list"

	"github.com/asynkron/protoactor-go/actor"
)

// pendingConns are the sessions that have not authenticated yet, oldest
// first, in all and per client address, so that the oldest can make room
// for a newer one. Owned by the root actor.
type pendingConns struct {
	all    list.List // of *pendingConn
	byAddr map[string]*list.List
	byID   map[string]*pendingConn
}

type pendingConn struct {
	pid           *actor.PID
	addr          string
	inAll, inAddr *list.Element
}

func newPendingConns() *pendingConns {
	return &pendingConns{byAddr: make(map[string]*list.List), byID: make(map[string]*pendingConn)}
}

func (p *pendingConns) len() int { return p.all.Len() }

// count is how many are pending from addr.
func (p *pendingConns) count(addr string) int {
	if l := p.byAddr[addr]; l != nil {
		return l.Len()
	}
	return 0
}

func (p *pendingConns) has(pid *actor.PID) bool { return p.byID[pid.Id] != nil }

func (p *pendingConns) add(pid *actor.PID, addr string) {
	c := &pendingConn{pid: pid, addr: addr}
	l := p.byAddr[addr]
	if l == nil {
		l = list.New()
		p.byAddr[addr] = l
	}
	c.inAll, c.inAddr = p.all.PushBack(c), l.PushBack(c)
	p.byID[pid.Id] = c
}

// remove forgets the session, and reports whether it was pending.
func (p *pendingConns) remove(pid *actor.PID) bool {
	c := p.byID[pid.Id]
	if c == nil {
		return false
	}
	delete(p.byID, pid.Id)
	p.all.Remove(c.inAll)
	l := p.byAddr[c.addr]
	l.Remove(c.inAddr)
	if l.Len() == 0 {
		delete(p.byAddr, c.addr)
	}
	return true
}

// oldest returns the oldest pending session from addr, or of all when addr
// is empty; nil if there is none.
func (p *pendingConns) oldest(addr string) *actor.PID {
	l := &p.all
	if addr != "" {
		if l = p.byAddr[addr]; l == nil {
			return nil
		}
	}
	if e := l.Front(); e != nil {
		return e.Value.(*pendingConn).pid
	}
	return nil
}
