package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Rule is an ingress rule: requests for Host (any host when empty) whose
// path starts with Prefix go to Upstream. A Forwarder tries its rules in
// order and the first that matches wins; Config.Upstream, when set, is the
// catch-all after them, and a request that matches nothing is answered 404
// {"error":"no route for HOST/PATH"} without reaching any upstream.
//
// The flag syntax, which ParseRule reads and String writes, is
//
//	[HOST]/PREFIX=URL[,strip][,insecure]
//
// e.g. /v1/tts=http://127.0.0.1:8000, /ws=ws://127.0.0.1:8001,
// api.example.com/=unix:/run/api.sock, *.example.com/v1=https://127.0.0.1:8443,strip,insecure.
type Rule struct {
	// Host is matched against the public host the request was sent to: its
	// X-Forwarded-Host (the relay sets it), else its Host header, without
	// the port, case-insensitively. "api.example.com" matches that name
	// only; "*.example.com" matches any name under example.com (a.example.com,
	// a.b.example.com) but not example.com itself. Empty matches any host.
	// A rule's host has no port: ports are ignored.
	Host string
	// Prefix is the path prefix, starting with "/". It matches whole path
	// segments: "/v1" matches /v1, /v1/ and /v1/tts but not /v10; "/v1/"
	// matches /v1/ and what is below it; "/" matches every path. The query
	// plays no part.
	Prefix string
	// Upstream is where matching requests go: an http:// or https:// base
	// URL (a path in it is kept as a prefix, as in Config.Upstream); ws://
	// and wss:// are the same as http:// and https:// (an upgrade is an
	// HTTP request); unix:/path/to.sock speaks HTTP over that Unix socket
	// and sends the request's path as it is.
	Upstream string
	// Strip takes Prefix off the path before it is sent: with Prefix "/v1",
	// /v1/tts?x=1 goes to the upstream as /tts?x=1, and /v1 as /.
	Strip bool
	// Insecure skips the verification of the upstream's TLS certificate:
	// for a local https:// or wss:// service with a self-signed certificate.
	// Only for those schemes.
	Insecure bool
}

// Rule options, after the URL in the flag syntax.
const (
	optStrip    = "strip"
	optInsecure = "insecure"
)

// ParseRule reads one rule in the flag syntax (see Rule). Its errors name the
// rule, with any password in its URL redacted.
func ParseRule(s string) (Rule, error) {
	fail := func(format string, args ...any) (Rule, error) {
		return Rule{}, fmt.Errorf("invalid route %q: %s", redactRule(s), fmt.Sprintf(format, args...))
	}
	match, target, ok := strings.Cut(s, "=")
	if !ok {
		return fail("want [HOST]/PREFIX=URL, e.g. /v1=http://127.0.0.1:8000")
	}
	slash := strings.IndexByte(match, '/')
	if slash < 0 {
		return fail("no path prefix: want [HOST]/PREFIX=URL; a rule for a whole host is HOST/=URL")
	}
	r := Rule{Host: match[:slash], Prefix: match[slash:]}
	opts := strings.Split(target, ",")
	r.Upstream = opts[0]
	for _, o := range opts[1:] {
		switch o {
		case optStrip:
			r.Strip = true
		case optInsecure:
			r.Insecure = true
		default:
			return fail("unknown option %q: want %s or %s", o, optStrip, optInsecure)
		}
	}
	if _, err := r.compile(); err != nil {
		return fail("%v", err)
	}
	return r, nil
}

