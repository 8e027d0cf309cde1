package forward

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/messages"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		in      string
		want    Rule
		wantErr string // part of the error; "" for none
	}{
		{in: "/v1/tts=http://127.0.0.1:8000", want: Rule{Prefix: "/v1/tts", Upstream: "http://127.0.0.1:8000"}},
		{in: "/ws=ws://127.0.0.1:8001", want: Rule{Prefix: "/ws", Upstream: "ws://127.0.0.1:8001"}},
		{in: "api.example.com/=unix:/run/api.sock", want: Rule{Host: "api.example.com", Prefix: "/", Upstream: "unix:/run/api.sock"}},
		{in: "/x=unix:///run/x.sock", want: Rule{Prefix: "/x", Upstream: "unix:///run/x.sock"}},
		{in: "*.Example.com/v1=https://127.0.0.1:8443/base/,strip,insecure",
			want: Rule{Host: "*.Example.com", Prefix: "/v1", Upstream: "https://127.0.0.1:8443/base/", Strip: true, Insecure: true}},
		{in: "/v1=wss://127.0.0.1:8443,insecure", want: Rule{Prefix: "/v1", Upstream: "wss://127.0.0.1:8443", Insecure: true}},
		{in: "/=http://u:pw@127.0.0.1:1,strip", want: Rule{Prefix: "/", Upstream: "http://u:pw@127.0.0.1:1", Strip: true}},

		{in: "/v1", wantErr: "want [HOST]/PREFIX=URL"},
		{in: "api.example.com=http://127.0.0.1:1", wantErr: "no path prefix"},
		{in: "/v1=", wantErr: "no upstream URL"},
		{in: "/v1=ftp://127.0.0.1:1", wantErr: "want http://, https://, ws://, wss:// or unix:/path.sock"},
		{in: "/v1=127.0.0.1:8000", wantErr: "want http://"},
		{in: "/v1=http://", wantErr: "has no host"},
		{in: "/v1=http://127.0.0.1:1/?q=1", wantErr: "query or fragment"},
		{in: "/v1=http://127.0.0.1:1,insecure", wantErr: "https:// and wss:// upstreams only"},
		{in: "/v1=unix:/run/a.sock,insecure", wantErr: "https:// and wss:// upstreams only"},
		{in: "/v1=unix:run/a.sock", wantErr: "unix:/absolute/path"},
		{in: "/v1=unix://host/run/a.sock", wantErr: "unix:/absolute/path"},
		{in: "/v1=http://127.0.0.1:1,gzip", wantErr: `unknown option "gzip"`},
		{in: "/v1=http://127.0.0.1:1,", wantErr: `unknown option ""`},
		{in: "api.example.com:443/=http://127.0.0.1:1", wantErr: "without a port"},
		{in: "*/=http://127.0.0.1:1", wantErr: "want a name"},
		{in: "*./=http://127.0.0.1:1", wantErr: "matches nothing"},
		{in: "a..b/=http://127.0.0.1:1", wantErr: "want a name"},
		{in: "/v1?x=http://127.0.0.1:1", wantErr: "must not hold"},
		{in: "/v1=http://[::1", wantErr: "does not parse"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRule(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "invalid route ") {
					t.Errorf("error %q does not name the rule", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ParseRule = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRuleErrorsAndStringHideThePassword(t *testing.T) {
	const pw = "hunter2-upstream-pw"
	_, err := ParseRule("/v1=http://user:" + pw + "@127.0.0.1:1/?q,strip")
	if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "user:xxxxx@127.0.0.1:1") {
		t.Errorf("error %v: want the rule named, without the password", err)
	}
	_, err = ParseRule("/v1=http://user:" + pw + "@[::1,strip")
	if err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("error %v: the password leaked", err)
	}
	r := Rule{Host: "a.example", Prefix: "/v1", Upstream: "https://user:" + pw + "@127.0.0.1:1", Strip: true, Insecure: true}
	if s := r.String(); s != "a.example/v1=https://user:xxxxx@127.0.0.1:1,strip,insecure" {
		t.Errorf("String = %q", s)
	}
	_, err = New(Config{Routes: []Rule{{Prefix: "/v1", Upstream: "ftp://user:" + pw + "@127.0.0.1:1"}}})
	if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), `route "/v1=ftp://user:xxxxx@127.0.0.1:1"`) {
		t.Errorf("New: %v: want the rule named, without the password", err)
	}
}

