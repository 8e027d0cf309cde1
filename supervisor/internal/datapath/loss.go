package datapath

import (
	"errors"
	"fmt"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

// Lost takes the end of connection conn's session epoch (and of any
// earlier one), f saying why. It fails everything bound to those sessions:
// answers that will never come, streams cut in the middle, handlers whose
// response can no longer reach the relay's waiting client. What travels on
// the tunnel's other connections is untouched.
func (p *Plane) Lost(conn, epoch int, f *actormsg.ConnectionFailed) {
	err := fmt.Errorf("%w: %s", messages.ErrConnectionLost, f.Type)
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch > p.ended[conn] {
		p.ended[conn] = epoch
	}
	on := func(via route) bool { return via.conn == conn && via.epoch <= epoch }
	for via := range p.sinks {
		if on(via) {
			delete(p.sinks, via)
		}
	}
	for id, pend := range p.pending {
		if pend.sent && on(pend.via) {
			pend.reply <- result{err: err}
			delete(p.pending, id)
		}
	}
	p.fail(err, on)
	for _, out := range p.unlinger(func(l lingering) bool { return on(l.out.route()) }) {
		p.finish(out)
	}
}

// failAll fails everything in flight with err: the tunnel stopped.
func (p *Plane) failAll(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, pend := range p.pending {
		pend.reply <- result{err: err}
		delete(p.pending, id)
	}
	clear(p.sinks)
	p.fail(err, func(route) bool { return true })
	p.unlinger(func(lingering) bool { return true })
}

// fail fails the streams and handlers whose route matches; p.mu is held.
func (p *Plane) fail(err error, match func(route) bool) {
	for k, s := range p.inStreams {
		if match(s.via) {
			s.r.Fail(err)
			delete(p.inStreams, k)
		}
	}
	moving := map[key]bool{}
	for k, out := range p.outStreams {
		if match(out.route()) {
			// A resumable stream's sender, its window closed, moves it to
			// another connection: its handler must go on feeding it.
			moving[k] = out.resumable && !errors.Is(err, messages.ErrStopped)
			if moving[k] {
				// Moved at once, even while its sender waits for its body.
				p.startMove(out, out.route())
			}
			out.window().Close(err)
			delete(p.outStreams, k)
		}
	}
	// A handler's entry stays until it returns: its answer must still find
	// its (now lost) route, and fail, rather than take another connection.
	for k, h := range p.handling {
		if match(h.via) && !moving[k] {
			h.cancel()
		}
	}
}
