package connection

import (
	"testing"

	"github.com/enhanced-tunnel/tunnel/messages/actormsg"
)

func TestQueuePutsOwnFramesAheadOfCallersFrames(t *testing.T) {
	q := newQueue()
	frame := func(name string) *actormsg.Outbound { return &actormsg.Outbound{Data: []byte(name)} }
	for _, it := range []item{
		{out: frame("chunk-1")}, {out: frame("chunk-2")}, {out: frame("heartbeat-1"), own: true},
		{out: frame("chunk-3")}, {out: frame("heartbeat-2"), own: true},
	} {
		if !q.push(it) {
			t.Fatal("push refused on an open queue")
		}
	}
	var got []string
	for {
		it, ok := q.pop()
		if !ok {
			break
		}
		got = append(got, string(it.out.Data))
	}
	want := []string{"heartbeat-1", "heartbeat-2", "chunk-1", "chunk-2", "chunk-3"}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("popped %v, want %v", got, want)
		}
	}
}

func TestQueueCloseHandsBackOnlyCallersFrames(t *testing.T) {
	q := newQueue()
	q.push(item{out: &actormsg.Outbound{Data: []byte("a")}})
	q.push(item{out: &actormsg.Outbound{Data: []byte("hb")}, own: true})
	back := q.close()
	if len(back) != 1 || string(back[0].Data) != "a" {
		t.Fatalf("close handed back %v", back)
	}
	if q.push(item{out: &actormsg.Outbound{}}) {
		t.Fatal("push accepted after close")
	}
}
