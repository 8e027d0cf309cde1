package relay

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// trustedForTest are the trusted proxies of these tests: an IPv4 and an
// IPv6 network.
var trustedForTest = proxies{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}

// clientRequest is a request from the TCP peer remote with one
// X-Forwarded-For header line per element of xff.
func clientRequest(remote string, xff ...string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "http://relay.example/x", nil)
	req.RemoteAddr = remote
	for _, line := range xff {
		req.Header.Add("X-Forwarded-For", line)
	}
	return req
}

// addrString is a as text, "" when it is not an address.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// TestClientAddress proves proxies.client: the TCP peer is the client
// unless it is a trusted proxy; from a trusted proxy the client is the
// rightmost X-Forwarded-For address that is not trusted (over all header
// lines, spaces trimmed, IPv4-mapped addresses unmapped), garbage stops the
// walk at the last trusted hop, and with every hop trusted the leftmost
// wins. A header from an untrusted peer is ignored.
func TestClientAddress(t *testing.T) {
	tests := []struct {
		name    string
		proxies proxies
		remote  string
		xff     []string
		want    string // "" for no address
		wantVia bool   // viaProxy
	}{
		{"untrusted peer", trustedForTest, "203.0.113.9:1234", nil, "203.0.113.9", false},
		{"untrusted peer spoofs", trustedForTest, "203.0.113.9:1234", []string{"1.2.3.4"}, "203.0.113.9", false},
		{"untrusted peer spoofs a trusted hop", trustedForTest, "203.0.113.9:1234", []string{"10.0.0.2"}, "203.0.113.9", false},
		{"untrusted IPv6 peer spoofs", trustedForTest, "[2001:db8::9]:1234", []string{"1.2.3.4"}, "2001:db8::9", false},
		{"untrusted IPv4-mapped peer", trustedForTest, "[::ffff:203.0.113.9]:1234", []string{"1.2.3.4"}, "203.0.113.9", false},
		{"no trusted proxies at all", nil, "10.0.0.1:1234", []string{"1.2.3.4"}, "10.0.0.1", false},
		{"peer not on IP", trustedForTest, "pipe", []string{"1.2.3.4"}, "", false},
		{"trusted peer, no header", trustedForTest, "10.0.0.1:80", nil, "10.0.0.1", true},
		{"trusted peer, one hop", trustedForTest, "10.0.0.1:80", []string{"198.51.100.7"}, "198.51.100.7", true},
		{"rightmost untrusted wins over a spoofed left", trustedForTest, "10.0.0.1:80", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7", true},
		{"trusted hops skipped", trustedForTest, "10.0.0.1:80", []string{"198.51.100.7, 10.0.0.2, 10.0.0.3"}, "198.51.100.7", true},
		{"spoof, client, trusted hop", trustedForTest, "10.0.0.1:80", []string{"6.6.6.6, 198.51.100.7, 10.0.0.2"}, "198.51.100.7", true},
		{"several header lines", trustedForTest, "10.0.0.1:80", []string{"6.6.6.6, 198.51.100.7", "10.0.0.2", "10.0.0.3, 10.0.0.4"}, "198.51.100.7", true},
		{"spaces trimmed", trustedForTest, "10.0.0.1:80", []string{"  198.51.100.7  ,\t10.0.0.2 "}, "198.51.100.7", true},
		{"no spaces", trustedForTest, "10.0.0.1:80", []string{"6.6.6.6,198.51.100.7,10.0.0.2"}, "198.51.100.7", true},
		{"IPv6 client behind IPv6 hop", trustedForTest, "[fd00::1]:80", []string{"2001:db8::7, fd00::2"}, "2001:db8::7", true},
		{"IPv6 client behind IPv4 hop", trustedForTest, "10.0.0.1:80", []string{"2001:db8::7"}, "2001:db8::7", true},
		{"IPv4-mapped client unmapped", trustedForTest, "10.0.0.1:80", []string{"::ffff:198.51.100.7"}, "198.51.100.7", true},
		{"IPv4-mapped trusted hop skipped", trustedForTest, "10.0.0.1:80", []string{"198.51.100.7, ::ffff:10.0.0.2"}, "198.51.100.7", true},
		{"IPv4-mapped trusted peer", trustedForTest, "[::ffff:10.0.0.1]:80", []string{"198.51.100.7"}, "198.51.100.7", true},
		{"garbage stops at the last trusted hop", trustedForTest, "10.0.0.1:80", []string{"198.51.100.7, garbage, 10.0.0.2"}, "10.0.0.2", true},
		{"garbage rightmost leaves the peer", trustedForTest, "10.0.0.1:80", []string{"198.51.100.7, garbage"}, "10.0.0.1", true},
		{"trailing comma is garbage", trustedForTest, "10.0.0.1:80", []string{"198.51.100.7,"}, "10.0.0.1", true},
		{"empty line is garbage", trustedForTest, "10.0.0.1:80", []string{""}, "10.0.0.1", true},
		{"address with port is garbage", trustedForTest, "10.0.0.1:80", []string{"198.51.100.7:4711"}, "10.0.0.1", true},
		{"bracketed IPv6 is garbage", trustedForTest, "10.0.0.1:80", []string{"[2001:db8::7]"}, "10.0.0.1", true},
		{"Forwarded syntax is garbage", trustedForTest, "10.0.0.1:80", []string{"for=198.51.100.7"}, "10.0.0.1", true},
		{"all hops trusted: the leftmost", trustedForTest, "10.0.0.1:80", []string{"10.0.0.5, 10.0.0.4", "fd00::3"}, "10.0.0.5", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, via := tt.proxies.client(clientRequest(tt.remote, tt.xff...))
			if addrString(got) != tt.want || via != tt.wantVia {
				t.Errorf("client(remote %q, X-Forwarded-For %q) = %q, %v; want %q, %v",
					tt.remote, tt.xff, addrString(got), via, tt.want, tt.wantVia)
			}
			if got.IsValid() && got.Is4In6() {
				t.Errorf("client = %v: an IPv4-mapped address must come back unmapped", got)
			}
		})
	}
}

