package protoengine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdShutdownTimeout bounds the etcd provider's shutdown, whose
// deregistration waits for etcd without a deadline.
const etcdShutdownTimeout = 5 * time.Second

// etcdProvider wraps protoactor-go's etcd provider for three of its
// defects:
//
//   - its etcd client is made in its constructor, and its gRPC goroutines
//     then race with the remote's start (which sets gRPC's global logger):
//     the provider is made in StartMember, after the remote has started;
//   - it waits for an etcd that does not answer forever, at start (the
//     relay would hang) and at shutdown: etcd's /health is asked first,
//     within etcdDialTimeout, and Shutdown gives up after
//     etcdShutdownTimeout (the provider's goroutines are then left behind);
//   - nothing else: the watchdog (package fleet) handles a member that
//     drops out of its own member list after an etcd blip.
type etcdProvider struct {
	prefix    string
	endpoints []string
	inner     *etcd.Provider
}

func (p *etcdProvider) StartMember(c *cluster.Cluster) error {
	if err := etcdHealthy(p.endpoints); err != nil {
		return err
	}
	inner, err := etcd.NewWithConfig(p.prefix, clientv3.Config{Endpoints: p.endpoints, DialTimeout: etcdDialTimeout})
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	p.inner = inner
	return inner.StartMember(c)
}

func (p *etcdProvider) StartClient(c *cluster.Cluster) error {
	return fmt.Errorf("etcd: a relay is always a member")
}

func (p *etcdProvider) Shutdown(graceful bool) error {
	if p.inner == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- p.inner.Shutdown(graceful) }()
	select {
	case err := <-done:
		return err
	case <-time.After(etcdShutdownTimeout):
		return fmt.Errorf("etcd: deregistration did not end within %v", etcdShutdownTimeout)
	}
}

// etcdHealthy asks the endpoints' /health (served on etcd's client port)
// until one says it is healthy, within etcdDialTimeout.
func etcdHealthy(endpoints []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), etcdDialTimeout)
	defer cancel()
	var last error
	for _, ep := range endpoints {
		url := ep
		if !strings.Contains(url, "://") {
			url = "http://" + url
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(url, "/")+"/health", nil)
		if err != nil {
			last = err
			continue
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
		res.Body.Close()
		if res.StatusCode == http.StatusOK && strings.Contains(string(body), `"true"`) {
			return nil
		}
		last = fmt.Errorf("%s/health answered %d %s", url, res.StatusCode, strings.TrimSpace(string(body)))
	}
	return fmt.Errorf("etcd not healthy at %s: %w", strings.Join(endpoints, ","), last)
}
