package wire

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tunnel is an in-memory WebSocket connection for stream tests. write queues
// a message; one goroutine hands each chunk and stream frame to its stream's
// StreamReader, as the goroutine reading a real connection would, and passes
// every other frame on to control. Credit goes straight back to the sender's
// SendWindow, standing in for the window_update frames of the other
// direction. A chunk over the window aborts its stream at both ends, as the
// protocol error would end a real connection, so that a broken window fails
// a test instead of hanging it.
type tunnel struct {
	tb       testing.TB
	messages chan wsMessage
	control  chan *Frame
	stop     chan struct{}
	done     chan struct{}

	mu      sync.Mutex
	streams map[string]tunnelStream
	pushed  map[string]int64 // chunk bytes delivered per stream
}

type tunnelStream struct {
	reader *StreamReader
	window *SendWindow
}

type wsMessage struct {
	binary bool
	data   []byte
}

var errTunnelClosed = errors.New("tunnel closed")

func newTunnel(tb testing.TB) *tunnel {
	tn := &tunnel{
		tb:       tb,
		messages: make(chan wsMessage, 8),
		control:  make(chan *Frame, 8),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		streams:  map[string]tunnelStream{},
		pushed:   map[string]int64{},
	}
	go tn.dispatch()
	tb.Cleanup(func() {
		close(tn.stop)
		<-tn.done
	})
	return tn
}

// open registers a stream whose sender holds win and returns its reader.
func (tn *tunnel) open(id string, window int64, win *SendWindow) *StreamReader {
	r := NewStreamReader(window, win.Grant)
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.streams[id] = tunnelStream{r, win}
	return r
}

func (tn *tunnel) pushedBytes(id string) int64 {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.pushed[id]
}

// write has the signature SendStream wants.
func (tn *tunnel) write(ctx context.Context, binary bool, data []byte) error {
	select {
	case tn.messages <- wsMessage{binary: binary, data: data}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-tn.stop:
		return errTunnelClosed
	}
}

func (tn *tunnel) dispatch() {
	defer close(tn.done)
	for {
		select {
		case m := <-tn.messages:
			tn.deliver(m)
		case <-tn.stop:
			return
		}
	}
}

func (tn *tunnel) deliver(m wsMessage) {
	if m.binary {
		id, chunk, err := DecodeChunk(m.data)
		if err != nil {
			tn.tb.Error(err)
			return
		}
		tn.mu.Lock()
		s, ok := tn.streams[id]
		tn.pushed[id] += int64(len(chunk))
		tn.mu.Unlock()
		if !ok {
			tn.tb.Errorf("chunk for unknown stream %q", id)
			return
		}
		if err := s.reader.Push(chunk); err != nil {
			tn.tb.Errorf("stream %s: %v", id, err)
			s.reader.Fail(err)
			s.window.Close(err)
		}
		return
	}
	f, err := Decode(m.data)
	if err != nil {
		tn.tb.Error(err)
		return
	}
	tn.mu.Lock()
	s, ok := tn.streams[f.MessageID]
	tn.mu.Unlock()
	switch {
	case f.Type != TypeStreamEnd && f.Type != TypeStreamError:
		tn.control <- f
	case !ok:
		tn.tb.Errorf("%s for unknown stream %q", f.Type, f.MessageID)
	case f.Type == TypeStreamEnd:
		s.reader.Finish()
	default:
		s.reader.Fail(errors.New(f.Error))
	}
}

type readResult struct {
	data []byte
	err  error
}

// consume reads r to its end in a goroutine of its own.
func consume(r io.Reader) <-chan readResult {
	out := make(chan readResult, 1)
	go func() {
		data, err := io.ReadAll(r)
		out <- readResult{data, err}
	}()
	return out
}

type sendResult struct {
	n   int64
	err error
}

// sendAsync runs SendStream in a goroutine of its own.
func sendAsync(ctx context.Context, id string, body io.Reader, win *SendWindow, chunkSize int, write func(context.Context, bool, []byte) error) <-chan sendResult {
	out := make(chan sendResult, 1)
	go func() {
		n, err := SendStream(ctx, id, body, win, chunkSize, write)
		out <- sendResult{n, err}
	}()
	return out
}

// testBody returns n reproducible bytes that are not a repeating pattern, so
// that a chunk delivered out of place cannot go unnoticed.
func testBody(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(b)
	return b
}
