package relay

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
	"github.com/enhanced-tunnel/tunnel/actors/relay/fleet"
	"github.com/enhanced-tunnel/tunnel/actors/relay/fleet/protoengine"
)

// Defaults of FleetConfig.
const (
	// DefaultClusterProvider is the membership provider of a fleet: etcd.
	DefaultClusterProvider = protoengine.ProviderEtcd
	// DefaultEtcdEndpoint is etcd's client address: 127.0.0.1:2379.
	DefaultEtcdEndpoint = "127.0.0.1:2379"
	// DefaultClusterListen is the node's cluster (gRPC) address:
	// 127.0.0.1:7946.
	DefaultClusterListen = "127.0.0.1:7946"
	// DefaultInternalListen is the node-to-node HTTP address:
	// 127.0.0.1:7947.
	DefaultInternalListen = "127.0.0.1:7947"
	// fleetHoldPoll is how often a request for a tunnel connected nowhere
	// looks again, while it waits for a session anywhere in the fleet.
	fleetHoldPoll = 250 * time.Millisecond
	// fleetLookupTimeout bounds one question to the directory; a grain
	// whose member just died is placed again meanwhile.
	fleetLookupTimeout = 2 * time.Second
	// hopDialTimeout bounds the connection to another node.
	hopDialTimeout = 2 * time.Second
	// hopIdleConns is how many idle connections to each node are kept.
	hopIdleConns = 256
)

// The headers of the internal hop. The receiving node removes them.
const (
	hopSecretHeader = "Tunnel-Fleet-Secret"
	hopPeerHeader   = "Tunnel-Fleet-Peer"  // the public request's TCP peer
	hopProtoHeader  = "Tunnel-Fleet-Proto" // http or https, as the client spoke
	// hopNoSessionHeader marks the answer of a node that has no session of
	// the tunnel any more: the front node tries another.
	hopNoSessionHeader = "Tunnel-Fleet-No-Session"
)

// FleetConfig makes a relay a node of a fleet (the fleet package): any
// node serves any tunnel, reverse-proxying a public request over the
// internal listener to a node that holds a session of its tunnel.
type FleetConfig struct {
	// Name is the cluster's name; empty runs the relay alone.
	Name string
	// Provider is "etcd" (DefaultClusterProvider) or "automanaged" (a
	// fixed list of Peers, polled over their internal listeners).
	Provider string
	// EtcdEndpoints, default DefaultEtcdEndpoint.
	EtcdEndpoints []string
	// Peers are the internal addresses of the automanaged members.
	Peers []string
	// Listen is the node's cluster address, default DefaultClusterListen;
	// port 0 picks a free one.
	Listen string
	// InternalListen is the node-to-node HTTP address, default
	// DefaultInternalListen; port 0 picks a free one. Other nodes reach the
	// node there, so its host must be a real address, not 0.0.0.0.
	InternalListen string
	// Secret authenticates the internal hop and the cluster's calls:
	// required in a fleet, at least auth.MinKeyBits of entropy, compared in
	// constant time, never logged.
	Secret string
	// Timing holds the directory's and watchdog's periods (fleet.Config;
	// Internal and Logger are set by the relay).
	Timing fleet.Config
}

// DefaultFleetConfig is a FleetConfig with every default and no name.
func DefaultFleetConfig() FleetConfig {
	return FleetConfig{
		Provider:       DefaultClusterProvider,
		EtcdEndpoints:  []string{DefaultEtcdEndpoint},
		Listen:         DefaultClusterListen,
		InternalListen: DefaultInternalListen,
		Timing:         fleet.DefaultConfig(),
	}
}

func (c FleetConfig) validate() error {
	if c.Name == "" {
		return nil
	}
	if c.Secret == "" {
		return errors.New("relay: a fleet needs a cluster secret (RELAY_CLUSTER_SECRET)")
	}
	if bits := auth.KeyBits(c.Secret); bits < auth.MinKeyBits {
		return fmt.Errorf("relay: the cluster secret has about %.0f bits of entropy, at least %d are needed", bits, auth.MinKeyBits)
	}
	timing := c.Timing
	timing.Internal = c.InternalListen
	if err := timing.Validate(); err != nil {
		return err
	}
	return c.engineConfig(c.InternalListen).Validate()
}

func (c FleetConfig) engineConfig(internal string) protoengine.Config {
	return protoengine.Config{
		Name: c.Name, Provider: c.Provider, EtcdEndpoints: c.EtcdEndpoints, Peers: c.Peers,
		Internal: internal, Listen: c.Listen, Secret: c.Secret,
	}
}

// fleetNode is what a relay in a fleet runs besides itself.
type fleetNode struct {
	fleet     *fleet.Fleet
	engine    *protoengine.Engine
	health    http.Handler // the automanaged provider's /_health, or nil
	listener  net.Listener
	server    *http.Server
	transport *http.Transport
	secret    []byte
}

