package protoengine_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay/fleet/protoengine"
)

const (
	testSecret = "c2VjcmV0LW9mLXRoZS10ZXN0LWZsZWV0LTEyMzQ1Ng"
	// wait bounds each wait for the member: far beyond what it needs.
	wait = 20 * time.Second
)

func TestConfigValidate(t *testing.T) {
	good := protoengine.Config{Name: "t", Provider: protoengine.ProviderEtcd, EtcdEndpoints: []string{"127.0.0.1:2379"}, Listen: "127.0.0.1:0"}
	tests := []struct {
		name   string
		change func(*protoengine.Config)
		want   string // in the error; "" for none
	}{
		{"good", func(*protoengine.Config) {}, ""},
		{"no name", func(c *protoengine.Config) { c.Name = "" }, "name"},
		{"etcd without endpoints", func(c *protoengine.Config) { c.EtcdEndpoints = nil }, "etcd endpoint"},
		{"unknown provider", func(c *protoengine.Config) { c.Provider = "consul" }, `"consul"`},
		{"bad listen", func(c *protoengine.Config) { c.Listen = "nowhere" }, "cluster address"},
		{"bad port", func(c *protoengine.Config) { c.Listen = "127.0.0.1:99999" }, "cluster address"},
		{"bad peer", func(c *protoengine.Config) {
			c.Provider, c.Peers = protoengine.ProviderAutomanaged, []string{"x"}
		}, "cluster peer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}

// TestStartWithoutEtcd: a provider that cannot start is an error, not the
// panic protoactor-go's cluster raises.
func TestStartWithoutEtcd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := ln.Addr().String()
	ln.Close()
	_, err = protoengine.Start(protoengine.Config{Name: "t", Provider: protoengine.ProviderEtcd,
		EtcdEndpoints: []string{nowhere}, Listen: "127.0.0.1:0"})
	if !errors.Is(err, protoengine.ErrStart) {
		t.Fatalf("Start with no etcd: %v, want ErrStart", err)
	}
}
