// Package fuzzframes is what the frame-handling fuzz targets share: each
// feeds its subject (the relay's session, the connection actor, the whole
// Tunnel) two arbitrary WebSocket messages, text or binary, and seeds the
// fuzzer with pairs written as Pair values.
package fuzzframes

import (
	"testing"

	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// Pair is two messages to deliver in order; Bin* says which are binary.
type Pair struct {
	First, Second       []byte
	BinFirst, BinSecond bool
}

// Text is a text message's payload.
func Text(s string) []byte { return []byte(s) }

// Chunk is a binary chunk of stream id, laid out as PROTOCOL.md says.
func Chunk(tb testing.TB, id, data string) []byte {
	tb.Helper()
	b, err := wire.EncodeChunk(id, []byte(data))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// AddSeeds adds every pair to f's seed corpus, in the argument order of a
// target func(t *testing.T, first []byte, binFirst bool, second []byte, binSecond bool).
func AddSeeds(f *testing.F, seeds []Pair) {
	for _, s := range seeds {
		f.Add(s.First, s.BinFirst, s.Second, s.BinSecond)
	}
}
