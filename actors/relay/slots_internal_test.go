package relay

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// newTestSlots are slots of limit per tunnel over tunnels, with an
// in-flight gauge of their own.
func newTestSlots(limit int, names map[string]string) *slots {
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_requests_in_flight"}, []string{"tunnel"})
	tunnels := make(map[string]bool, len(names))
	for name := range names {
		tunnels[name] = true
	}
	return &slots{limit: limit, tunnels: newTunnelSet(tunnels), inFlight: gauge}
}

// inFlightGauge is the in-flight gauge of s by tunnel label, every series
// it has, zeros included.
func inFlightGauge(t *testing.T, s *slots) map[string]int {
	t.Helper()
	out := map[string]int{}
	ch := make(chan prometheus.Metric, 16)
	go func() {
		s.inFlight.Collect(ch)
		close(ch)
	}()
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		out[d.GetLabel()[0].GetValue()] = int(d.GetGauge().GetValue())
	}
	return out
}

// slotOp is one step on slots: take (want says whether it must succeed)
// or give.
type slotOp struct {
	give   bool
	tunnel string
	want   bool
}

func takeOp(tunnel string, want bool) slotOp { return slotOp{tunnel: tunnel, want: want} }
func giveOp(tunnel string) slotOp            { return slotOp{give: true, tunnel: tunnel} }

// TestSlotsTakeAndGive proves the per-tunnel counting: a known tunnel takes
// slots up to the limit, a given slot can be taken again, tunnels count
// apart, a name that is not a tunnel never takes one, the map of taken
// slots holds only tunnels with slots taken, and the in-flight gauge shows
// the same counts (no series for a name that is not a tunnel).
func TestSlotsTakeAndGive(t *testing.T) {
	tunnels := map[string]string{"a": "key-a", "b": "key-b", "default": "key-d"}
	tests := []struct {
		name      string
		limit     int
		ops       []slotOp
		wantTaken map[string]int
	}{
		{"none", 2, nil, map[string]int{}},
		{"up to the limit", 2, []slotOp{takeOp("a", true), takeOp("a", true), takeOp("a", false), takeOp("a", false)}, map[string]int{"a": 2}},
		{"limit one", 1, []slotOp{takeOp("a", true), takeOp("a", false)}, map[string]int{"a": 1}},
		{"give frees a slot", 2, []slotOp{takeOp("a", true), takeOp("a", true), giveOp("a"), takeOp("a", true), takeOp("a", false)}, map[string]int{"a": 2}},
		{"tunnels count apart", 1, []slotOp{takeOp("a", true), takeOp("b", true), takeOp("default", true), takeOp("a", false), takeOp("b", false)}, map[string]int{"a": 1, "b": 1, "default": 1}},
		{"all given back", 2, []slotOp{takeOp("a", true), takeOp("b", true), takeOp("a", true), giveOp("a"), giveOp("b"), giveOp("a")}, map[string]int{}},
		{"unknown name never takes", 1000, []slotOp{takeOp("x", false), takeOp("x", false), takeOp("", false), takeOp("A", false)}, map[string]int{}},
		{"unknown name leaves the tunnels alone", 1, []slotOp{takeOp("a", true), takeOp("nope", false), takeOp("b", true)}, map[string]int{"a": 1, "b": 1}},
		{"limit zero takes nothing", 0, []slotOp{takeOp("a", false)}, map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSlots(tt.limit, tunnels)
			for i, op := range tt.ops {
				if op.give {
					s.give(op.tunnel)
					continue
				}
				if got := s.take(op.tunnel); got != op.want {
					t.Errorf("op %d: take(%q) = %v, want %v", i, op.tunnel, got, op.want)
				}
			}
			got := s.taken
			if got == nil {
				got = map[string]int{}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantTaken) {
				t.Errorf("taken = %v, want %v", got, tt.wantTaken)
			}
			gauge := inFlightGauge(t, s)
			for name, v := range gauge {
				if _, known := tunnels[name]; !known {
					t.Errorf("the in-flight gauge has a series for %q, which is not a tunnel", name)
				}
				if v == 0 {
					delete(gauge, name)
				}
			}
			if fmt.Sprint(gauge) != fmt.Sprint(tt.wantTaken) {
				t.Errorf("in-flight gauge = %v, want %v", gauge, tt.wantTaken)
			}
		})
	}
}

// TestSlotsRefusal proves the refusal texts: a name that is not a tunnel
// is unknown (answered 404), quoted and cut short by wire.Excerpt; a full
// tunnel has too many requests in flight, with the limit.
func TestSlotsRefusal(t *testing.T) {
	long := strings.Repeat("x", 1000)
	s := newTestSlots(7, map[string]string{"a": "key-a"})
	tests := []struct {
		name, got, want string
	}{
		{"unknown", unknownTunnel("x"), `unknown tunnel "x"`},
		{"empty", unknownTunnel(""), `unknown tunnel ""`},
		{"quoted", unknownTunnel("a\"b\n"), `unknown tunnel "a\"b\n"`},
		{"long name cut short", unknownTunnel(long), fmt.Sprintf("unknown tunnel %q", wire.Excerpt(long))},
		{"full", s.refusal("a"), `tunnel "a" has too many requests in flight (7)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	got := unknownTunnel(long)
	if len(got) > 200 || !strings.Contains(got, "(1000 bytes)") || strings.Contains(got, strings.Repeat("x", wire.MaxExcerpt+1)) {
		t.Errorf("answer to a 1000-byte name = %q: want at most %d bytes of it, and its length", got, wire.MaxExcerpt)
	}
}

// TestSlotsConcurrentTakeAndGive proves, under -race, that concurrent take
// and give never let a tunnel hold more than limit slots, and that the map
// of taken slots is empty once every slot is given back.
func TestSlotsConcurrentTakeAndGive(t *testing.T) {
	const limit, goroutines, rounds = 3, 16, 500
	names := []string{"a", "b", "nope"}
	s := newTestSlots(limit, map[string]string{"a": "ka", "b": "kb"})
	var inFlight [2]atomic.Int32
	var took atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				k := (g + i) % len(names)
				if !s.take(names[k]) {
					continue
				}
				if k == 2 {
					t.Errorf("take(%q) succeeded", names[k])
					return
				}
				took.Add(1)
				if n := inFlight[k].Add(1); n > limit {
					t.Errorf("tunnel %q has %d in flight, limit %d", names[k], n, limit)
				}
				inFlight[k].Add(-1)
				s.give(names[k])
			}
		})
	}
	wg.Wait()
	if took.Load() == 0 {
		t.Error("no slot was ever taken")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.taken) != 0 {
		t.Errorf("taken = %v after every give, want empty", s.taken)
	}
	for name, v := range inFlightGauge(t, s) {
		if v != 0 || (name != "a" && name != "b") {
			t.Errorf("in-flight gauge of %q = %d after every give, want only tunnels, at 0", name, v)
		}
	}
}