// TestClientAddressSourceKeysOfSpoofers proves, through client and source
// together, what the per-address limits see: an untrusted peer cannot pick
// its key with X-Forwarded-For, and hosts of one IPv6 /64 share a key.
func TestClientAddressSourceKeysOfSpoofers(t *testing.T) {
	tests := []struct {
		remote string
		xff    []string
		want   string
	}{
		{"203.0.113.9:1", []string{"1.1.1.1"}, "203.0.113.9"},
		{"203.0.113.9:2", []string{"2.2.2.2"}, "203.0.113.9"},
		{"[2001:db8:1:2::1]:1", []string{"1.1.1.1"}, "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::9]:2", nil, "2001:db8:1:2::/64"},
		{"10.0.0.1:80", []string{"2001:db8:1:2::1"}, "2001:db8:1:2::/64"},
		{"pipe", []string{"1.1.1.1"}, "pipe"},
	}
	for _, tt := range tests {
		req := clientRequest(tt.remote, tt.xff...)
		client, _ := trustedForTest.client(req)
		if got := source(client, req.RemoteAddr); got != tt.want {
			t.Errorf("source of remote %q, X-Forwarded-For %q = %q, want %q", tt.remote, tt.xff, got, tt.want)
		}
	}
}

// TestSource proves that the per-address key is an IPv4 address itself, the
// /64 network of an IPv6 address (zone dropped), and the remote text for a
// peer not on IP.
func TestSource(t *testing.T) {
	tests := []struct {
		addr   string // "" for no address
		remote string
		want   string
	}{
		{"198.51.100.7", "198.51.100.7:1", "198.51.100.7"},
		{"127.0.0.1", "x", "127.0.0.1"},
		{"2001:db8:1:2:3:4:5:6", "x", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::1", "x", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "x", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "x", "2001:db8:1:3::/64"},
		{"::1", "x", "::/64"},
		{"fe80::1%eth0", "x", "fe80::/64"},
		{"", "pipe", "pipe"},
		{"", "", ""},
	}
	for _, tt := range tests {
		var a netip.Addr
		if tt.addr != "" {
			a = netip.MustParseAddr(tt.addr)
		}
		if got := source(a, tt.remote); got != tt.want {
			t.Errorf("source(%q, %q) = %q, want %q", tt.addr, tt.remote, got, tt.want)
		}
	}
}

// TestClientPeerAddr proves that peerAddr is the IP of req.RemoteAddr, an
// IPv4-mapped IPv6 address unmapped, and no address for a remote that is
// not an IP address and port.
func TestClientPeerAddr(t *testing.T) {
	tests := []struct {
		remote string
		want   string // "" for no address
	}{
		{"1.2.3.4:80", "1.2.3.4"},
		{"[::ffff:1.2.3.4]:80", "1.2.3.4"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[fe80::1%eth0]:80", "fe80::1%eth0"},
		{"1.2.3.4", ""},
		{"2001:db8::1", ""},
		{"pipe", ""},
		{"", ""},
	}
	for _, tt := range tests {
		req := clientRequest(tt.remote)
		got := peerAddr(req)
		if addrString(got) != tt.want {
			t.Errorf("peerAddr(%q) = %q, want %q", tt.remote, addrString(got), tt.want)
		}
		if got.Is4In6() {
			t.Errorf("peerAddr(%q) = %v: must be unmapped", tt.remote, got)
		}
	}
}
