package relay

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// headersOf returns what requestHeaders gives the supervisor for a request
// to target from the TCP peer remote, with the headers in, on a relay that
// trusts trusted.
func headersOf(trusted proxies, target, remote string, in http.Header) http.Header {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = remote
	req.Header = in.Clone()
	p := &proxyCall{r: &Relay{proxies: trusted}, req: req}
	return http.Header(p.requestHeaders())
}

// TestInternalRequestHeadersForwarding proves the forwarding headers the
// supervisor gets. From an untrusted peer the client's X-Forwarded-For,
// X-Forwarded-Host, X-Forwarded-Proto, Forwarded and X-Real-IP are replaced
// by the relay's own (RFC 7239 syntax, IPv6 nodes quoted in brackets, the
// host a quoted-string); from a trusted proxy the chain is kept and
// extended by the peer, the host and proto it sent are kept, and X-Real-IP
// is the client found in the chain. Hop-by-hop headers are dropped, the
// others kept.
func TestInternalRequestHeadersForwarding(t *testing.T) {
	spoofed := http.Header{
		"Accept":            {"*/*"},
		"X-Forwarded-For":   {"1.1.1.1", "2.2.2.2"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=1.1.1.1;proto=https"},
		"X-Real-Ip":         {"1.1.1.1"},
	}
	tests := []struct {
		name    string
		trusted proxies
		target  string
		remote  string
		host    string // replaces req.Host when set
		in      http.Header
		want    http.Header
	}{
		{
			name: "untrusted peer, spoofed headers replaced", trusted: trustedForTest,
			target: "http://relay.example/x", remote: "203.0.113.9:1234", in: spoofed,
			want: http.Header{
				"Accept":            {"*/*"},
				"X-Forwarded-For":   {"203.0.113.9"},
				"X-Forwarded-Host":  {"relay.example"},
				"X-Forwarded-Proto": {"http"},
				"Forwarded":         {`for=203.0.113.9;host="relay.example";proto=http`},
				"X-Real-Ip":         {"203.0.113.9"},
			},
		},
		{
			name: "untrusted peer, no headers", trusted: nil,
			target: "http://relay.example:8080/x", remote: "198.51.100.7:1", in: http.Header{},
			want: http.Header{
				"X-Forwarded-For":   {"198.51.100.7"},
				"X-Forwarded-Host":  {"relay.example:8080"},
				"X-Forwarded-Proto": {"http"},
				"Forwarded":         {`for=198.51.100.7;host="relay.example:8080";proto=http`},
				"X-Real-Ip":         {"198.51.100.7"},
			},
		},
		{
			name: "untrusted IPv6 peer", trusted: trustedForTest,
			target: "http://relay.example/x", remote: "[2001:db8::9]:1234", in: spoofed,
			want: http.Header{
				"Accept":            {"*/*"},
				"X-Forwarded-For":   {"2001:db8::9"},
				"X-Forwarded-Host":  {"relay.example"},
				"X-Forwarded-Proto": {"http"},
				"Forwarded":         {`for="[2001:db8::9]";host="relay.example";proto=http`},
				"X-Real-Ip":         {"2001:db8::9"},
			},
		},
		{
			name: "untrusted IPv4-mapped peer is IPv4", trusted: trustedForTest,
			target: "http://relay.example/x", remote: "[::ffff:203.0.113.9]:1234", in: http.Header{},
			want: http.Header{
				"X-Forwarded-For":   {"203.0.113.9"},
				"X-Forwarded-Host":  {"relay.example"},
				"X-Forwarded-Proto": {"http"},
				"Forwarded":         {`for=203.0.113.9;host="relay.example";proto=http`},
				"X-Real-Ip":         {"203.0.113.9"},
			},
		},
		{
			name: "TLS is https", trusted: trustedForTest,
			target: "https://relay.example/x", remote: "203.0.113.9:1234", in: http.Header{},
			want: http.Header{
				"X-Forwarded-For":   {"203.0.113.9"},
				"X-Forwarded-Host":  {"relay.example"},
				"X-Forwarded-Proto": {"https"},
				"Forwarded":         {`for=203.0.113.9;host="relay.example";proto=https`},
				"X-Real-Ip":         {"203.0.113.9"},
			},
		},
		{
			name: "peer not on IP", trusted: trustedForTest,
			target: "http://relay.example/x", remote: "pipe", in: spoofed,
			want: http.Header{
				"Accept":            {"*/*"},
				"X-Forwarded-For":   {"pipe"},
				"X-Forwarded-Host":  {"relay.example"},
				"X-Forwarded-Proto": {"http"},
				"Forwarded":         {`for=unknown;host="relay.example";proto=http`},
				"X-Real-Ip":         {"pipe"},
			},
		},
		{
			name: "host quoted", trusted: trustedForTest,
			target: "http://relay.example/x", remote: "203.0.113.9:1234", host: `we"ird\host`, in: http.Header{},
			want: http.Header{
				"X-Forwarded-For":   {"203.0.113.9"},
				"X-Forwarded-Host":  {`we"ird\host`},
				"X-Forwarded-Proto": {"http"},
				"Forwarded":         {`for=203.0.113.9;host="we\"ird\\host";proto=http`},
				"X-Real-Ip":         {"203.0.113.9"},
			},
		},
		{
			name: "hop-by-hop dropped", trusted: trustedForTest,
			target: "http://relay.example/x", remote: "203.0.113.9:1234",
			in: http.Header{
				"Connection":          {"keep-alive, X-Secret", " X-Other "},
				"X-Secret":            {"s"},
				"X-Other":             {"o"},
				"Keep-Alive":          {"timeout=5"},
				"Proxy-Connection":    {"keep-alive"},
				"Proxy-Authorization": {"Basic x"},
				"Te":                  {"trailers"},
				"Trailer":             {"X-T"},
				"Transfer-Encoding":   {"chunked"},
				"Upgrade":             {"websocket"},
				"Authorization":       {"Bearer t"},
				"Cookie":              {"a=b"},
			},
			want: http.Header{
				"Authorization":     {"Bearer t"},
				"Cookie":            {"a=b"},
				"X-Forwarded-For":   {"203.0.113.9"},
				"X-Forwarded-Host":  {"relay.example"},
				"X-Forwarded-Proto": {"http"},
				"Forwarded":         {`for=203.0.113.9;host="relay.example";proto=http`},
				"X-Real-Ip":         {"203.0.113.9"},
			},
		},
		{
			name: "trusted peer, chain kept and extended", trusted: trustedForTest,
			target: "http://relay.example/x", remote: "10.0.0.1:80",
			in: http.Header{
				"X-Forwarded-For":   {"6.6.6.6, 203.0.113.7", " 10.0.0.2 "},
				"X-Forwarded-Host":  {"public.example"},
				"X-Forwarded-Proto": {"https"},
				"Forwarded":         {"for=6.6.6.6", `for=203.0.113.7;proto=https, for=10.0.0.2`},
				"X-Real-Ip":         {"6.6.6.6"},
			},
			want: http.Header{
				"X-Forwarded-For":   {"6.6.6.6, 203.0.113.7, 10.0.0.2, 10.0.0.1"},
				"X-Forwarded-Host":  {"public.example"},
				"X-Forwarded-Proto": {"https"},
				"Forwarded":         {`for=6.6.6.6, for=203.0.113.7;proto=https, for=10.0.0.2, for=10.0.0.1;host="relay.example";proto=http`},
				"X-Real-Ip":         {"203.0.113.7"},
			},
		},
		{
			name: "trusted peer, no headers of its own", trusted: trustedForTest,
			target: "http://relay.example/x", remote: "10.0.0.1:80", in: http.Header{},
			want: http.Header{
				"X-Forwarded-For":   {"10.0.0.1"},
				"X-Forwarded-Host":  {"relay.example"},
				"X-Forwarded-Proto": {"http"},
				"Forwarded":         {`for=10.0.0.1;host="relay.example";proto=http`},
				"X-Real-Ip":         {"10.0.0.1"},
			},
		},
		{
			name: "trusted IPv6 peer", trusted: trustedForTest,
			target: "https://relay.example/x", remote: "[fd00::1]:443",
			in: http.Header{"X-Forwarded-For": {"2001:db8::7"}},
			want: http.Header{
				"X-Forwarded-For":   {"2001:db8::7, fd00::1"},
				"X-Forwarded-Host":  {"relay.example"},
				"X-Forwarded-Proto": {"https"},
				"Forwarded":         {`for="[fd00::1]";host="relay.example";proto=https`},
				"X-Real-Ip":         {"2001:db8::7"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tt.target, nil)
			req.RemoteAddr = tt.remote
			req.Header = tt.in.Clone()
			if tt.host != "" {
				req.Host = tt.host
			}
			p := &proxyCall{r: &Relay{proxies: tt.trusted}, req: req}
			got := http.Header(p.requestHeaders())
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("requestHeaders() =\n%v\nwant\n%v", got, tt.want)
			}
			if !reflect.DeepEqual(req.Header, tt.in) {
				t.Errorf("requestHeaders changed the request's own headers: %v, was %v", req.Header, tt.in)
			}
		})
	}
}

