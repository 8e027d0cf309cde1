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
	cfg.Listen = "127.0.0.1:0"
	cfg.AuthToken = "a-long-random-key"
	r, err := relay.Start(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close(context.Background())

	// Supervisors dial ws://<addr>/tunnel; public clients use http://<addr>/.
	resp, err := http.Get("http://" + r.Addr().String() + "/health")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output: {"status":"ok","tunnels":[]}
}