// startFleet listens on the internal address and joins the fleet.
func startFleet(cfg Config) (*fleetNode, error) {
	fc := cfg.Fleet
	ln, err := net.Listen("tcp", fc.InternalListen)
	if err != nil {
		return nil, fmt.Errorf("relay: internal listener: %w", err)
	}
	internal := ln.Addr().String()
	ec := fc.engineConfig(internal)
	ec.Logger = newSlogLogger(cfg.Logger)
	engine, err := protoengine.Start(ec)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	timing := fc.Timing
	timing.Internal, timing.Logger = internal, cfg.Logger
	f, err := fleet.New(engine, timing)
	if err != nil {
		_ = engine.Close()
		_ = ln.Close()
		return nil, err
	}
	return &fleetNode{
		fleet:    f,
		engine:   engine,
		health:   engine.Health(),
		listener: ln,
		secret:   []byte(fc.Secret),
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: hopDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: hopIdleConns,
			IdleConnTimeout:     idleTimeout,
			// The body goes through as the upstream sent it.
			DisableCompression: true,
		},
	}, nil
}

// close leaves the fleet: its tunnels are deregistered within ctx.
func (n *fleetNode) close(ctx context.Context) error {
	n.transport.CloseIdleConnections()
	return n.fleet.Close(ctx)
}

// hopKey marks, in a request's context, a request another node handed
// over; its value is the protocol the client spoke.
type hopKey struct{}

// hopProto is the protocol of a handed-over request's client, or "".
func hopProto(req *http.Request) string {
	proto, _ := req.Context().Value(hopKey{}).(string)
	return proto
}

// serveInternal serves the internal listener: requests other nodes hand
// over, and the automanaged provider's /_health.
func (r *Relay) serveInternal(w http.ResponseWriter, req *http.Request) {
	if !r.handlers.enter() {
		writeError(w, http.StatusServiceUnavailable, "relay shutting down")
		return
	}
	defer r.handlers.leave()
	n := r.fleet
	if req.URL.Path == "/_health" && n.health != nil {
		n.health.ServeHTTP(w, req)
		return
	}
	if subtle.ConstantTimeCompare([]byte(req.Header.Get(hopSecretHeader)), n.secret) != 1 {
		r.log.WithField("peer", req.RemoteAddr).Warn("Fleet hop refused: wrong or missing cluster secret")
		writeError(w, http.StatusForbidden, "wrong or missing cluster secret")
		return
	}
	proto := "http"
	if req.Header.Get(hopProtoHeader) == "https" {
		proto = "https"
	}
	if peer := req.Header.Get(hopPeerHeader); peer != "" {
		req.RemoteAddr = peer
	}
	for _, h := range []string{hopSecretHeader, hopPeerHeader, hopProtoHeader} {
		req.Header.Del(h)
	}
	r.serveProxy(w, req.WithContext(context.WithValue(req.Context(), hopKey{}, proto)))
}

// serveFleet answers GET /fleet on the admin listener: this node's view of
// its fleet, and with ?tunnel=NAME the directory's routes of that tunnel.
func (r *Relay) serveFleet(w http.ResponseWriter, req *http.Request) {
	f := r.fleet.fleet
	members := f.Members()
	slices.Sort(members)
	view := map[string]any{
		"cluster":  r.cfg.Fleet.Name,
		"node":     f.Self(),
		"internal": r.fleet.listener.Addr().String(),
		"joined":   f.Joined(),
		"members":  members,
		"sessions": f.Sessions(),
	}
	if tunnel := req.URL.Query().Get("tunnel"); tunnel != "" {
		ctx, cancel := context.WithTimeout(req.Context(), fleetLookupTimeout)
		defer cancel()
		routes, err := f.Lookup(ctx, tunnel)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		list := make([]map[string]any, 0, len(routes))
		for _, rt := range routes {
			list = append(list, map[string]any{"node": rt.Node, "internal": rt.Internal, "sessions": rt.Sessions})
		}
		view["routes"] = list
	}
	writeJSON(w, http.StatusOK, view)
}

// errNoSession is a node's answer that it has no session of the tunnel.
var errNoSession = errors.New("node has no session of the tunnel")