// TestInternalRequestHeadersDropUntrustedXForwarded states the contract of
// requestHeaders' doc comment ("A client's own X-Forwarded-*, Forwarded
// and X-Real-IP are dropped ... unless the peer is a trusted proxy") and
// Config.TrustedProxies for the X-Forwarded-* headers the relay does not
// write itself: from an untrusted peer none of them reaches the supervisor;
// from a trusted proxy they are kept.
func TestInternalRequestHeadersDropUntrustedXForwarded(t *testing.T) {
	in := http.Header{
		"X-Forwarded-Port":   {"443"},
		"X-Forwarded-Prefix": {"/admin"},
		"X-Forwarded-Ssl":    {"on"},
		"X-Forwarded-Server": {"internal"},
	}
	untrusted := headersOf(trustedForTest, "http://relay.example/x", "203.0.113.9:1234", in)
	for name := range in {
		if v, ok := untrusted[name]; ok {
			t.Errorf("from an untrusted peer, %s = %q reaches the supervisor", name, v)
		}
	}
	trusted := headersOf(trustedForTest, "http://relay.example/x", "10.0.0.1:80", in)
	for name, want := range in {
		if got := trusted[name]; !reflect.DeepEqual(got, want) {
			t.Errorf("from a trusted proxy, %s = %q, want %q kept", name, got, want)
		}
	}
}
