package fleet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

var providers = []string{"etcd", "automanaged"}

// bigBody is the 1 MiB the upstream streams: every byte told apart from
// its neighbours, so a lost or doubled piece shows.
var bigBody = func() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}()

// upstream is the local service: /echo answers the body it was sent,
// with the forwarding headers it got; /big streams bigBody; /progressive
// sends a first line, then waits for release before the last.
type upstream struct {
	*httptest.Server
	release chan struct{}
}

func startUpstream(t testing.TB) *upstream {
	u := &upstream{release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Got-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Got-Host", r.Header.Get("X-Forwarded-Host"))
		w.Header().Set("X-Got-Path", r.URL.RequestURI())
		_, _ = io.Copy(w, r.Body)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		for b := bigBody; len(b) > 0; b = b[32<<10:] {
			_, _ = w.Write(b[:32<<10])
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			kind, msg, err := conn.ReadMessage()
			if err != nil || conn.WriteMessage(kind, msg) != nil {
				return
			}
		}
	})
	mux.HandleFunc("/progressive", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "last\n")
	})
	u.Server = httptest.NewServer(mux)
	t.Cleanup(u.Close)
	return u
}

// TestAnyNodeServesATunnel: three nodes, a supervisor connected to A;
// requests at B and C reach it byte-exact, streams included, with the
// client's address, and are counted as hops there.
func TestAnyNodeServesATunnel(t *testing.T) {
	for _, provider := range providers {
		t.Run(provider, func(t *testing.T) {
			f, nodes := startFleet(t, provider, 3)
			up := startUpstream(t)
			client := &http.Client{Timeout: settleTimeout}
			ctx := t.Context()
			// A request at C while the tunnel is connected nowhere is held
			// until its supervisor connects, to another node.
			held := make(chan error, 1)
			go func() {
				code, body, err := get(ctx, client, nodes[2], "/echo?held=1")
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("%d %s", code, body)
				}
				held <- err
			}()
			waitFor(t, startTimeout, "the request held at C", func() error {
				v, err := nodes[2].metric(`tunnel_relay_requests_in_flight{tunnel="default"}`)
				if err == nil && v != 1 {
					err = fmt.Errorf("%v in flight", v)
				}
				return err
			})
			startSupervisor(t, f, up.URL, nodes[0])
			waitSession(t, nodes[0])
			if err := <-held; err != nil {
				t.Fatalf("the held request: %v", err)
			}
			for _, n := range nodes[1:] {
				waitFor(t, settleTimeout, "a request at node "+n.name, func() error {
					code, body, err := get(ctx, client, n, "/echo")
					if err != nil || code != http.StatusOK {
						return fmt.Errorf("%d %s %v", code, body, err)
					}
					return nil
				})
				// An upload past the inline limit goes as a stream.
				upload := bytes.Repeat([]byte("0123456789abcdef"), 20000)
				res, err := client.Post("http://"+n.addr+"/echo?x=1", "application/octet-stream", bytes.NewReader(upload))
				if err != nil {
					t.Fatalf("POST at %s: %v", n.name, err)
				}
				got, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil || res.StatusCode != http.StatusOK || !bytes.Equal(got, upload) {
					t.Fatalf("POST at %s: %d, %d bytes back of %d, %v", n.name, res.StatusCode, len(got), len(upload), err)
				}
				if h := res.Header.Get("X-Got-For"); h != "127.0.0.1" {
					t.Errorf("at %s the upstream saw X-Forwarded-For %q, want the client's 127.0.0.1", n.name, h)
				}
				if h := res.Header.Get("X-Got-Host"); h != n.addr {
					t.Errorf("at %s the upstream saw X-Forwarded-Host %q, want %q", n.name, h, n.addr)
				}
				if h := res.Header.Get("X-Got-Path"); h != "/echo?x=1" {
					t.Errorf("at %s the upstream saw path %q", n.name, h)
				}
				code, body, err := get(ctx, client, n, "/big")
				if err != nil || code != http.StatusOK || sha256.Sum256(body) != sha256.Sum256(bigBody) {
					t.Fatalf("GET /big at %s: %d, %d bytes, %v", n.name, code, len(body), err)
				}
				if members, err := n.metric("tunnel_relay_fleet_members"); err != nil || members != 3 {
					t.Errorf("node %s reports %v fleet members (%v), want 3", n.name, members, err)
				}
				hops, err := n.metric("tunnel_relay_fleet_hops_total")
				if err != nil || hops < 3 {
					t.Errorf("node %s counted %v hops (%v), want at least 3", n.name, hops, err)
				}
			}
			// A WebSocket through C: the upgrade is handed to A too.
			ws, _, err := websocket.DefaultDialer.Dial("ws://"+nodes[2].addr+"/ws", nil)
			if err != nil {
				t.Fatalf("WebSocket through C: %v", err)
			}
			for _, kind := range []int{websocket.TextMessage, websocket.BinaryMessage} {
				if err := ws.WriteMessage(kind, []byte("hello")); err != nil {
					t.Fatal(err)
				}
				if got, msg, err := ws.ReadMessage(); err != nil || got != kind || string(msg) != "hello" {
					t.Fatalf("WebSocket echo through C: %d %q %v", got, msg, err)
				}
			}
			ws.Close()
			// The first line of a progressive response reaches the client
			// through C before the upstream has finished.
			res, err := client.Get("http://" + nodes[2].addr + "/progressive")
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			first := make([]byte, len("first\n"))
			if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != "first\n" {
				t.Fatalf("first line %q, %v", first, err)
			}
			close(up.release)
			rest, err := io.ReadAll(res.Body)
			if err != nil || string(rest) != "last\n" {
				t.Fatalf("rest %q, %v", rest, err)
			}
		})
	}
}

