package supervisor_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
)

// A tunnel that answers the relay's requests itself, reached through a relay
// running in the same process.
func ExampleStart() {
	rcfg := relay.DefaultConfig()
	rcfg.Listen, rcfg.AdminListen = "127.0.0.1:0", ""
	rcfg.AuthToken = "example-key-ZXhhbXBsZSBrZXk"
	r, err := relay.Start(rcfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close(context.Background())

	up := make(chan struct{}, 1)
	cfg := supervisor.DefaultConfig() // two connections to the relay
	cfg.RelayURL = "ws://" + r.Addr().String() + "/tunnel"
	cfg.APIKey = "example-key-ZXhhbXBsZSBrZXk"
	cfg.OnStateChange = func(s messages.StateChanged) {
		if s.State == messages.Authenticated {
			select {
			case up <- struct{}{}: // the first connection up
			default:
			}
		}
	}
	cfg.OnMessage = func(ctx context.Context, t *supervisor.Tunnel, msg *messages.TunnelMessage) {
		_ = t.Send(ctx, &messages.TunnelMessage{
			Type: messages.TypeResponse, MessageID: msg.MessageID, Status: http.StatusOK,
			Headers: map[string][]string{"Content-Type": {"text/plain"}},
			Body:    []byte("hello from " + msg.Method + " " + msg.Path),
		})
	}
	t, err := supervisor.Start(nil, cfg) // nil: the tunnel makes its own actor system
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Stop(context.Background())
	<-up

	resp, err := http.Post("http://"+r.Addr().String()+"/v1/tts?voice=a", "text/plain", strings.NewReader("hi"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	fmt.Println(t.Status().State)
	// Output:
	// 200 hello from POST /v1/tts?voice=a
	// AUTHENTICATED
}

// The seed's defaults, and the exponential policy as an option.
func ExampleDefaultConfig() {
	cfg := supervisor.DefaultConfig()
	fmt.Println(cfg.HeartbeatInterval, cfg.HeartbeatTimeout, cfg.ConnectTimeout)
	fmt.Println(cfg.RetryDelay, cfg.AuthRetryDelay, cfg.BreakerThreshold, cfg.BreakerRecovery)

	cfg.ReconnectPolicy = supervisor.Exponential
	cfg.RelayURL = "ws://relay.example:8080/tunnel"
	fmt.Println(cfg.Validate()) // no key yet
	// Output:
	// 15s 30s 10s
	// 10s 30s 5 5m0s
	// tunnel: invalid config: APIKey is empty
}

// Request sends a request to the relay side and waits for its answer; here
// nobody on the relay side routes supervisor requests, so the relay answers
// with an error frame.
func ExampleTunnel_Request() {
	rcfg := relay.DefaultConfig()
	rcfg.Listen, rcfg.AdminListen = "127.0.0.1:0", ""
	rcfg.AuthToken = "example-key-ZXhhbXBsZSBrZXk"
	r, err := relay.Start(rcfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close(context.Background())

	cfg := supervisor.DefaultConfig()
	cfg.RelayURL = "ws://" + r.Addr().String() + "/tunnel"
	cfg.APIKey = "example-key-ZXhhbXBsZSBrZXk"
	t, err := supervisor.Start(nil, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Stop(context.Background())

	// Sent while still connecting: the request waits in the queue.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := t.Request(ctx, &messages.TunnelMessage{Method: "GET", Path: "/"})
	fmt.Println(answer.Type, err != nil)
	// Output: error true
}

// hostActor is a TTS host's own actor, which runs the tunnel as its child:
// its supervisor strategy is the tunnel root's, and the tunnel lives and
// dies with it.
type hostActor struct {
	cfg     supervisor.Config
	started chan *supervisor.Tunnel
}

func (h *hostActor) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		t, err := supervisor.SpawnUnder(ctx, h.cfg)
		if err != nil {
			fmt.Println(err)
		}
		h.started <- t
	}
}

// SpawnUnder grows the tunnel's tree under one of the host's actors.
func ExampleSpawnUnder() {
	rcfg := relay.DefaultConfig()
	rcfg.Listen, rcfg.AdminListen = "127.0.0.1:0", ""
	rcfg.AuthToken = "example-key-ZXhhbXBsZSBrZXk"
	r, err := relay.Start(rcfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close(context.Background())

	system := actor.NewActorSystem()
	defer system.Shutdown()
	cfg := supervisor.DefaultConfig()
	cfg.RelayURL = "ws://" + r.Addr().String() + "/tunnel"
	cfg.APIKey = "example-key-ZXhhbXBsZSBrZXk"
	up := make(chan struct{}, cfg.Connections)
	cfg.OnStateChange = func(s messages.StateChanged) {
		if s.State == messages.Authenticated {
			select {
			case up <- struct{}{}:
			default: // OnStateChange must never block
			}
		}
	}
	started := make(chan *supervisor.Tunnel, 1)
	host := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &hostActor{cfg: cfg, started: started} }))
	t := <-started
	defer t.Stop(context.Background())

	for range cfg.Connections {
		<-up
	}
	fmt.Println(strings.HasPrefix(t.PID().Id, host.Id+"/"), t.Status().ReadyConnections)
	// Output: true 2
}
