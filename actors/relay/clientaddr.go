package relay

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/pires/go-proxyproto"
)

// proxies are the trusted proxies in front of the relay (Config.TrustedProxies).
type proxies []netip.Prefix

func (p proxies) trusts(a netip.Addr) bool {
	for _, prefix := range p {
		if prefix.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr is the address of the TCP peer of req: the address the PROXY
// header of a trusted proxy named, if there was one. It is invalid for a
// peer that is not on IP (an in-memory pipe).
func peerAddr(req *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// client is the address req came from: the peer, unless the peer is a
// trusted proxy, then the rightmost address of X-Forwarded-For that is not
// one (the address the nearest trusted proxy saw). Anyone can write
// X-Forwarded-For; only what trusted proxies appended is believed.
func (p proxies) client(req *http.Request) (addr netip.Addr, viaProxy bool) {
	addr = peerAddr(req)
	if !addr.IsValid() || !p.trusts(addr) {
		return addr, false
	}
	hops := forwardedFor(req.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // garbage: the hop that wrote it is as far as trust goes
		}
		addr = hop.Unmap()
		if !p.trusts(addr) {
			break
		}
	}
	return addr, true
}

// forwardedFor is the list of X-Forwarded-For addresses, oldest first,
// over all the header's lines.
func forwardedFor(h http.Header) []string {
	var hops []string
	for _, line := range h.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(line, ",")...)
	}
	return hops
}

// source is the key of the per-address limits: an IPv4 address, or the /64
// network of an IPv6 address, since one host holds a whole /64. A peer not
// on IP is its own source.
func source(addr netip.Addr, remote string) string {
	switch {
	case !addr.IsValid():
		return remote
	case addr.Is6():
		prefix, _ := addr.Prefix(64)
		return prefix.String()
	}
	return addr.String()
}

// proxyProtocol wraps ln so that connections from trusted proxies must start
// with a PROXY protocol header, whose client address then stands for the
// peer's, and connections from anyone else must not.
func (p proxies) proxyProtocol(ln net.Listener) net.Listener {
	return &proxyproto.Listener{
		Listener: ln,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			tcp, ok := o.Upstream.(*net.TCPAddr)
			if !ok {
				return proxyproto.REJECT, fmt.Errorf("%w: relay: not a TCP peer", proxyproto.ErrInvalidUpstream)
			}
			if p.trusts(tcp.AddrPort().Addr().Unmap()) {
				return proxyproto.REQUIRE, nil
			}
			return proxyproto.REJECT, nil
		},
		ReadHeaderTimeout: readHeaderTimeout,
	}
}
