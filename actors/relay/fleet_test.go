package relay_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// TestAloneStartsNoClusterCode: a relay without a fleet name runs no
// goroutine of protoactor-go's cluster, gRPC or etcd (their goroutines
// outlive a shutdown; see protoengine), and TestMain's leak check proves
// it leaves nothing once closed.
func TestAloneStartsNoClusterCode(t *testing.T) {
	r := harness.StartRelay(t, defaultKey, nil, nil)
	if r.InternalAddr() != nil {
		t.Fatalf("a relay alone listens on an internal address %v", r.InternalAddr())
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, pkg := range []string{"protoactor-go/cluster", "protoactor-go/remote", "google.golang.org/grpc", "go.etcd.io/etcd"} {
		if strings.Contains(stacks, pkg) {
			t.Errorf("a relay alone runs goroutines of %s", pkg)
		}
	}
	harness.CloseRelay(t, r)
}

func TestFleetConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*relay.FleetConfig)
		want   string // in the error
	}{
		{"no secret", func(c *relay.FleetConfig) { c.Secret = "" }, "cluster secret"},
		{"weak secret", func(c *relay.FleetConfig) { c.Secret = "password" }, "bits of entropy"},
		{"unspecified internal address", func(c *relay.FleetConfig) { c.InternalListen = "0.0.0.0:7947" }, "unspecified"},
		{"unknown provider", func(c *relay.FleetConfig) { c.Provider = "zookeeper" }, `"zookeeper"`},
		{"etcd without endpoints", func(c *relay.FleetConfig) { c.EtcdEndpoints = nil }, "etcd endpoint"},
		{"bad cluster address", func(c *relay.FleetConfig) { c.Listen = "7946" }, "cluster address"},
		{"TTL within a period", func(c *relay.FleetConfig) { c.Timing.EntryTTL = c.Timing.RegisterPeriod }, "EntryTTL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := relay.DefaultConfig()
			cfg.AuthToken = defaultKey
			cfg.Fleet.Name, cfg.Fleet.Secret = "test", defaultKey
			if err := cfg.Validate(); err != nil {
				t.Fatalf("the base config: %v", err)
			}
			tt.change(&cfg.Fleet)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want an error naming %s", err, tt.want)
			}
			if strings.Contains(err.Error(), defaultKey) {
				t.Fatalf("the error quotes the secret: %v", err)
			}
		})
	}
}
