package relay

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestInternalDecodeUnreserved proves that decodeUnreserved decodes exactly
// the escapes of unreserved characters (RFC 3986 section 2.3), in either hex
// case, and leaves every other byte, incomplete or invalid escapes included,
// as it is, in a single pass (no double decoding).
func TestInternalDecodeUnreserved(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"/plain/path", "/plain/path"},
		{"%41", "A"},
		{"%61%7A", "az"},
		{"%30%39", "09"},
		{"%2D%2d%5F%5f%2E%2e%7E%7e", "--__..~~"},
		{"/%7Euser", "/~user"},
		// Reserved and other characters stay escaped, in their case.
		{"%2F", "%2F"},
		{"%2f", "%2f"},
		{"%20", "%20"},
		{"%25", "%25"},
		{"%3F%23%5B%5D%40", "%3F%23%5B%5D%40"},
		{"%00%7F%C3%A9", "%00%7F%C3%A9"},
		// One pass: %25 is '%', which stays, so %252E is not a dot.
		{"%252E", "%252E"},
		// Invalid or incomplete escapes stay byte for byte.
		{"%", "%"},
		{"%4", "%4"},
		{"/a%", "/a%"},
		{"/a%4", "/a%4"},
		{"%zz", "%zz"},
		{"%g1", "%g1"},
		{"%+2E", "%+2E"},
		{"%-1", "%-1"},
		{"%_1", "%_1"},
		{"%%41", "%A"},
		// An escape that ends the string is still decoded.
		{"/a%2E", "/a."},
	}
	for _, tt := range tests {
		if got := decodeUnreserved(tt.in); got != tt.want {
			t.Errorf("decodeUnreserved(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestNormalPath proves normalPath's contract: unreserved escapes decoded,
// other escapes and repeated slashes kept, dot segments removed as RFC 3986
// section 5.2.4 says, and ok false for anything not starting with a slash.
func TestNormalPath(t *testing.T) {
	tests := []struct {
		name     string
		in, want string
	}{
		{"root", "/", "/"},
		{"plain", "/a/b/c", "/a/b/c"},
		{"trailing slash kept", "/a/b/", "/a/b/"},
		{"double slash kept", "//x", "//x"},
		{"inner double slash kept", "/a//b", "/a//b"},
		{"dot dot", "/a/b/../c", "/a/c"},
		{"final dot dot is a directory", "/a/b/..", "/a/"},
		{"dot", "/a/./b", "/a/b"},
		{"final dot is a directory", "/a/.", "/a/"},
		{"dot dot above root", "/..", "/"},
		{"dot above root", "/.", "/"},
		{"dot slash", "/./", "/"},
		{"dot dot then name above root", "/../a", "/a"},
		{"escape from tunnel prefix", "/t/b/../../admin", "/admin"},
		{"encoded dot dot", "/a/%2e%2e/b", "/b"},
		{"encoded dot dot, mixed case, and dot", "/a/%2E%2e/%2e/b", "/b"},
		{"half encoded dot dot", "/a/.%2E/b", "/b"},
		{"dot dot over empty segment", "/a//../b", "/a/b"},
		{"not dot segments", "/a/.b/..c/.../b..", "/a/.b/..c/.../b.."},
		{"encoded slash does not split", "/a/%2e%2e%2fadmin", "/a/..%2fadmin"},
		{"encoded slash kept", "/a%2Fb/c", "/a%2Fb/c"},
		{"space kept", "/a%20b", "/a%20b"},
		{"unreserved decoded", "/%41%7E/%7euser", "/A~/~user"},
		{"double encoded dot stays", "/a/%252e%252e/b", "/a/%252e%252e/b"},
		{"RFC 3986 5.2.4 example", "/a/b/c/./../../g", "/a/g"},

		// RFC 3986 section 5.4, with base http://a/b/c/d;p?q: each
		// reference merged with the base path /b/c/ (section 5.2.3).
		// 5.4.1 normal examples.
		{"5.4.1 g", "/b/c/g", "/b/c/g"},
		{"5.4.1 ./g", "/b/c/./g", "/b/c/g"},
		{"5.4.1 g/", "/b/c/g/", "/b/c/g/"},
		{"5.4.1 /g", "/g", "/g"},
		{"5.4.1 .", "/b/c/.", "/b/c/"},
		{"5.4.1 ./", "/b/c/./", "/b/c/"},
		{"5.4.1 ..", "/b/c/..", "/b/"},
		{"5.4.1 ../", "/b/c/../", "/b/"},
		{"5.4.1 ../g", "/b/c/../g", "/b/g"},
		{"5.4.1 ../..", "/b/c/../..", "/"},
		{"5.4.1 ../../", "/b/c/../../", "/"},
		{"5.4.1 ../../g", "/b/c/../../g", "/g"},
		{"5.4.1 g;x", "/b/c/g;x", "/b/c/g;x"},
		// 5.4.2 abnormal examples.
		{"5.4.2 ../../../g", "/b/c/../../../g", "/g"},
		{"5.4.2 ../../../../g", "/b/c/../../../../g", "/g"},
		{"5.4.2 /./g", "/./g", "/g"},
		{"5.4.2 /../g", "/../g", "/g"},
		{"5.4.2 g.", "/b/c/g.", "/b/c/g."},
		{"5.4.2 .g", "/b/c/.g", "/b/c/.g"},
		{"5.4.2 g..", "/b/c/g..", "/b/c/g.."},
		{"5.4.2 ..g", "/b/c/..g", "/b/c/..g"},
		{"5.4.2 ./../g", "/b/c/./../g", "/b/g"},
		{"5.4.2 ./g/.", "/b/c/./g/.", "/b/c/g/"},
		{"5.4.2 g/./h", "/b/c/g/./h", "/b/c/g/h"},
		{"5.4.2 g/../h", "/b/c/g/../h", "/b/c/h"},
		{"5.4.2 g;x=1/./y", "/b/c/g;x=1/./y", "/b/c/g;x=1/y"},
		{"5.4.2 g;x=1/../y", "/b/c/g;x=1/../y", "/b/c/y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := normalPath(tt.in)
			if !ok || got != tt.want {
				t.Fatalf("normalPath(%q) = %q, %v; want %q, true", tt.in, got, ok, tt.want)
			}
			// A normal path is its own normal form.
			if again, ok := normalPath(got); !ok || again != got {
				t.Errorf("normalPath(%q) = %q, %v; a normal path must stay as it is", got, again, ok)
			}
		})
	}
}

// TestNormalPathRefusesTargetsThatAreNotPaths proves that ok is false, and
// the path empty, for a target that does not start with a slash or holds a
// '%' that starts no escape.
func TestNormalPathRefusesTargetsThatAreNotPaths(t *testing.T) {
	// A stray '%' is refused too: decoding around it could make a new
	// escape ("%%32%65" would become "%2e").
	for _, in := range []string{"", "*", "a/b", "a", ".", "..", "../a", "%2F", "%2fa", "http://h/a",
		"/%zz/x", "/a%4", "/a%", "/a/%%32%65%%32%65/b"} {
		if got, ok := normalPath(in); ok || got != "" {
			t.Errorf("normalPath(%q) = %q, %v; want \"\", false", in, got, ok)
		}
	}
}

// routeRequest is a request whose URL has the escaped path escaped (so that
// EscapedPath returns it as it is, dot segments included) and the query
// rawQuery.
func routeRequest(t *testing.T, escaped, rawQuery string) *http.Request {
	t.Helper()
	path, err := url.PathUnescape(escaped)
	if err != nil {
		t.Fatalf("bad test path %q: %v", escaped, err)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = path, escaped, rawQuery
	if got := req.URL.EscapedPath(); got != escaped {
		t.Fatalf("EscapedPath() = %q, want %q", got, escaped)
	}
	return req
}

// TestRouteSplitsTunnelAndNormalPath proves that route sends /t/{name}/rest
// to tunnel name as /rest, and any other path to the default tunnel as it
// is, after normalisation (so that dot segments cannot leave or enter a
// tunnel's prefix), with the raw query appended.
func TestRouteSplitsTunnelAndNormalPath(t *testing.T) {
	tests := []struct {
		name       string
		escaped    string
		query      string
		wantTunnel string
		wantPath   string
	}{
		{"root", "/", "", "default", "/"},
		{"default path", "/api/v1/items", "", "default", "/api/v1/items"},
		{"default with query", "/search", "q=a+b&x=%2F", "default", "/search?q=a+b&x=%2F"},
		{"tunnel", "/t/b/rest", "", "b", "/rest"},
		{"tunnel deeper", "/t/b/x/y/", "", "b", "/x/y/"},
		{"tunnel with query", "/t/b/x", "k=v&k=w", "b", "/x?k=v&k=w"},
		{"tunnel root with slash", "/t/b/", "", "b", "/"},
		{"tunnel root without slash", "/t/b", "", "b", "/"},
		{"tunnel root with query", "/t/b", "q=1", "b", "/?q=1"},
		{"no name", "/t/", "", "default", "/t/"},
		{"empty name", "/t//x", "", "default", "/t//x"},
		{"bare t", "/t", "", "default", "/t"},
		{"t without slash is a name", "/tb/x", "", "default", "/tb/x"},
		{"dot dot leaves the tunnel", "/t/b/../../admin", "", "default", "/admin"},
		{"dot dot leaves the tunnel, query kept", "/t/b/../../admin", "a=1", "default", "/admin?a=1"},
		{"encoded dot dot inside the tunnel", "/t/b/x/%2e%2e/y", "", "b", "/y"},
		{"dot dot to another tunnel", "/t/b/../c/x", "", "c", "/x"},
		{"dot dot into a tunnel", "/x/../t/b/y", "", "b", "/y"},
		{"encoded tunnel name letter", "/t/%62/x", "", "b", "/x"},
		{"escape kept in name", "/t/a%2Fb/x", "", "a%2Fb", "/x"},
		{"escape kept in path", "/t/b/a%2Fb%20c", "", "b", "/a%2Fb%20c"},
		{"encoded t prefix", "/%74/b/x", "", "b", "/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tunnel, path, ok := route(routeRequest(t, tt.escaped, tt.query))
			if !ok || tunnel != tt.wantTunnel || path != tt.wantPath {
				t.Errorf("route(%q ? %q) = %q, %q, %v; want %q, %q, true",
					tt.escaped, tt.query, tunnel, path, ok, tt.wantTunnel, tt.wantPath)
			}
		})
	}
}

// TestRouteOfParsedRequestTargets proves route on request targets as
// net/http parses them (httptest.NewRequest), where the escaped path comes
// from URL.RawPath or from re-escaping URL.Path.
func TestRouteOfParsedRequestTargets(t *testing.T) {
	tests := []struct {
		target     string
		wantTunnel string
		wantPath   string
	}{
		{"/t/b/../../admin", "default", "/admin"},
		{"/t/b/x/%2e%2e/y?q=1", "b", "/y?q=1"},
		{"/a/%2E%2e/%2e/b", "default", "/b"},
		{"/t/b/a%2Fb", "b", "/a%2Fb"},
		{"/t/b/a%20b?x=%20", "b", "/a%20b?x=%20"},
		{"http://relay.example/t/b/c?d=e", "b", "/c?d=e"},
	}
	for _, tt := range tests {
		tunnel, path, ok := route(httptest.NewRequest(http.MethodGet, tt.target, nil))
		if !ok || tunnel != tt.wantTunnel || path != tt.wantPath {
			t.Errorf("route(%q) = %q, %q, %v; want %q, %q, true", tt.target, tunnel, path, ok, tt.wantTunnel, tt.wantPath)
		}
	}
}

// TestRouteRefusesTargetsThatAreNotPaths proves that ok is false for a
// request target that is not a path: OPTIONS *, and a URL whose path is
// relative.
func TestRouteRefusesTargetsThatAreNotPaths(t *testing.T) {
	star := httptest.NewRequest(http.MethodOptions, "*", nil)
	relative := httptest.NewRequest(http.MethodGet, "/", nil)
	relative.URL = &url.URL{Path: "a/b", RawQuery: "q=1"}
	for _, req := range []*http.Request{star, relative} {
		if tunnel, path, ok := route(req); ok || tunnel != "" || path != "" {
			t.Errorf("route(%q) = %q, %q, %v; want \"\", \"\", false", req.URL, tunnel, path, ok)
		}
	}
}

// TestRouteAbsoluteFormWithoutPathIsRoot states the contract for an
// absolute-form target with an empty path ("GET http://host HTTP/1.1"),
// which net/http hands over with an empty URL.Path: RFC 9110 section 4.2.3
// makes an empty path equivalent to "/", so it should go to the default
// tunnel as "/" (with its query).
func TestRouteAbsoluteFormWithoutPathIsRoot(t *testing.T) {
	tests := []struct {
		target   string
		wantPath string
	}{
		{"http://relay.example", "/"},
		{"http://relay.example?q=1", "/?q=1"},
	}
	for _, tt := range tests {
		tunnel, path, ok := route(httptest.NewRequest(http.MethodGet, tt.target, nil))
		if !ok || tunnel != "default" || path != tt.wantPath {
			t.Errorf("route(%q) = %q, %q, %v; want \"default\", %q, true", tt.target, tunnel, path, ok, tt.wantPath)
		}
	}
}