// ParseRules reads rules in the flag syntax separated by white space or ';',
// as TUNNEL_ROUTE holds them. Empty s is no rule.
func ParseRules(s string) ([]Rule, error) {
	var rules []Rule
	for _, f := range strings.FieldsFunc(s, isRuleSeparator) {
		r, err := ParseRule(f)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func isRuleSeparator(c rune) bool {
	return c == ';' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// String is r in the flag syntax, with any password in its URL redacted: fit
// for logs.
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Host)
	b.WriteString(r.Prefix)
	b.WriteByte('=')
	b.WriteString(redactURL(r.Upstream))
	if r.Strip {
		b.WriteString("," + optStrip)
	}
	if r.Insecure {
		b.WriteString("," + optInsecure)
	}
	return b.String()
}

// redactURL is raw with its password hidden, or a placeholder when it does
// not parse (url.Parse's error would quote it whole).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// redactRule is a rule's text with the password of its URL hidden.
func redactRule(s string) string {
	match, target, ok := strings.Cut(s, "=")
	if !ok {
		return s
	}
	raw, opts, _ := strings.Cut(target, ",")
	if !strings.Contains(raw, "@") {
		return s
	}
	out := match + "=" + redactURL(raw)
	if opts != "" {
		out += "," + opts
	}
	return out
}

// route is a Rule ready to match and forward.
type route struct {
	rule     Rule
	host     string // lower case, without the "*." of a wildcard, without a final dot
	wildcard bool
	base     string // URL prefix of the upstream requests, without a trailing slash
	socket   string // the Unix socket's path, for unix: upstreams
	rt       http.RoundTripper
}

// compile checks r and returns its route, without a transport yet. Its
// errors do not repeat the rule.
func (r Rule) compile() (*route, error) {
	rt := &route{rule: r}
	host := strings.ToLower(r.Host)
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		rt.wildcard, host = true, rest
	}
	host = strings.TrimSuffix(host, ".")
	switch {
	case r.Host != "" && host == "":
		return nil, fmt.Errorf("host %q matches nothing: leave the host out to match any host", r.Host)
	case strings.ContainsAny(host, ":[]"):
		return nil, fmt.Errorf("host %q: give the name without a port (ports are ignored)", r.Host)
	case !validHost(host):
		return nil, fmt.Errorf("host %q: want a name such as api.example.com or *.example.com", r.Host)
	}
	rt.host = host

	switch {
	case !strings.HasPrefix(r.Prefix, "/"):
		return nil, fmt.Errorf("path prefix %q must start with /", r.Prefix)
	case strings.ContainsAny(r.Prefix, "?#; \t\r\n"):
		return nil, fmt.Errorf("path prefix %q must not hold '?', '#', ';' or spaces", r.Prefix)
	}

	if r.Upstream == "" {
		return nil, errors.New("no upstream URL")
	}
	u, err := url.Parse(r.Upstream)
	if err != nil {
		// url.Parse's error quotes the URL, password and all.
		return nil, errors.New("the upstream URL does not parse: want http://, https://, ws://, wss:// or unix:/path.sock")
	}
	switch u.Scheme {
	case "unix":
		if u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("upstream %s: want unix:/absolute/path/to.sock", redactURL(r.Upstream))
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("upstream %s: a socket path has no query or fragment", redactURL(r.Upstream))
		}
		if r.Insecure {
			return nil, fmt.Errorf("option %s applies to https:// and wss:// upstreams only", optInsecure)
		}
		// The socket is the address; the Host header is the one a local
		// server expects of a client on the same machine.
		rt.socket, rt.base = u.Path, "http://localhost"
		return rt, nil
	case "http", "ws":
		u.Scheme = "http"
	case "https", "wss":
		u.Scheme = "https"
	default:
		return nil, fmt.Errorf("upstream %s: want http://, https://, ws://, wss:// or unix:/path.sock", redactURL(r.Upstream))
	}
	switch {
	case u.Host == "":
		return nil, fmt.Errorf("upstream %s has no host", redactURL(r.Upstream))
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("upstream %s must not have a query or fragment", redactURL(r.Upstream))
	case r.Insecure && u.Scheme != "https":
		return nil, fmt.Errorf("option %s applies to https:// and wss:// upstreams only", optInsecure)
	}
	rt.base = strings.TrimSuffix(u.String(), "/")
	return rt, nil
}

