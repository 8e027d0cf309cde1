package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor/agent"
	"github.com/enhanced-tunnel/tunnel/supervisor/httpapi"
)

// The agent as tunnel-supervisor runs it, between a relay and a local TTS
// server, all in this process on loopback: a public request reaches the
// TTS server through the tunnel, /health says so, and Shutdown drains and
// stops everything.
func ExampleStart() {
	const key = "example-key-ZXhhbXBsZSBrZXk"
	rcfg := relay.DefaultConfig()
	rcfg.Listen, rcfg.AdminListen = "127.0.0.1:0", ""
	rcfg.AuthToken = key
	r, err := relay.Start(rcfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close(context.Background())

	tts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "hello from the TTS server, %s %s", req.Method, req.URL.Path)
	}))
	defer tts.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0") // /health, /status and /metrics
	if err != nil {
		fmt.Println(err)
		return
	}
	up := make(chan struct{})
	var once sync.Once
	cfg := agent.DefaultConfig()
	cfg.Tunnel.RelayURL = "ws://" + r.Addr().String() + "/tunnel"
	cfg.Tunnel.APIKey = key
	cfg.Tunnel.OnStateChange = func(s messages.StateChanged) {
		if s.State == messages.Authenticated {
			once.Do(func() { close(up) })
		}
	}
	cfg.Forward = tts.URL
	cfg.Listener = ln
	a, err := agent.Start(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	<-up

	resp, err := http.Get("http://" + r.Addr().String() + "/v1/voices")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))

	resp, err = http.Get("http://" + a.Addr().String() + "/health")
	if err != nil {
		fmt.Println(err)
		return
	}
	var health httpapi.Health
	_ = json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, health.Status, health.TunnelConnected)

	fmt.Println(a.Shutdown(context.Background()))
	// Output:
	// 200 hello from the TTS server, GET /v1/voices
	// 200 healthy true
	// <nil>
}

// The defaults of the standalone agent.
func ExampleDefaultConfig() {
	cfg := agent.DefaultConfig()
	fmt.Println(cfg.Forward, cfg.DrainTimeout, cfg.Tunnel.Connections)
	cfg.Tunnel.RelayURLs = []string{"wss://relay-a.example/tunnel", "wss://relay-b.example/tunnel"}
	cfg.Tunnel.APIKey = "from-the-environment"
	fmt.Println(cfg.Validate())
	// Output:
	// http://127.0.0.1:8000 30s 2
	// <nil>
}