// outcome is one request of a load.
type outcome struct {
	node   string
	code   int
	body   string
	err    error
	before bool // sent before the kill
}

// TestNodeLost: a supervisor connected to A and B, requests at A, B and
// C; A is killed. Requests at B and C keep being answered, each with its
// body or an explicit JSON error, the directory forgets A within seconds,
// and A restarted (a new member id, the same addresses) serves again.
func TestNodeLost(t *testing.T) {
	for _, provider := range providers {
		t.Run(provider, func(t *testing.T) {
			f, nodes := startFleet(t, provider, 3)
			a, b, c := nodes[0], nodes[1], nodes[2]
			up := startUpstream(t)
			startSupervisor(t, f, up.URL, a, b)
			waitSession(t, a)
			waitSession(t, b)
			client := &http.Client{Timeout: settleTimeout}

			var (
				mu       sync.Mutex
				outcomes []outcome
				killed   bool
			)
			ctx, stop := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			for w := range 6 {
				wg.Go(func() {
					for i := 0; ctx.Err() == nil; i++ {
						mu.Lock()
						targets := []*node{a, b, c}
						if killed {
							targets = targets[1:]
						}
						before := !killed
						mu.Unlock()
						n := targets[(w+i)%len(targets)]
						path := fmt.Sprintf("/echo?w=%d&i=%d", w, i)
						code, body, err := get(context.Background(), client, n, path)
						mu.Lock()
						outcomes = append(outcomes, outcome{node: n.name, code: code, body: string(body), err: err, before: before})
						mu.Unlock()
					}
				})
			}
			count := func(after bool) (ok int) {
				mu.Lock()
				defer mu.Unlock()
				for _, o := range outcomes {
					if o.code == http.StatusOK && o.before != after {
						ok++
					}
				}
				return ok
			}
			waitFor(t, settleTimeout, "requests before the kill", func() error {
				if n := count(false); n < 200 {
					return fmt.Errorf("%d so far", n)
				}
				return nil
			})
			oldID := a.id
			mu.Lock()
			killed = true
			mu.Unlock()
			a.kill()
			killedAt := time.Now()
			// The directory forgets A.
			waitFor(t, settleTimeout, "the directory to forget A", func() error {
				v, err := c.view("default")
				if err != nil {
					return err
				}
				for _, r := range v.Routes {
					if r.Node == oldID {
						return fmt.Errorf("routes %+v", v.Routes)
					}
				}
				return nil
			})
			t.Logf("%s: the directory forgot the killed node after %v", provider, time.Since(killedAt).Round(10*time.Millisecond))
			waitFor(t, settleTimeout, "requests after the kill", func() error {
				if n := count(true); n < 300 {
					return fmt.Errorf("%d so far", n)
				}
				return nil
			})
			stop()
			wg.Wait()

			var failed []outcome
			ok := 0
			for _, o := range outcomes {
				switch {
				case o.node == "A" && o.err != nil:
					// Sent to A as it died: the client sees the cut.
				case o.err != nil:
					t.Errorf("a request at %s got no answer: %v", o.node, o.err)
				case o.code == http.StatusOK:
					ok++
				case slices.Contains([]int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}, o.code) &&
					strings.HasPrefix(o.body, `{"error":`):
					failed = append(failed, o)
				default:
					t.Errorf("a request at %s got %d %q", o.node, o.code, o.body)
				}
			}
			t.Logf("%s: %d requests, %d ok, %d explicit errors (in flight through A as it died)", provider, len(outcomes), ok, len(failed))
			// Only the requests in flight through A can fail: at most one
			// per load worker and node.
			if len(failed) > 12 {
				t.Errorf("%d explicit errors, more than the requests that can be in flight through A: %+v", len(failed), failed)
			}

			// A comes back as a new member and serves again.
			a.restart(t)
			if a.id == oldID {
				t.Errorf("the restarted node kept its member id %s", oldID)
			}
			waitMembers(t, nodes, 3)
			waitFor(t, settleTimeout, "a request at the restarted A", func() error {
				code, body, err := get(t.Context(), client, a, "/echo")
				if err != nil || code != http.StatusOK {
					return fmt.Errorf("%d %s %v", code, body, err)
				}
				return nil
			})
		})
	}
}

