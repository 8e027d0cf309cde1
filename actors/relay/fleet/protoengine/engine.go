package protoengine

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/labstack/echo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/enhanced-tunnel/tunnel/actors/relay/fleet/protoengine/directory"
	fleetv1 "github.com/enhanced-tunnel/tunnel/messages/fleet/v1"
	"github.com/enhanced-tunnel/tunnel/messages/fleetmsg"
)

const (
	// Kind is the grain kind of the tunnel directory, versioned with its
	// messages' package.
	Kind = "tunnel-directory.v1"
	// MaxMessage is the gRPC message limit of the remote, both ways: 64 MiB
	// (protoactor-go keeps gRPC's 4 MiB, past which a batch is dropped).
	MaxMessage = 64 << 20
	// ProviderEtcd and ProviderAutomanaged name the cluster providers.
	ProviderEtcd        = "etcd"
	ProviderAutomanaged = "automanaged"
	// DefaultEtcdPrefix is the key prefix of the members in etcd.
	DefaultEtcdPrefix = "/enhanced-tunnel"
	// automanagedRefresh is how often an automanaged member polls the others.
	automanagedRefresh = time.Second
	// secretHeader is the gRPC metadata key of the cluster secret.
	secretHeader = "tunnel-fleet-secret"
	// etcdDialTimeout bounds the first connection to etcd.
	etcdDialTimeout = 5 * time.Second
)

// ErrStart wraps why a member could not start.
var ErrStart = errors.New("fleet: cluster member did not start")

// Config configures the engine.
type Config struct {
	// Name is the cluster's name; members of other names are ignored.
	Name string
	// Provider is ProviderEtcd or ProviderAutomanaged.
	Provider string
	// EtcdEndpoints are the etcd client URLs (ProviderEtcd).
	EtcdEndpoints []string
	// EtcdPrefix, default DefaultEtcdPrefix.
	EtcdPrefix string
	// Peers are the internal HTTP addresses of the automanaged members,
	// host:port; this node's is added when missing (ProviderAutomanaged).
	Peers []string
	// Internal is this node's internal HTTP address, where an automanaged
	// member answers GET /_health (see Engine.Health).
	Internal string
	// Listen is the cluster (gRPC) address of this member, host:port; port
	// 0 picks a free one.
	Listen string
	// Secret, if set, authenticates every gRPC call between members.
	Secret string
	// Logger receives protoactor-go's records.
	Logger *slog.Logger
}

// Validate says what is wrong with c, if anything.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("fleet: the cluster needs a name")
	case c.Provider == ProviderEtcd && len(c.EtcdEndpoints) == 0:
		return errors.New("fleet: the etcd provider needs at least one etcd endpoint")
	case c.Provider != ProviderEtcd && c.Provider != ProviderAutomanaged:
		return fmt.Errorf("fleet: cluster provider %q is neither %s nor %s", c.Provider, ProviderEtcd, ProviderAutomanaged)
	}
	if _, _, err := splitHostPort(c.Listen); err != nil {
		return fmt.Errorf("fleet: cluster address %q: %w", c.Listen, err)
	}
	for _, p := range c.Peers {
		if _, _, err := splitHostPort(p); err != nil {
			return fmt.Errorf("fleet: cluster peer %q: %w", p, err)
		}
	}
	return nil
}

// Engine is a running member. Create it with Start, end it with Close.
type Engine struct {
	cfg      Config
	topology chan struct{}

	mu  sync.Mutex
	cur *member // nil once closed
}

// member is one incarnation: an actor system with its own id.
type member struct {
	system  *actor.ActorSystem
	cluster *cluster.Cluster
	sub     *eventstream.Subscription
	node    *automanaged.NodeModel // the automanaged /_health answer
	// members is the member set of the last topology event: protoactor-go's
	// MemberList is read without its lock (a data race), so it is not asked.
	members atomic.Pointer[map[string]bool]
}

func (m *member) isMember(id string) bool {
	set := m.members.Load()
	return set != nil && (*set)[id]
}

var _ fleetmsg.Engine = (*Engine)(nil)