func TestParseRules(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string // each rule's String
		wantErr string
	}{
		{in: "", want: nil},
		{in: "  ; ;\n", want: nil},
		{in: "/a=http://127.0.0.1:1", want: []string{"/a=http://127.0.0.1:1"}},
		{in: "/a=http://127.0.0.1:1 /b=ws://127.0.0.1:2,strip;api.example/=unix:/run/api.sock\n\t/c=https://h:3,insecure",
			want: []string{"/a=http://127.0.0.1:1", "/b=ws://127.0.0.1:2,strip", "api.example/=unix:/run/api.sock", "/c=https://h:3,insecure"}},
		{in: "/a=http://127.0.0.1:1; /b=nope://x", wantErr: `invalid route "/b=nope://x"`},
	} {
		rules, err := ParseRules(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseRules(%q) error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRules(%q): %v", tc.in, err)
			continue
		}
		var got []string
		for _, r := range rules {
			got = append(got, r.String())
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("ParseRules(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func mustRules(t *testing.T, specs ...string) []Rule {
	t.Helper()
	var rules []Rule
	for _, s := range specs {
		r, err := ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	return rules
}

func TestRoutePicking(t *testing.T) {
	rules := mustRules(t,
		"api.example.com/=http://127.0.0.1:1/api",
		"*.example.com/v1=http://127.0.0.1:2,strip",
		"/v1/tts=http://127.0.0.1:3",
		"/v1=ws://127.0.0.1:4/base/,strip",
		"/static/=unix:/run/static.sock",
		"/s/=http://127.0.0.1:5,strip",
	)
	withCatchAll, err := newRouter(rules, "http://127.0.0.1:9/root", http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	without, err := newRouter(rules, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		headers map[string][]string
		path    string
		want    string // upstream URL; "" for no route (with no catch-all)
		catch   string // upstream URL with the catch-all, when not want
	}{
		{name: "exact host, any path", headers: map[string][]string{"X-Forwarded-Host": {"api.example.com"}}, path: "/v1/tts?x=1",
			want: "http://127.0.0.1:1/api/v1/tts?x=1"},
		{name: "host case and port ignored", headers: map[string][]string{"X-Forwarded-Host": {"API.Example.COM:8443"}}, path: "/",
			want: "http://127.0.0.1:1/api/"},
		{name: "host with a final dot", headers: map[string][]string{"X-Forwarded-Host": {"api.example.com."}}, path: "/x",
			want: "http://127.0.0.1:1/api/x"},
		{name: "first of several forwarded hosts", headers: map[string][]string{"X-Forwarded-Host": {"api.example.com, proxy.internal"}}, path: "/x",
			want: "http://127.0.0.1:1/api/x"},
		{name: "header keys in any case", headers: map[string][]string{"x-forwarded-host": {"api.example.com"}}, path: "/x",
			want: "http://127.0.0.1:1/api/x"},
		{name: "Host when no X-Forwarded-Host", headers: map[string][]string{"Host": {"api.example.com"}}, path: "/x",
			want: "http://127.0.0.1:1/api/x"},
		{name: "X-Forwarded-Host wins over Host", headers: map[string][]string{"X-Forwarded-Host": {"other.test"}, "Host": {"api.example.com"}}, path: "/v1/tts",
			want: "http://127.0.0.1:3/v1/tts"},
		{name: "wildcard, stripped", headers: map[string][]string{"X-Forwarded-Host": {"a.b.example.com"}}, path: "/v1/x?q",
			want: "http://127.0.0.1:2/x?q"},
		{name: "wildcard does not match the apex", headers: map[string][]string{"X-Forwarded-Host": {"example.com"}}, path: "/v1/tts",
			want: "http://127.0.0.1:3/v1/tts"},
		{name: "wildcard does not match a lookalike", headers: map[string][]string{"X-Forwarded-Host": {"badexample.com"}}, path: "/v1/tts",
			want: "http://127.0.0.1:3/v1/tts"},
		{name: "first match wins", path: "/v1/tts/stream", want: "http://127.0.0.1:3/v1/tts/stream"},
		{name: "exact prefix", path: "/v1/tts", want: "http://127.0.0.1:3/v1/tts"},
		{name: "segment boundary", path: "/v1/ttsx", want: "http://127.0.0.1:4/base/ttsx"},
		{name: "stripped to the root", path: "/v1", want: "http://127.0.0.1:4/base/"},
		{name: "stripped, query kept", path: "/v1?a=b", want: "http://127.0.0.1:4/base/?a=b"},
		{name: "not a prefix at a boundary", path: "/v10", catch: "http://127.0.0.1:9/root/v10"},
		{name: "unix socket, path as is", path: "/static/app.js?v=2", want: "http://localhost/static/app.js?v=2"},
		{name: "prefix with a final slash", path: "/static", catch: "http://127.0.0.1:9/root/static"},
		{name: "prefix with a final slash, stripped", path: "/s/a/b", want: "http://127.0.0.1:5/a/b"},
		{name: "prefix with a final slash, exact", path: "/s/", want: "http://127.0.0.1:5/"},
		{name: "nothing matches", path: "/other", catch: "http://127.0.0.1:9/root/other"},
		{name: "case of the path matters", path: "/V1/tts", catch: "http://127.0.0.1:9/root/V1/tts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, got := without.pick(context.Background(), tc.headers, tc.path)
			_, isRoute := ctx.Value(routeKey{}).(*route)
			switch {
			case tc.want != "" && (got != tc.want || !isRoute):
				t.Errorf("without a catch-all: %q (route %v), want %q", got, isRoute, tc.want)
			case tc.want == "" && isRoute:
				t.Errorf("without a catch-all: routed to %q, want no route", got)
			}
			want := tc.want
			if want == "" {
				want = tc.catch
			}
			if _, got := withCatchAll.pick(context.Background(), tc.headers, tc.path); got != want {
				t.Errorf("with a catch-all: %q, want %q", got, want)
			}
		})
	}
}

// send forwards one request through f and returns what was sent back.
func send(t *testing.T, f *Forwarder, headers map[string][]string, path string) sent {
	t.Helper()
	s := newFakeSender()
	<-handle(context.Background(), f, s, &messages.TunnelMessage{Type: messages.TypeRequest, MessageID: "m", Method: http.MethodPost,
		Path: path, Headers: headers, Body: []byte("body")})
	return <-s.sent
}

// named answers with its name and the request URI it got.
func named(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Upstream", name)
		io.WriteString(w, name+" "+r.Host+" "+r.RequestURI)
	}
}

func unixUpstream(t *testing.T, h http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fwd") // short: a socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "up.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestRoutesReachTheirUpstreams(t *testing.T) {
	a := upstream(t, named("a"))
	b := upstream(t, named("b"))
	catch := upstream(t, named("catch"))
	tlsUp := httptest.NewUnstartedServer(named("tls"))
	tlsUp.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake of "verified"
	tlsUp.StartTLS()
	t.Cleanup(tlsUp.Close)
	sock := unixUpstream(t, named("unix"))

	rules := mustRules(t,
		"api.example.com/=unix:"+sock,
		"/a=http://"+a.Listener.Addr().String(),
		"/b/=ws://"+b.Listener.Addr().String()+"/inner,strip",
		"/tls=wss://"+tlsUp.Listener.Addr().String()+",insecure",
		"/verified=https://"+tlsUp.Listener.Addr().String(),
	)
	obs := &observer{}
	f, err := New(Config{Upstream: catch.URL, Routes: rules, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)

	for _, tc := range []struct {
		name    string
		host    string
		path    string
		want    string // the answer's body
		wantErr string // for a 502: part of its error
	}{
		{name: "http", path: "/a/x?q=1", want: "a " + a.Listener.Addr().String() + " /a/x?q=1"},
		{name: "ws, stripped", path: "/b/x?q=1", want: "b " + b.Listener.Addr().String() + " /inner/x?q=1"},
		{name: "unix socket by host", host: "API.example.com:443", path: "/a/x", want: "unix localhost /a/x"},
		{name: "self-signed, insecure", path: "/tls/y", want: "tls " + tlsUp.Listener.Addr().String() + " /tls/y"},
		{name: "self-signed, verified", path: "/verified", wantErr: "certificate"},
		{name: "catch-all", path: "/ab", want: "catch " + catch.Listener.Addr().String() + " /ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string][]string{}
			if tc.host != "" {
				h["X-Forwarded-Host"] = []string{tc.host}
			}
			out := send(t, f, h, tc.path)
			if tc.wantErr != "" {
				if out.msg.Status != http.StatusBadGateway || !strings.Contains(errorBody(t, out.body), tc.wantErr) {
					t.Fatalf("%d %s, want 502 with %q", out.msg.Status, out.body, tc.wantErr)
				}
				return
			}
			if out.msg.Status != http.StatusOK || string(out.body) != tc.want {
				t.Fatalf("%d %q, want 200 %q", out.msg.Status, out.body, tc.want)
			}
		})
	}
}

func TestNoRouteIs404WithoutReachingAnUpstream(t *testing.T) {
	reached := make(chan string, 8)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { reached <- r.RequestURI })
	obs := &observer{}
	f, err := New(Config{Routes: mustRules(t, "/v1=http://"+up.Listener.Addr().String(), "api.example.com/=http://"+up.Listener.Addr().String()),
		Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	out := send(t, f, map[string][]string{"X-Forwarded-Host": {"www.example.com"}}, "/v2/tts?token=secret")
	if out.msg.Status != http.StatusNotFound || http.Header(out.msg.Headers).Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %v, want a 404 JSON answer", out.msg.Status, out.msg.Headers)
	}
	if msg := errorBody(t, out.body); msg != "no route for www.example.com/v2/tts" {
		t.Errorf("error %q", msg)
	}
	if r := obs.only(t); r.Status != http.StatusNotFound || r.BytesIn != 0 {
		t.Errorf("result %+v, want 404 with no body sent anywhere", r)
	}
	if len(reached) != 0 {
		t.Errorf("the upstream was reached with %s", <-reached)
	}
}

func TestRoutesWithAClientForTheCatchAll(t *testing.T) {
	routed := upstream(t, named("routed"))
	var used int
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used++
		return nil, errors.New("catch-all refused")
	})}
	f, err := New(Config{Upstream: "http://127.0.0.1:1", Client: client, Routes: mustRules(t, "/r=http://"+routed.Listener.Addr().String())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	if out := send(t, f, nil, "/r"); out.msg.Status != http.StatusOK {
		t.Errorf("routed request: %d %s", out.msg.Status, out.body)
	}
	out := send(t, f, nil, "/other")
	if out.msg.Status != http.StatusBadGateway || errorBody(t, out.body) != "upstream: catch-all refused" || used != 1 {
		t.Errorf("catch-all request: %d %s, client used %d times; want a 502 from the given client", out.msg.Status, out.body, used)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNewWithRoutes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		upstream string
		routes   []Rule
		wantErr  string
	}{
		{name: "routes without a catch-all", routes: []Rule{{Prefix: "/", Upstream: "unix:/run/x.sock"}}},
		{name: "routes and a catch-all", upstream: "http://127.0.0.1:1", routes: []Rule{{Prefix: "/v1", Upstream: "https://h:1", Insecure: true}}},
		{name: "neither", wantErr: "http:// or https://"},
		{name: "bad catch-all", upstream: "ws://127.0.0.1:1", routes: []Rule{{Prefix: "/", Upstream: "http://h:1"}}, wantErr: "http:// or https://"},
		{name: "bad rule", routes: []Rule{{Prefix: "/a", Upstream: "http://h:1"}, {Prefix: "b", Upstream: "http://h:1"}}, wantErr: `route "b=http://h:1": path prefix "b" must start with /`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := New(Config{Upstream: tc.upstream, Routes: tc.routes})
			if f != nil {
				f.Close()
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("New error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// An upgrade sent with the Forwarder's client through a route comes back as
// the route transport's 101 with a writable body, as with a plain
// *http.Transport: the WebSocket forwarding can use the routes as they are.
func TestUpgradeThroughARouteKeepsAWritableBody(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "test" || r.URL.Path != "/up" {
			http.Error(w, "want an upgrade to /up", http.StatusBadRequest)
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo " + line)
		rw.Flush()
	})
	f, err := New(Config{Routes: mustRules(t, "/ws=ws://"+up.Listener.Addr().String()+",strip")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	ctx, target := f.routes.pick(context.Background(), nil, "/ws/up")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "test")
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		t.Fatalf("status %d, writable body %v; want 101 and a writable body", resp.StatusCode, ok)
	}
	io.WriteString(rwc, "hello\n")
	got, _ := io.ReadAll(io.LimitReader(rwc, int64(len("echo hello\n"))))
	if string(got) != "echo hello\n" {
		t.Errorf("through the upgraded connection: %q", got)
	}
}
