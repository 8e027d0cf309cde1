package relay_test

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
)

// A relay in-process on a free loopback port, as tests and tools run it.
func ExampleStart() {
	cfg := relay.DefaultConfig()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.AuthToken = "a-long-random-key-QUJDREVGRw" // 128 bits or more: openssl rand -base64 24
	r, err := relay.Start(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close(context.Background())

	// Supervisors dial ws://<addr>/tunnel; public clients use http://<addr>/;
	// operators read /health and /metrics on the admin address.
	resp, err := http.Get("http://" + r.AdminAddr().String() + "/health")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output: {"status":"ok","tunnels":[]}
}