// Start joins the cluster as a new member.
func Start(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.EtcdPrefix == "" {
		cfg.EtcdPrefix = DefaultEtcdPrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, topology: make(chan struct{}, 1)}
	m, err := e.join()
	if err != nil {
		return nil, err
	}
	e.cur = m
	return e, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// join starts a new actor system and makes it a member.
func (e *Engine) join() (m *member, err error) {
	host, port, _ := splitHostPort(e.cfg.Listen)
	logger := e.cfg.Logger
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
	provider, node := e.provider()
	opts := []remote.ConfigOption{
		remote.WithServerOptions(e.serverOptions()...),
		remote.WithDialOptions(e.dialOptions()...),
	}
	m = &member{system: system}
	kind := cluster.NewKind(Kind, actor.PropsFromProducer(func() actor.Actor {
		return directory.New(directory.Config{IsMember: m.isMember})
	}))
	c := cluster.New(system, cluster.Configure(e.cfg.Name, provider, disthash.New(),
		remote.Configure(host, port, opts...), cluster.WithKinds(kind)))
	m.cluster = c
	// Subscribed before the start, so that the first topology is seen.
	m.sub = system.EventStream.Subscribe(func(ev any) {
		topology, ok := ev.(*cluster.ClusterTopology)
		if !ok {
			return
		}
		set := make(map[string]bool, len(topology.Members))
		for _, mem := range topology.Members {
			set[mem.Id] = true
		}
		m.members.Store(&set)
		select {
		case e.topology <- struct{}{}:
		default:
		}
	})
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrStart, p)
			m = nil
			if c.Remote != nil { // started before the provider failed
				c.Remote.Shutdown(false)
			}
			system.Shutdown()
		}
	}()
	c.StartMember()
	if node != nil {
		h, p, _ := c.ActorSystem.GetHostPort()
		node.ID, node.Address, node.Port, node.Kinds = system.ID, h, p, c.GetClusterKinds()
		m.node = node
	}
	return m, nil
}

// provider builds the cluster provider; for automanaged, also the node
// its /_health answers with (filled once the member has started).
func (e *Engine) provider() (cluster.ClusterProvider, *automanaged.NodeModel) {
	if e.cfg.Provider == ProviderEtcd {
		return &etcdProvider{prefix: e.cfg.EtcdPrefix, endpoints: e.cfg.EtcdEndpoints}, nil
	}
	hosts := append([]string(nil), e.cfg.Peers...)
	if !contains(hosts, e.cfg.Internal) {
		hosts = append(hosts, e.cfg.Internal)
	}
	_, managePort, _ := splitHostPort(e.cfg.Internal)
	// The provider would serve /_health itself on 0.0.0.0:port; the
	// relay's internal listener serves it instead (Health), and the
	// provider's own server is given a listener that never accepts.
	server := echo.New()
	server.HideBanner, server.HidePort = true, true
	server.Listener = newParked()
	node := &automanaged.NodeModel{ClusterName: e.cfg.Name, AutoManagePort: managePort}
	return automanaged.NewWithTesting(automanagedRefresh, managePort, server, hosts...), node
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (e *Engine) serverOptions() []grpc.ServerOption {
	check := func(ctx context.Context) error {
		if e.cfg.Secret == "" {
			return nil
		}
		md, _ := metadata.FromIncomingContext(ctx)
		for _, v := range md.Get(secretHeader) {
			if subtle.ConstantTimeCompare([]byte(v), []byte(e.cfg.Secret)) == 1 {
				return nil
			}
		}
		return status.Error(codes.Unauthenticated, "fleet: wrong or missing cluster secret")
	}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessage), grpc.MaxSendMsgSize(MaxMessage),
		// protoactor-go's remote serves two unary methods it never
		// implemented: they panic, which ends the process. Nobody is
		// served them; the cluster's traffic is the Receive stream.
		grpc.UnaryInterceptor(func(ctx context.Context, _ any, _ *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
			if err := check(ctx); err != nil {
				return nil, err
			}
			return nil, status.Error(codes.Unimplemented, "fleet: not served")
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

func (e *Engine) dialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
	}
	if e.cfg.Secret != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(secretCreds(e.cfg.Secret)))
	}
	return opts
}

// secretCreds puts the cluster secret on every call.
type secretCreds string

func (s secretCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{secretHeader: string(s)}, nil
}

func (secretCreds) RequireTransportSecurity() bool { return false }

func (e *Engine) member() (*member, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur == nil {
		return nil, fleetmsg.ErrClosed
	}
	return e.cur, nil
}

// Self is the member id of the current incarnation.
func (e *Engine) Self() string {
	m, err := e.member()
	if err != nil {
		return ""
	}
	return e.memberID(m)
}