// TestEtcdPaused: etcd stops answering for longer than the members'
// leases; once it answers again the fleet recovers: every node is a
// member again (re-joining as a new one if it dropped out of its own
// member list) and requests at B and C reach the supervisor at A.
func TestEtcdPaused(t *testing.T) {
	f, nodes := startFleet(t, "etcd", 3)
	up := startUpstream(t)
	startSupervisor(t, f, up.URL, nodes[0])
	waitSession(t, nodes[0])
	client := &http.Client{Timeout: settleTimeout}
	f.etcd.signal(syscall.SIGSTOP)
	// The etcd provider's leases last 3 s: the pause outlasts them.
	pause := time.NewTimer(8 * time.Second)
	<-pause.C
	f.etcd.signal(syscall.SIGCONT)
	resumed := time.Now()
	waitMembers(t, nodes, 3)
	for _, n := range nodes[1:] {
		waitFor(t, settleTimeout, "a request at node "+n.name+" after the pause", func() error {
			code, body, err := get(t.Context(), client, n, "/echo")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("%d %s %v", code, body, err)
			}
			return nil
		})
	}
	rejoined := 0
	for _, n := range nodes {
		rejoined += n.logged("Fleet node joined again")
	}
	t.Logf("the fleet recovered %v after etcd resumed; %d node(s) re-joined as new members", time.Since(resumed).Round(10*time.Millisecond), rejoined)
}

// TestStrangersAtFleetPorts: the internal listener and the cluster's gRPC
// port refuse a caller without the cluster secret, without logging what
// it sent; and on the gRPC port the methods protoactor-go left unimplemented (they
// panic, which would end the process) are refused to everyone, a message
// past gRPC's default 4 MiB included (the limit is raised, or the
// remote's batches past it would be dropped).
func TestStrangersAtFleetPorts(t *testing.T) {
	f := newFleet(t, "automanaged", 1)
	n := f.start(t, 0)
	waitMembers(t, []*node{n}, 1)
	wrong := secret(t)
	for _, sent := range []string{"", wrong} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+n.internal+"/echo", nil)
		if sent != "" {
			req.Header.Set("Tunnel-Fleet-Secret", sent)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden || !strings.HasPrefix(string(body), `{"error":`) {
			t.Errorf("internal hop with secret %q: %d %s, want 403 with a JSON error", sent, res.StatusCode, body)
		}
	}
	waitFor(t, startTimeout, "two refusals logged", func() error {
		if got := n.logged("Fleet hop refused: wrong or missing cluster secret"); got != 2 {
			return fmt.Errorf("%d logged", got)
		}
		return nil
	})
	addr := n.line("Relay listening")["cluster_addr"].(string)
	conn, err := grpc.Dial(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := remote.NewRemotingClient(conn)
	tests := []struct {
		name   string
		secret string
		req    *remote.ListProcessesRequest
		want   codes.Code
	}{
		{"no secret", "", &remote.ListProcessesRequest{}, codes.Unauthenticated},
		{"wrong secret", secret(t), &remote.ListProcessesRequest{}, codes.Unauthenticated},
		{"unimplemented method", f.secret, &remote.ListProcessesRequest{}, codes.Unimplemented},
		{"past 4 MiB", f.secret, &remote.ListProcessesRequest{Pattern: strings.Repeat("x", 5<<20)}, codes.Unimplemented},
	}
	for _, tt := range tests {
		ctx := t.Context()
		if tt.secret != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "tunnel-fleet-secret", tt.secret)
		}
		_, err := client.ListProcesses(ctx, tt.req)
		if got := status.Code(err); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	stream, err := client.Receive(t.Context())
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("Receive without the secret: %v, want Unauthenticated", err)
	}
	waitMembers(t, []*node{n}, 1) // still up, still a member
	n.stop()
	if log, err := os.ReadFile(n.log); err != nil || strings.Contains(string(log), wrong) || strings.Contains(string(log), f.secret) {
		t.Errorf("the log quotes a secret (or cannot be read: %v)", err)
	}
}
