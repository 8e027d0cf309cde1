package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// errPingStopped is Ping's error once the tunnel is stopped.
var errPingStopped = errors.New("supervisor: tunnel stopped")

// Ping asks the supervision tree's root actor a question it answers at
// once, and returns nil when it answers before ctx ends (within 5 s at
// most): the process and its actor system are alive. It says nothing of
// the connections (see Status): a tunnel whose relay is unreachable is
// alive, and waits to reconnect. The liveness probe of tunnel-supervisor
// (GET /livez) uses it.
func (t *Tunnel) Ping(ctx context.Context) error {
	if t.stopped.Load() {
		return errPingStopped
	}
	timeout := statusTimeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(time.Millisecond, min(timeout, time.Until(deadline)))
	}
	if _, err := t.system.Root.RequestFuture(t.root, &getPaths{}, timeout).Result(); err != nil {
		return fmt.Errorf("supervisor: the root actor did not answer: %w", err)
	}
	return nil
}
