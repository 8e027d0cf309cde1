package relay

import (
	"crypto/rand"
	"strconv"
	"sync/atomic"
)

// requestIDs names public requests: a random prefix per relay process, then
// a counter. The ids are unique for the process's life and across its
// restarts (a supervisor may still hold a request of the last one), and
// making one costs no random read and no lock, which a uuid per request
// did: a visible share of a small request's CPU.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	return &requestIDs{prefix: rand.Text()[:10] + "-"}
}

func (g *requestIDs) next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}