// validHost: letters, digits, '-', '_' and dots between labels.
func validHost(h string) bool {
	if h == "" {
		return true
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// transport is the route's own: one pool of connections per upstream, never
// through a proxy (the service is local), compression left to the client.
func (rt *route) transport() http.RoundTripper {
	tr := defaultClient().Transport.(*http.Transport)
	if rt.socket != "" {
		d := &net.Dialer{Timeout: 30 * time.Second}
		socket := rt.socket
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		}
	}
	if rt.rule.Insecure {
		// The rule asked for it (option insecure): a local service with a
		// self-signed certificate. Verification is skipped for this
		// upstream only; every other upstream, and the relay, is verified.
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // the operator's explicit choice
	}
	return tr
}

// matches reports whether the rule takes a request for host (normalised by
// requestHost) and path (without its query).
func (rt *route) matches(host, path string) bool {
	switch {
	case rt.host == "":
	case rt.wildcard:
		if !strings.HasSuffix(host, "."+rt.host) {
			return false
		}
	case host != rt.host:
		return false
	}
	return prefixMatches(rt.rule.Prefix, path)
}

// prefixMatches: prefix matches path at a segment boundary.
func prefixMatches(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// target is the upstream URL of pathQuery (a path with its query, if any).
func (rt *route) target(pathQuery string) string {
	if rt.rule.Strip {
		rest := pathQuery[len(strings.TrimSuffix(rt.rule.Prefix, "/")):]
		if !strings.HasPrefix(rest, "/") {
			rest = "/" + rest
		}
		pathQuery = rest
	}
	return rt.base + pathQuery
}

// requestHost is the public host a request was sent to: the first host of
// X-Forwarded-Host (the relay writes the Host it saw there), else the Host
// header; lower case, without its port or a final dot.
func requestHost(h map[string][]string) string {
	host := headerValue(h, "X-Forwarded-Host")
	if host == "" {
		host = headerValue(h, "Host")
	}
	// Behind several proxies the first host is the client's.
	host, _, _ = strings.Cut(host, ",")
	host = strings.TrimSpace(host)
	if strings.HasPrefix(host, "[") {
		if end := strings.IndexByte(host, ']'); end > 0 {
			host = host[1:end]
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		host = host[:i]
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// headerValue is the first value of the header name in h, whatever the case
// of h's keys.
func headerValue(h map[string][]string, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}

// router is the transport of a Forwarder with rules (Forwarder.routes, whose
// client() is then Forwarder.client): it hands each request to the
// transport of the route upstreamRequest chose for it (carried in the
// request's context), and answers a request that matched no route itself,
// 404, without reaching any upstream. So a request built by upstreamRequest
// and sent with Forwarder.client goes where its rule says, an upgrade
// included (the route's *http.Transport returns a 101 whose Body is an
// io.ReadWriteCloser); one sent elsewhere, or to Forwarder.base, would not.
type router struct {
	routes []*route // in order, the catch-all (Config.Upstream) last
}

// routeKey is the context key of the route chosen for an upstream request:
// a *route, or a noRoute.
type routeKey struct{}

// noRoute is the answer's error text for a request that matched no route.
type noRoute string

// newRouter compiles rules and appends the catch-all base (none when
// empty), whose requests go through catchAll.
func newRouter(rules []Rule, base string, catchAll http.RoundTripper) (*router, error) {
	r := &router{}
	for _, rule := range rules {
		rt, err := rule.compile()
		if err != nil {
			return nil, fmt.Errorf("forward: route %q: %w", rule.String(), err)
		}
		rt.rt = rt.transport()
		r.routes = append(r.routes, rt)
	}
	if base != "" {
		r.routes = append(r.routes, &route{rule: Rule{Prefix: "/", Upstream: base}, base: base, rt: catchAll})
	}
	return r, nil
}

// client is the Forwarder's client over r.
func (r *router) client() *http.Client {
	return &http.Client{
		Transport:     r,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// pick chooses the route of a request with headers for pathQuery, the path
// with its query. It returns ctx carrying the choice, for RoundTrip, and the
// upstream URL.
func (r *router) pick(ctx context.Context, headers map[string][]string, pathQuery string) (context.Context, string) {
	host := requestHost(headers)
	path, _, _ := strings.Cut(pathQuery, "?")
	for _, rt := range r.routes {
		if rt.matches(host, path) {
			return context.WithValue(ctx, routeKey{}, rt), rt.target(pathQuery)
		}
	}
	// The query may carry tokens: it stays out of the answer.
	return context.WithValue(ctx, routeKey{}, noRoute("no route for "+host+path)), "http://no-route.invalid" + pathQuery
}

// RoundTrip implements http.RoundTripper.
func (r *router) RoundTrip(req *http.Request) (*http.Response, error) {
	switch v := req.Context().Value(routeKey{}).(type) {
	case *route:
		return v.rt.RoundTrip(req)
	case noRoute:
		if req.Body != nil {
			req.Body.Close()
		}
		body, _ := json.Marshal(struct {
			Error string `json:"error"`
		}{string(v)})
		return &http.Response{
			Status:        "404 Not Found",
			StatusCode:    http.StatusNotFound,
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(body))}},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
			Request:       req,
		}, nil
	}
	if req.Body != nil {
		req.Body.Close()
	}
	return nil, errors.New("forward: no route chosen for the request")
}

// CloseIdleConnections closes every upstream's idle connections.
func (r *router) CloseIdleConnections() {
	for _, rt := range r.routes {
		if c, ok := rt.rt.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}

// clientTransport makes a Config.Client the catch-all's transport.
type clientTransport struct{ c *http.Client }

func (t clientTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.c.Do(req)
	// The router's own client wraps the error again.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return resp, err
}

func (t clientTransport) CloseIdleConnections() { t.c.CloseIdleConnections() }