// memberID is m's id in the member list: the etcd provider names members
// "cluster@id", the automanaged one by the actor system's id.
func (e *Engine) memberID(m *member) string {
	if e.cfg.Provider == ProviderEtcd {
		return e.cfg.Name + "@" + m.system.ID
	}
	return m.system.ID
}

// Joined says whether the member is in its own member list.
func (e *Engine) Joined() bool {
	m, err := e.member()
	return err == nil && m.isMember(e.memberID(m))
}

// Members are the ids of the members this member knows.
func (e *Engine) Members() []string {
	m, err := e.member()
	if err != nil {
		return nil
	}
	set := m.members.Load()
	if set == nil {
		return nil
	}
	return slices.Collect(maps.Keys(*set))
}

// Addr is the cluster address of the current incarnation, host:port.
func (e *Engine) Addr() string {
	m, err := e.member()
	if err != nil {
		return ""
	}
	return m.system.Address()
}

// Topology is signalled on each topology event of the current member.
func (e *Engine) Topology() <-chan struct{} { return e.topology }

// Rejoin leaves the cluster and joins it again with a new member id.
func (e *Engine) Rejoin() error {
	e.mu.Lock()
	old := e.cur
	e.mu.Unlock()
	if old == nil {
		return fleetmsg.ErrClosed
	}
	old.leave()
	m, err := e.join()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur == nil { // closed meanwhile
		if m != nil {
			m.leave()
		}
		return fleetmsg.ErrClosed
	}
	if err != nil {
		return err
	}
	e.cur = m
	select {
	case e.topology <- struct{}{}:
	default:
	}
	return nil
}

// Close leaves the cluster.
func (e *Engine) Close() error {
	e.mu.Lock()
	m := e.cur
	e.cur = nil
	e.mu.Unlock()
	if m == nil {
		return fleetmsg.ErrClosed
	}
	m.leave()
	return nil
}

// leave stops the member without waiting for a handover: the directory is
// soft state that nodes register again.
func (m *member) leave() {
	m.system.EventStream.Unsubscribe(m.sub)
	m.cluster.Shutdown(true)
}

// Register tells tunnel's directory grain about this node.
func (e *Engine) Register(ctx context.Context, tunnel string, r fleetmsg.Registration) error {
	_, err := e.request(ctx, tunnel, &fleetv1.Register{
		Node: r.Node, Internal: r.Internal, Sessions: int32(r.Sessions), TtlMs: r.TTL.Milliseconds(),
	})
	return err
}

// Lookup asks tunnel's directory grain for its routes.
func (e *Engine) Lookup(ctx context.Context, tunnel string) ([]fleetmsg.Route, error) {
	res, err := e.request(ctx, tunnel, &fleetv1.Lookup{})
	if err != nil {
		return nil, err
	}
	routes, ok := res.(*fleetv1.Routes)
	if !ok {
		return nil, fmt.Errorf("fleet: directory answered %T", res)
	}
	out := make([]fleetmsg.Route, 0, len(routes.GetRoutes()))
	for _, r := range routes.GetRoutes() {
		out = append(out, fleetmsg.Route{Node: r.GetNode(), Internal: r.GetInternal(), Sessions: int(r.GetSessions())})
	}
	return out, nil
}

// requestTimeout bounds a directory request without a deadline.
const requestTimeout = 5 * time.Second

func (e *Engine) request(ctx context.Context, tunnel string, msg any) (any, error) {
	m, err := e.member()
	if err != nil {
		return nil, err
	}
	timeout := requestTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if timeout <= 0 {
		return nil, context.DeadlineExceeded
	}
	res, err := m.cluster.Request(tunnel, Kind, msg, cluster.WithTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("fleet: directory of %q: %w", tunnel, err)
	}
	if res == nil {
		return nil, fmt.Errorf("fleet: directory of %q did not answer", tunnel)
	}
	return res, nil
}

// Health answers an automanaged member's poll (GET /_health on the
// internal listener); nil for other providers.
func (e *Engine) Health() http.Handler {
	if e.cfg.Provider != ProviderAutomanaged {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		m, err := e.member()
		if err != nil || m.node == nil {
			http.Error(w, "not a member", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m.node)
	})
}

// parked is a listener that accepts nothing until closed.
type parked struct {
	closed chan struct{}
	once   sync.Once
}

func newParked() *parked { return &parked{closed: make(chan struct{})} }

func (p *parked) Accept() (net.Conn, error) {
	<-p.closed
	return nil, net.ErrClosed
}

func (p *parked) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

func (p *parked) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