// hop serves p through another node when this one has no session of its
// tunnel, and says whether it did (answered the client, one way or
// another). Without a session anywhere it waits, as a lone relay holds a
// request, up to Config.HoldTimeout for one anywhere in the fleet. A hop
// that fails before the response goes to another node (or this one, once
// it has a session) by the router's rules: always when the request never
// reached a node's supervisor side (no connection, or the node had no
// session), once more when it did, is idempotent and its body is in
// memory; otherwise the client is answered 502. A streamed body read by a
// failed hop cannot be sent again.
func (r *Relay) hop(p *proxyCall, inline []byte, stream io.Reader) bool {
	f := r.fleet.fleet
	ctx := p.req.Context()
	deadline := time.Now().Add(r.cfg.HoldTimeout)
	if stream != nil && f.Local(p.tunnel) == 0 {
		// The response may start before the upload ends, as on the local
		// path: without full duplex net/http would close the body then.
		p.duplex = p.rc.EnableFullDuplex() == nil
	}
	var (
		reached  bool // a node may have passed the request on
		retried  bool // it was sent again after that
		consumed bool // a failed hop read from the streamed body
	)
	again := func() bool {
		return !consumed && (!reached || !retried && stream == nil && idempotent(p.req.Method))
	}
	lost := func() bool {
		p.fail(http.StatusBadGateway, "tunnel lost before the response")
		return true
	}
	for {
		if f.Local(p.tunnel) > 0 {
			if !again() {
				return lost()
			}
			return false
		}
		lookup, cancel := context.WithTimeout(ctx, fleetLookupTimeout)
		routes, err := f.Routes(lookup, p.tunnel)
		cancel()
		if err != nil {
			r.log.WithError(err).WithField("tunnel", p.tunnel).Debug("Fleet lookup failed")
		}
		for _, route := range routes {
			if !again() {
				return lost()
			}
			retried = reached
			err := r.hopTo(p, route, inline, stream)
			switch {
			case err == nil:
				return true
			case ctx.Err() != nil:
				p.status = clientGone
				return true
			case isDial(err):
				f.Failed(route.Node)
			case errors.Is(err, errNoSession):
				f.Stale(p.tunnel)
				consumed = stream != nil
			default:
				f.Failed(route.Node)
				r.log.WithError(err).WithFields(logrus.Fields{"tunnel": p.tunnel, "node": route.Node}).Warn("Fleet hop failed")
				reached, consumed = true, stream != nil
			}
		}
		if f.Local(p.tunnel) > 0 {
			continue
		}
		if !time.Now().Before(deadline) {
			if reached || consumed {
				return lost()
			}
			p.fail(http.StatusServiceUnavailable, fmt.Sprintf("no tunnel %q connected", p.tunnel))
			return true
		}
		select {
		case <-ctx.Done():
			p.status = clientGone
			return true
		case <-r.draining:
			// As the router answers the requests it holds.
			p.fail(http.StatusServiceUnavailable, "relay shutting down")
			return true
		case <-time.After(min(fleetHoldPoll, time.Until(deadline))):
		}
	}
}

// idempotent says whether a request may be sent twice (RFC 9110 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// isDial says whether err is a failure to connect: nothing was sent.
func isDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// hopTo reverse-proxies p to route's node. A nil error means the client
// was answered (or cut off mid-response); an error, that nothing was
// written to it.
func (r *Relay) hopTo(p *proxyCall, route fleet.Route, inline []byte, stream io.Reader) error {
	done := r.fleet.fleet.Hop(route.Node)
	defer done()
	req := p.req
	if stream != nil {
		req.Body = io.NopCloser(stream)
	} else {
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(inline)), int64(len(inline))
	}
	proto := "http"
	if req.TLS != nil || hopProto(req) == "https" {
		proto = "https"
	}
	var failed error
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", route.Internal
			// The next node reads the client as this one would have.
			for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v := pr.In.Header.Values(h); len(v) > 0 {
					pr.Out.Header[h] = v
				}
			}
			pr.Out.Header.Set(hopSecretHeader, string(r.fleet.secret))
			pr.Out.Header.Set(hopPeerHeader, req.RemoteAddr)
			pr.Out.Header.Set(hopProtoHeader, proto)
		},
		Transport:     r.fleet.transport,
		FlushInterval: -1,
		ErrorLog:      r.srv.ErrorLog,
		ModifyResponse: func(res *http.Response) error {
			if res.Header.Get(hopNoSessionHeader) != "" {
				return errNoSession
			}
			return nil
		},
		ErrorHandler: func(_ http.ResponseWriter, _ *http.Request, err error) { failed = err },
	}
	w := &hopWriter{ResponseWriter: p.w, p: p}
	rp.ServeHTTP(w, req)
	if failed != nil {
		return failed
	}
	r.metrics.hops.Inc()
	return nil
}

// hopWriter records the status of a handed-over response and gives each
// write to the client the send timeout.
type hopWriter struct {
	http.ResponseWriter
	p *proxyCall
}

func (w *hopWriter) WriteHeader(code int) {
	if code >= http.StatusOK && w.p.status == 0 {
		w.p.status = code
	}
	w.p.armWrite()
	w.ResponseWriter.WriteHeader(code)
}

func (w *hopWriter) Write(b []byte) (int, error) {
	if w.p.status == 0 {
		w.p.status = http.StatusOK
	}
	w.p.armWrite()
	return w.ResponseWriter.Write(b)
}

func (w *hopWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// noSession answers a handed-over request for a tunnel this node has no
// session of any more: the front node tries another.
func (p *proxyCall) noSession() {
	p.w.Header().Set(hopNoSessionHeader, "1")
	p.fail(http.StatusServiceUnavailable, fmt.Sprintf("no tunnel %q connected at this node", p.tunnel))
}
