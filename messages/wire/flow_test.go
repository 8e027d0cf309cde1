package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"
)

func TestSendWindowAcquire(t *testing.T) {
	tests := []struct {
		name    string
		initial int64
		grants  []int64
		limits  []int
		want    []int
	}{
		{"takes up to the limit", 10, nil, []int{4, 4}, []int{4, 4}},
		{"takes what is left", 10, nil, []int{4, 100}, []int{4, 6}},
		{"grants add up", 0, []int64{3, 4}, []int{100}, []int{7}},
		{"grants after use", 2, []int64{5}, []int{1, 6}, []int{1, 6}},
		{"non-positive grants are ignored", 2, []int64{0, -5}, []int{10}, []int{2}},
		{"negative initial is no credit", -5, []int64{3}, []int{10}, []int{3}},
		{"limit below 1 takes nothing", 5, nil, []int{0, -1, 5}, []int{0, 0, 5}},
		{"grants saturate", math.MaxInt64 - 1, []int64{10, math.MaxInt64}, []int{math.MaxInt}, []int{math.MaxInt}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// In a bubble an Acquire that wrongly blocks fails the test as a
			// deadlock instead of hanging it.
			synctest.Test(t, func(t *testing.T) {
				w := NewSendWindow(tc.initial)
				for _, g := range tc.grants {
					w.Grant(g)
				}
				for i, limit := range tc.limits {
					got, err := w.Acquire(t.Context(), limit)
					if err != nil || got != tc.want[i] {
						t.Errorf("Acquire(%d) #%d = %d, %v; want %d, nil", limit, i, got, err, tc.want[i])
					}
				}
			})
		})
	}
}

func TestSendWindowAcquireWaitsForGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewSendWindow(0)
		got := make(chan int, 1)
		go func() {
			n, err := w.Acquire(t.Context(), 8)
			if err != nil {
				t.Error(err)
			}
			got <- n
		}()
		synctest.Wait()
		select {
		case n := <-got:
			t.Fatalf("Acquire returned %d without credit", n)
		default:
		}

		w.Grant(3)
		synctest.Wait()
		select {
		case n := <-got:
			if n != 3 {
				t.Errorf("Acquire = %d after Grant(3), want 3", n)
			}
		default:
			t.Fatal("Acquire still blocked after Grant")
		}
	})
}

func TestSendWindowCloseWakesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errAborted := errors.New("stream aborted")
		w := NewSendWindow(0)
		const waiters = 3
		errs := make(chan error, waiters)
		for range waiters {
			go func() {
				_, err := w.Acquire(t.Context(), 10)
				errs <- err
			}()
		}
		synctest.Wait()
		if len(errs) != 0 {
			t.Fatalf("%d waiters returned before Close", len(errs))
		}

		w.Close(errAborted)
		w.Close(errors.New("second close"))
		synctest.Wait()
		if len(errs) != waiters {
			t.Fatalf("%d of %d waiters woke on Close", len(errs), waiters)
		}
		for range waiters {
			if err := <-errs; !errors.Is(err, errAborted) {
				t.Errorf("waiter got %v, want %v", err, errAborted)
			}
		}

		w.Grant(100)
		if n, err := w.Acquire(t.Context(), 10); !errors.Is(err, errAborted) {
			t.Errorf("Acquire after Close and Grant = %d, %v; want %v", n, err, errAborted)
		}
	})
}

func TestSendWindowCloseNil(t *testing.T) {
	w := NewSendWindow(10)
	w.Close(nil)
	if _, err := w.Acquire(t.Context(), 1); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Acquire after Close(nil) = %v, want io.ErrClosedPipe", err)
	}
}

func TestSendWindowContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewSendWindow(0)
		ctx, cancel := context.WithCancel(t.Context())
		errs := make(chan error, 1)
		go func() {
			_, err := w.Acquire(ctx, 10)
			errs <- err
		}()
		synctest.Wait()
		cancel()
		synctest.Wait()
		select {
		case err := <-errs:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Acquire = %v after cancel, want context.Canceled", err)
			}
		default:
			t.Fatal("Acquire still blocked after cancel")
		}

		w.Grant(5)
		if n, err := w.Acquire(ctx, 10); !errors.Is(err, context.Canceled) {
			t.Errorf("Acquire with an ended context = %d, %v; want context.Canceled", n, err)
		}
		if n, err := w.Acquire(t.Context(), 10); err != nil || n != 5 {
			t.Errorf("Acquire = %d, %v; want the 5 bytes no canceled Acquire took", n, err)
		}
	})
}

// TestSendWindowConcurrent has several senders share one window while
// credit trickles in: at no moment may they hold more than was granted so
// far, and in the end they hold all of it.
func TestSendWindowConcurrent(t *testing.T) {
	const (
		initial = 100
		senders = 8
	)
	rng := rand.New(rand.NewPCG(1, 2))
	grants := make([]int64, 1000)
	total := int64(initial)
	for i := range grants {
		grants[i] = 1 + rng.Int64N(40)
		total += grants[i]
	}

	errDone := errors.New("done")
	w := NewSendWindow(initial)
	var granted, acquired atomic.Int64
	granted.Store(initial)
	// Every Acquire takes at least one byte, so total is room enough for
	// all of them and no sender ever blocks on this channel.
	taken := make(chan int64, total)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 0))
			for {
				n, err := w.Acquire(context.Background(), 1+rng.IntN(50))
				if err != nil {
					if !errors.Is(err, errDone) {
						t.Error(err)
					}
					return
				}
				if sum, limit := acquired.Add(int64(n)), granted.Load(); sum > limit {
					t.Errorf("senders hold %d bytes, only %d granted", sum, limit)
				}
				taken <- int64(n)
			}
		})
	}
	wg.Go(func() {
		for _, n := range grants {
			granted.Add(n) // before Grant, so that granted never lags the credit
			w.Grant(n)
		}
	})

	var sum int64
	for sum < total {
		sum += <-taken
	}
	w.Close(errDone)
	wg.Wait()
	if sum != total || acquired.Load() != total {
		t.Errorf("senders took %d (%d counted), want all %d granted", sum, acquired.Load(), total)
	}
}

func TestStreamReaderReadsInOrder(t *testing.T) {
	r := NewStreamReader(100, func(int64) {})
	for _, c := range [][]byte{[]byte("hello "), []byte("wide "), nil, []byte("world")} {
		if err := r.Push(c); err != nil {
			t.Fatal(err)
		}
	}
	r.Finish()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "hello wide world" {
		t.Errorf("ReadAll = %q, %v; want %q, nil", got, err, "hello wide world")
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read after the end = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestStreamReaderEnds(t *testing.T) {
	errUpstream := errors.New("upstream: unexpected EOF")
	tests := []struct {
		name string
		end  func(r *StreamReader)
		want error
	}{
		{"finish", func(r *StreamReader) { r.Finish() }, io.EOF},
		{"fail", func(r *StreamReader) { r.Fail(errUpstream) }, errUpstream},
		{"fail without a cause", func(r *StreamReader) { r.Fail(nil) }, io.ErrUnexpectedEOF},
		{"finish then fail", func(r *StreamReader) { r.Finish(); r.Fail(errUpstream) }, io.EOF},
		{"fail then finish", func(r *StreamReader) { r.Fail(errUpstream); r.Finish() }, errUpstream},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewStreamReader(100, func(int64) {})
			if err := r.Push([]byte("abc")); err != nil {
				t.Fatal(err)
			}
			tc.end(r)
			if err := r.Push([]byte("late")); err != nil {
				t.Errorf("Push after the end = %v, want it dropped without error", err)
			}
			buf := make([]byte, 10)
			if n, err := r.Read(buf); err != nil || string(buf[:n]) != "abc" {
				t.Errorf("Read = %q, %v; want the buffered abc first", buf[:n], err)
			}
			for range 2 {
				if n, err := r.Read(buf); n != 0 || err != tc.want {
					t.Errorf("Read = %d, %v; want 0, %v", n, err, tc.want)
				}
			}
		})
	}
}

func TestStreamReaderReadBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewStreamReader(100, func(int64) {})
		type result struct {
			data string
			err  error
		}
		results := make(chan result, 1)
		read := func() {
			buf := make([]byte, 10)
			n, err := r.Read(buf)
			results <- result{string(buf[:n]), err}
		}
		expect := func(step string, want result) {
			t.Helper()
			synctest.Wait()
			select {
			case got := <-results:
				if got != want {
					t.Errorf("%s: Read = %q, %v; want %q, %v", step, got.data, got.err, want.data, want.err)
				}
			default:
				t.Fatalf("%s: Read still blocked", step)
			}
		}
		blocked := func(step string) {
			t.Helper()
			synctest.Wait()
			if len(results) != 0 {
				t.Fatalf("%s: Read returned %+v, want it blocked", step, <-results)
			}
		}

		go read()
		blocked("empty buffer")
		if err := r.Push([]byte("data")); err != nil {
			t.Fatal(err)
		}
		expect("after Push", result{"data", nil})

		go read()
		blocked("drained buffer")
		r.Finish()
		expect("after Finish", result{"", io.EOF})

		r = NewStreamReader(100, func(int64) {})
		go read()
		blocked("new stream")
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		expect("after Close", result{"", io.ErrClosedPipe})
	})
}

func TestStreamReaderGrantsInBatches(t *testing.T) {
	tests := []struct {
		name   string
		window int64
		pushes []int
		finish bool // stream_end arrives before the consumer reads
		reads  []int
		grants []int64
	}{
		{"half a window at a time", 100, []int{100}, false, []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, []int64{50, 50}},
		{"whatever was read once half is reached", 100, []int{40, 60}, false, []int{30, 30, 30, 10}, []int64{60}},
		{"one big read", 100, []int{60, 40}, false, []int{100}, []int64{100}},
		{"under half a window", 100, []int{49}, false, []int{49}, nil},
		{"window of one", 1, []int{1}, false, []int{1}, []int64{1}},
		{"odd window", 3, []int{3}, false, []int{1, 1, 1}, []int64{1, 1, 1}},
		{"none once the stream ended", 100, []int{100}, true, []int{50, 50}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reading := false
			var grants []int64
			r := NewStreamReader(tc.window, func(n int64) {
				if !reading {
					t.Error("grant called outside Read")
				}
				grants = append(grants, n)
			})
			for _, n := range tc.pushes {
				if err := r.Push(make([]byte, n)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.finish {
				r.Finish()
			}
			for _, n := range tc.reads {
				reading = true
				got, err := r.Read(make([]byte, n))
				reading = false
				if err != nil || got != n {
					t.Fatalf("Read(%d) = %d, %v", n, got, err)
				}
			}
			if fmt.Sprint(grants) != fmt.Sprint(tc.grants) {
				t.Errorf("grants = %v, want %v", grants, tc.grants)
			}
		})
	}
}

// TestStreamReaderGrantsWhatWasRead reads at random sizes while a sender
// keeps the window full: the grants never run ahead of what was consumed,
// never lag it by a batch or more, and each is at least a batch.
func TestStreamReaderGrantsWhatWasRead(t *testing.T) {
	const window = 1000
	rng := rand.New(rand.NewPCG(1, 2))
	var granted int64
	credit := int64(window)
	r := NewStreamReader(window, func(n int64) {
		if n < window/2 {
			t.Errorf("grant of %d, smaller than half the window", n)
		}
		granted += n
		credit += n
	})
	var consumed int64
	for range 2000 {
		if credit > 0 {
			n := 1 + rng.Int64N(credit)
			if err := r.Push(make([]byte, n)); err != nil {
				t.Fatal(err)
			}
			credit -= n
		}
		n, err := r.Read(make([]byte, 1+rng.IntN(300)))
		if err != nil {
			t.Fatal(err)
		}
		consumed += int64(n)
		if granted > consumed || consumed-granted >= window/2 {
			t.Fatalf("granted %d after %d bytes consumed", granted, consumed)
		}
	}
}

func TestStreamReaderWindowExceeded(t *testing.T) {
	tests := []struct {
		name   string
		window int64
		steps  []int // a push of n bytes, or a read of -n bytes
		want   int   // index of the push that exceeds the window
	}{
		{"window full", 10, []int{10, 1}, 1},
		{"one chunk over the window", 10, []int{11}, 0},
		{"sender ignores the window", 10, []int{4, 4, 4}, 2},
		{"reading alone grants nothing", 10, []int{6, -4, 5}, 2},
		{"credit counts the grant", 10, []int{6, -6, 10, 1}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewStreamReader(tc.window, func(int64) {})
			for i, n := range tc.steps {
				if n < 0 {
					if _, err := r.Read(make([]byte, -n)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				err := r.Push(make([]byte, n))
				if i == tc.want && !errors.Is(err, ErrWindowExceeded) {
					t.Fatalf("push #%d of %d bytes = %v, want ErrWindowExceeded", i, n, err)
				}
				if i != tc.want && err != nil {
					t.Fatalf("push #%d of %d bytes: %v", i, n, err)
				}
			}
		})
	}
}

func TestStreamReaderWindowExceededKeepsNothing(t *testing.T) {
	r := NewStreamReader(10, func(int64) {})
	if err := r.Push([]byte("0123456789x")); !errors.Is(err, ErrWindowExceeded) {
		t.Fatalf("Push = %v, want ErrWindowExceeded", err)
	}
	if err := r.Push([]byte("ok")); err != nil {
		t.Fatalf("Push within the window after a refused one: %v", err)
	}
	r.Finish()
	if got, err := io.ReadAll(r); err != nil || string(got) != "ok" {
		t.Errorf("ReadAll = %q, %v; want ok", got, err)
	}
}

func TestStreamReaderClose(t *testing.T) {
	grants := 0
	r := NewStreamReader(10, func(int64) { grants++ })
	if err := r.Push([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Push([]byte("more than the window")); err != nil {
		t.Errorf("Push after Close = %v, want it dropped without error", err)
	}
	if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.ErrClosedPipe {
		t.Errorf("Read after Close = %d, %v; want 0, io.ErrClosedPipe", n, err)
	}
	if grants != 0 {
		t.Errorf("%d grants after Close", grants)
	}
}

func TestSendStreamMovesBodyExactly(t *testing.T) {
	const window = DefaultWindow
	body := testBody(10 << 20)
	tests := []struct {
		name      string
		chunkSize int
		body      io.Reader
	}{
		{"default chunks", DefaultChunkLimit, bytes.NewReader(body)},
		{"chunks split to fit the credit", 100_000, bytes.NewReader(body)},
		{"short reads", DefaultChunkLimit, iotest.HalfReader(bytes.NewReader(body))},
		{"data with EOF", 300_000, iotest.DataErrReader(bytes.NewReader(body))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTunnel(t)
			win := NewSendWindow(window)
			r := tn.open(requestID, window, win)
			got := consume(r)
			n, err := SendStream(t.Context(), requestID, tc.body, win, tc.chunkSize, tn.write)
			if err != nil || n != int64(len(body)) {
				t.Fatalf("SendStream = %d, %v; want %d, nil", n, err, len(body))
			}
			res := <-got
			if res.err != nil || !bytes.Equal(res.data, body) {
				t.Errorf("received %d bytes, %v; want the %d bytes sent", len(res.data), res.err, len(body))
			}
		})
	}
}

func TestSendStreamSplitsChunksToCredit(t *testing.T) {
	tests := []struct {
		name      string
		window    int64
		chunkSize int
		body      int
		chunks    []int
	}{
		{"credit below the chunk size", 5, 8, 20, []int{5, 3, 5, 3, 4}},
		{"credit above the chunk size", 100, 8, 20, []int{8, 8, 4}},
		{"credit equals the chunk size", 8, 8, 16, []int{8, 8}},
		{"empty body", 8, 8, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				win := NewSendWindow(tc.window)
				var chunks []int
				var last *Frame
				var received []byte
				// The consumer here is instant: each chunk is granted back
				// as it is written.
				write := func(_ context.Context, binary bool, data []byte) error {
					if !binary {
						f, err := Decode(data)
						last = f
						return err
					}
					id, chunk, err := DecodeChunk(data)
					if err != nil || id != requestID {
						t.Errorf("chunk for %q, %v", id, err)
					}
					chunks = append(chunks, len(chunk))
					received = append(received, chunk...)
					win.Grant(int64(len(chunk)))
					return nil
				}
				body := testBody(tc.body)
				n, err := SendStream(t.Context(), requestID, bytes.NewReader(body), win, tc.chunkSize, write)
				if err != nil || n != int64(tc.body) {
					t.Fatalf("SendStream = %d, %v; want %d, nil", n, err, tc.body)
				}
				if fmt.Sprint(chunks) != fmt.Sprint(tc.chunks) {
					t.Errorf("chunk sizes = %v, want %v", chunks, tc.chunks)
				}
				if !bytes.Equal(received, body) {
					t.Error("received bytes differ from the body")
				}
				if want := (&Frame{Type: TypeStreamEnd, MessageID: requestID}); !reflect.DeepEqual(last, want) {
					t.Errorf("last frame = %+v, want %+v", last, want)
				}
			})
		})
	}
}

// TestSendStreamSlowConsumerStallsOnlyItsStream runs two streams and a
// heartbeat over one tunnel. Stream A's consumer does not read: its sender
// stops once it has a window in flight, while stream B and the heartbeat
// still get through.
func TestSendStreamSlowConsumerStallsOnlyItsStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			window = 64 << 10
			size   = 1 << 20
			idA    = "stream-a"
			idB    = "stream-b"
		)
		tn := newTunnel(t)
		bodyA, bodyB := testBody(size), testBody(size)
		winA, winB := NewSendWindow(window), NewSendWindow(window)
		readerA, readerB := tn.open(idA, window, winA), tn.open(idB, window, winB)

		sentA := sendAsync(t.Context(), idA, bytes.NewReader(bodyA), winA, 16<<10, tn.write)
		sentB := sendAsync(t.Context(), idB, bytes.NewReader(bodyB), winB, 16<<10, tn.write)
		gotB := consume(readerB)
		synctest.Wait()

		select {
		case res := <-sentB:
			if res.err != nil || res.n != size {
				t.Errorf("stream B: SendStream = %d, %v", res.n, res.err)
			}
		default:
			t.Fatal("stream B stalled behind stream A")
		}
		if res := <-gotB; res.err != nil || !bytes.Equal(res.data, bodyB) {
			t.Errorf("stream B: received %d bytes, %v", len(res.data), res.err)
		}
		if len(sentA) != 0 {
			t.Fatalf("stream A finished without a reader: %+v", <-sentA)
		}
		if got := tn.pushedBytes(idA); got != window {
			t.Errorf("stream A has %d bytes in flight, want the window of %d", got, window)
		}

		heartbeat := &Frame{Type: TypeHeartbeat, MessageID: heartbeatID, Timestamp: 1}
		if err := tn.write(t.Context(), false, MustEncode(heartbeat)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case f := <-tn.control:
			if !reflect.DeepEqual(f, heartbeat) {
				t.Errorf("control frame %+v, want %+v", f, heartbeat)
			}
		default:
			t.Error("heartbeat stalled behind stream A")
		}

		gotA := consume(readerA)
		if res := <-sentA; res.err != nil || res.n != size {
			t.Errorf("stream A: SendStream = %d, %v", res.n, res.err)
		}
		if res := <-gotA; res.err != nil || !bytes.Equal(res.data, bodyA) {
			t.Errorf("stream A: received %d bytes, %v", len(res.data), res.err)
		}
	})
}

func TestSendStreamBodyReadError(t *testing.T) {
	errBoom := errors.New("tts: synthesis failed")
	tests := []struct {
		name string
		data int
		body func(data []byte) io.Reader
	}{
		{"before any data", 0, func([]byte) io.Reader { return iotest.ErrReader(errBoom) }},
		{"after some data", 300_000, func(data []byte) io.Reader {
			return io.MultiReader(bytes.NewReader(data), iotest.ErrReader(errBoom))
		}},
		{"with the last data", 1000, func(data []byte) io.Reader { return &dataThenError{data, errBoom} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTunnel(t)
			win := NewSendWindow(DefaultWindow)
			r := tn.open(requestID, DefaultWindow, win)
			got := consume(r)
			data := testBody(tc.data)
			n, err := SendStream(t.Context(), requestID, tc.body(data), win, 64<<10, tn.write)
			if !errors.Is(err, errBoom) || n != int64(tc.data) {
				t.Errorf("SendStream = %d, %v; want %d, %v", n, err, tc.data, errBoom)
			}
			res := <-got
			if !bytes.Equal(res.data, data) {
				t.Errorf("received %d bytes, want the %d read before the error", len(res.data), len(data))
			}
			if res.err == nil || res.err.Error() != errBoom.Error() {
				t.Errorf("reader ended with %v, want the stream_error text %q", res.err, errBoom)
			}
		})
	}
}

// dataThenError returns all its data and the error from one Read.
type dataThenError struct {
	data []byte
	err  error
}

func (r *dataThenError) Read(p []byte) (int, error) {
	n := copy(p, r.data)
	r.data = r.data[n:]
	if len(r.data) == 0 {
		return n, r.err
	}
	return n, nil
}

// TestSendStreamStops checks that a stream the peer no longer wants ends
// SendStream at once and without another frame: the peer sent cancel, or the
// tunnel is gone.
func TestSendStreamStops(t *testing.T) {
	errLost := errors.New("tunnel lost")
	tests := []struct {
		name string
		stop func(cancel context.CancelFunc, win *SendWindow)
		want error
	}{
		{"context canceled", func(cancel context.CancelFunc, _ *SendWindow) { cancel() }, context.Canceled},
		{"window closed", func(_ context.CancelFunc, win *SendWindow) { win.Close(errLost) }, errLost},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				win := NewSendWindow(10)
				var writes []string
				write := func(_ context.Context, binary bool, data []byte) error {
					writes = append(writes, fmt.Sprintf("binary=%v %d bytes", binary, len(data)))
					return nil
				}
				sent := sendAsync(ctx, requestID, bytes.NewReader(testBody(100)), win, 8, write)
				synctest.Wait()
				if len(sent) != 0 {
					t.Fatalf("SendStream returned %+v with no credit left", <-sent)
				}

				tc.stop(cancel, win)
				synctest.Wait()
				select {
				case res := <-sent:
					if !errors.Is(res.err, tc.want) || res.n != 10 {
						t.Errorf("SendStream = %d, %v; want 10, %v", res.n, res.err, tc.want)
					}
				default:
					t.Fatal("SendStream still blocked")
				}
				if len(writes) != 2 {
					t.Errorf("writes = %v, want the two chunks of the first window only", writes)
				}
			})
		})
	}
}

func TestSendStreamWriteError(t *testing.T) {
	errWrite := errors.New("write: broken pipe")
	calls := 0
	write := func(context.Context, bool, []byte) error {
		calls++
		return errWrite
	}
	n, err := SendStream(t.Context(), requestID, bytes.NewReader(testBody(100)), NewSendWindow(100), 10, write)
	if !errors.Is(err, errWrite) || n != 0 || calls != 1 {
		t.Errorf("SendStream = %d, %v after %d writes; want 0, %v after 1", n, err, calls, errWrite)
	}
}

func TestSendStreamRejectsArguments(t *testing.T) {
	tests := []struct {
		name      string
		id        string
		chunkSize int
	}{
		{"empty id", "", 10},
		{"id too long for a chunk", strings.Repeat("i", MaxIDLength+1), 10},
		{"zero chunk size", requestID, 0},
		{"negative chunk size", requestID, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			write := func(context.Context, bool, []byte) error {
				t.Error("write called")
				return nil
			}
			if n, err := SendStream(t.Context(), tc.id, strings.NewReader("body"), NewSendWindow(10), tc.chunkSize, write); err == nil {
				t.Errorf("SendStream = %d, nil; want an error", n)
			}
		})
	}
}

func BenchmarkSendStream(b *testing.B) {
	const size = 16 << 20
	body := testBody(size)
	tn := newTunnel(b)
	b.SetBytes(size)
	for b.Loop() {
		win := NewSendWindow(DefaultWindow)
		r := tn.open(requestID, DefaultWindow, win)
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, r)
			done <- err
		}()
		if _, err := SendStream(b.Context(), requestID, bytes.NewReader(body), win, DefaultChunkLimit, tn.write); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// TestStreamReaderBudgetCutsTheLaggardNotTheBurst proves that bytes held
// are weighed by the time they waited: a client that stopped reading
// seconds ago and holds a little is cut before a new stream whose sender's
// first burst, most of a window, has just arrived unread.
func TestStreamReaderBudgetCutsTheLaggardNotTheBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(1000)
		stalled := NewStreamReader(1000, func(int64) {}).Share(b)
		if err := stalled.Push(make([]byte, 300)); err != nil {
			t.Fatal(err)
		}
		if _, err := stalled.Read(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // virtual: the stalled client reads no more
		burst := NewStreamReader(1000, func(int64) {}).Share(b)
		if err := burst.Push(make([]byte, 700)); err != nil {
			t.Fatal(err)
		}
		if err := burst.Push(make([]byte, 200)); err != nil {
			t.Fatalf("the new stream was cut: %v", err)
		}
		if _, err := stalled.Read(make([]byte, 1)); !errors.Is(err, ErrBudgetExceeded) {
			t.Fatalf("the stalled stream reads %v, want ErrBudgetExceeded", err)
		}
		if used := b.Used(); used != 900 {
			t.Fatalf("Used %d, want the new stream's 900", used)
		}
		if n, err := io.ReadFull(burst, make([]byte, 900)); n != 900 || err != nil {
			t.Fatalf("the new stream read %d, %v", n, err)
		}
	})
}

// TestStreamReaderOnAbort proves that a consumer hears of its stream being
// given up by the budget when it happens, whether it registered before or
// after, and only then: a stream that ends, fails or is closed calls nothing.
func TestStreamReaderOnAbort(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before runs between Share and OnAbort, after once OnAbort is set;
		// victim is the reader the budget of 100 bytes may give up.
		before, after func(victim *StreamReader, other *StreamReader)
		calls         int
	}{
		{
			name:  "given up after registering",
			after: overflow,
			calls: 1,
		},
		{
			name:   "given up before registering",
			before: overflow,
			calls:  1,
		},
		{
			name: "given up twice over",
			after: func(victim, other *StreamReader) {
				overflow(victim, other)
				_ = other.Push(make([]byte, 1))
				_ = victim.Push(make([]byte, 1))
			},
			calls: 1,
		},
		{
			name:  "finished",
			after: func(victim, _ *StreamReader) { _ = victim.Push(make([]byte, 60)); victim.Finish() },
		},
		{
			name:  "failed",
			after: func(victim, _ *StreamReader) { victim.Fail(io.ErrUnexpectedEOF) },
		},
		{
			name: "closed, then over the budget",
			after: func(victim, other *StreamReader) {
				_ = victim.Close()
				overflow(victim, other)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := NewBudget(100)
				victim := NewStreamReader(1000, func(int64) {}).Share(b)
				other := NewStreamReader(1000, func(int64) {}).Share(b)
				if tc.before != nil {
					tc.before(victim, other)
				}
				var got []error
				victim.OnAbort(func(err error) { got = append(got, err) })
				if tc.after != nil {
					tc.after(victim, other)
				}
				if len(got) != tc.calls {
					t.Fatalf("OnAbort called %d times (%v), want %d", len(got), got, tc.calls)
				}
				for _, err := range got {
					if !errors.Is(err, ErrBudgetExceeded) {
						t.Fatalf("OnAbort called with %v, want ErrBudgetExceeded", err)
					}
				}
			})
		})
	}
}

// overflow takes a budget of 100 bytes over with victim holding the most,
// for the longest: the budget gives victim up.
func overflow(victim, other *StreamReader) {
	_ = victim.Push(make([]byte, 60))
	time.Sleep(time.Second) // virtual: victim's consumer reads nothing
	_ = other.Push(make([]byte, 50))
}

// TestStreamReaderBudget walks three readers that share one budget through
// pushes, reads, finishes, failures and closes, and checks after every step
// what Push or Read answered and what the budget counts. It pins Budget's
// contract: readers count their pushed but unread bytes in Used; when a Push
// takes Used over the limit, the reader that then holds the most unread bytes
// (the chunk just pushed included; time does not move here, so all readers
// have been still as long) is given up at once, its bytes dropped and
// given back, so that Used is within the limit again when Push returns; Push
// fails with ErrBudgetExceeded only if that reader is the pusher's, and the
// given-up reader's Read fails with it without draining; later pushes to it
// are dropped; Read and Close give bytes back, Finish and Fail leave them to
// be drained; a push the window refuses changes nothing; and once every
// reader is drained or closed Used is 0.
//
// Each pushed chunk is filled with a byte of its own, and every read is
// compared with what the reader was sent, so that a cut dropping the wrong
// bytes, or a chunk kept by the wrong reader, cannot go unnoticed. No case
// has two readers holding the most at once: which of them is cut is left
// open.
func TestStreamReaderBudget(t *testing.T) {
	errUpstream := errors.New("upstream: connection reset")
	type step struct {
		op     string // push, cut, refuse, read, drain, ended, finish, fail or close
		reader int
		n      int   // bytes pushed, or read
		err    error // what Read returns once the stream is over (ended)
		used   int64 // Budget.Used after the step
	}
	// push expects Push to return nil: the chunk is kept, it takes the
	// budget over and another reader is cut, or it is dropped because the
	// reader has ended.
	push := func(r, n int, used int64) step { return step{op: "push", reader: r, n: n, used: used} }
	// cut expects Push to fail with ErrBudgetExceeded: the pusher's reader
	// held the most and was given up.
	cut := func(r, n int, used int64) step { return step{op: "cut", reader: r, n: n, used: used} }
	// refuse expects Push to fail with ErrWindowExceeded.
	refuse := func(r, n int, used int64) step { return step{op: "refuse", reader: r, n: n, used: used} }
	// read reads exactly n bytes with a buffer of n.
	read := func(r, n int, used int64) step { return step{op: "read", reader: r, n: n, used: used} }
	// drain reads with a buffer larger than n and expects exactly the n
	// bytes still buffered.
	drain := func(r, n int, used int64) step { return step{op: "drain", reader: r, n: n, used: used} }
	// ended expects Read to return 0 and err at once.
	ended := func(r int, err error, used int64) step { return step{op: "ended", reader: r, err: err, used: used} }
	// gone expects the reader given up: Read fails at once, without
	// draining what it held.
	gone := func(r int, used int64) step { return ended(r, ErrBudgetExceeded, used) }
	finish := func(r int, used int64) step { return step{op: "finish", reader: r, used: used} }
	fail := func(r int, used int64) step { return step{op: "fail", reader: r, err: errUpstream, used: used} }
	closeReader := func(r int, used int64) step { return step{op: "close", reader: r, used: used} }

	tests := []struct {
		name   string
		limit  int64
		window int64
		steps  []step
	}{
		{"a chunk that fits", 10, 100, []step{
			push(0, 6, 6), read(0, 2, 4), drain(0, 4, 0),
		}},
		{"chunks that just fill the limit cut nobody", 10, 100, []step{
			push(0, 6, 6), push(1, 3, 9), push(2, 1, 10),
			drain(0, 6, 4), drain(1, 3, 1), drain(2, 1, 0),
		}},
		{"the pusher holding the most is cut", 10, 100, []step{
			// Reader 0 holds 8 against reader 1's 3 when Used reaches 11.
			push(1, 3, 3), push(0, 4, 7), cut(0, 4, 3),
			gone(0, 3), gone(0, 3), drain(1, 3, 0),
		}},
		{"a chunk over the whole limit cuts its own reader", 10, 100, []step{
			cut(0, 11, 0), gone(0, 0),
			// The budget is whole again for the others.
			push(1, 10, 10), drain(1, 10, 0),
		}},
		{"a zero budget cuts every chunk", 0, 100, []step{
			cut(0, 1, 0), cut(1, 1, 0), gone(0, 0), gone(1, 0),
		}},
		{"another reader holding more is cut instead", 10, 100, []step{
			// At 11, reader 0 holds 5, readers 1 and 2 hold 3 each: the
			// pusher and the third reader keep their bytes.
			push(0, 5, 5), push(2, 3, 8), push(1, 1, 9), push(1, 2, 6),
			gone(0, 6), drain(1, 3, 3), drain(2, 3, 0),
		}},
		{"unread bytes count, not bytes received", 10, 100, []step{
			// At 11, reader 0 has received 10 bytes but holds 3; reader 1
			// has received and holds 8.
			push(0, 9, 9), read(0, 7, 2), push(1, 4, 6), push(1, 4, 10), push(0, 1, 3),
			gone(1, 3), drain(0, 3, 0),
		}},
		{"a reader that keeps up is never cut, a lagging one is", 10, 100, []step{
			// Reader 0 reads each chunk before the next, reader 1 never
			// reads: at 12 it holds 9 of them.
			push(0, 3, 3), drain(0, 3, 0), push(1, 3, 3),
			push(0, 3, 6), drain(0, 3, 3), push(1, 3, 6),
			push(0, 3, 9), drain(0, 3, 6), push(1, 3, 9),
			push(0, 3, 3), gone(1, 3), drain(0, 3, 0),
			push(0, 3, 3), drain(0, 3, 0),
		}},
		{"a lagging reader's own chunk cuts it", 10, 100, []step{
			push(1, 4, 4), push(0, 3, 7), drain(0, 3, 4),
			push(1, 4, 8), push(0, 2, 10), drain(0, 2, 8),
			cut(1, 4, 0), gone(1, 0),
			push(0, 10, 10), drain(0, 10, 0),
		}},
		{"a cut gives back all a partly read reader held", 10, 100, []step{
			push(0, 5, 5), read(0, 2, 3), push(1, 2, 5), cut(0, 6, 2),
			gone(0, 2), drain(1, 2, 0),
		}},
		{"reads and close give bytes back", 10, 100, []step{
			push(0, 6, 6), push(1, 3, 9), read(0, 2, 7), read(1, 1, 6),
			closeReader(0, 2), closeReader(0, 2), push(0, 5, 2), ended(0, io.ErrClosedPipe, 2),
			// The room Close gave back takes a chunk without a cut.
			push(2, 8, 10), drain(1, 2, 8), drain(2, 8, 0),
		}},
		{"close of a drained reader gives back nothing", 10, 100, []step{
			push(0, 6, 6), push(1, 4, 10), drain(0, 6, 4), closeReader(0, 4), drain(1, 4, 0),
		}},
		{"finish then partial drain", 10, 100, []step{
			push(0, 6, 6), finish(0, 6), push(0, 3, 6),
			read(0, 4, 2), drain(0, 2, 0), ended(0, io.EOF, 0),
		}},
		{"fail then partial drain", 10, 100, []step{
			push(0, 5, 5), fail(0, 5), read(0, 2, 3), drain(0, 3, 0), ended(0, errUpstream, 0),
		}},
		{"a finished reader holding the most is cut", 10, 100, []step{
			// Its bytes still count until read, and its Read then fails
			// rather than drain them and report io.EOF.
			push(0, 6, 6), finish(0, 6), push(1, 5, 5), gone(0, 5), drain(1, 5, 0),
		}},
		{"window exceeded leaves the budget alone", 100, 10, []step{
			push(0, 6, 6), refuse(0, 5, 6), refuse(1, 11, 6), drain(0, 6, 0),
		}},
		// The window is checked first: a chunk it refuses is not counted,
		// so it cannot take the budget over and cut anyone.
		{"window exceeded over a spent budget cuts nobody", 10, 10, []step{
			push(1, 8, 8), refuse(1, 3, 8), refuse(0, 11, 8), drain(1, 8, 0),
			push(0, 10, 10), drain(0, 10, 0),
		}},
		// Four bytes read are under the batch of five, so no grant makes up
		// for credit a refused push might have eaten: the push of the six
		// bytes left fits the window only if the refusal took none.
		{"a refused push keeps the sender's credit", 10, 10, []step{
			push(0, 4, 4), refuse(0, 7, 4), read(0, 4, 0), push(0, 6, 6), drain(0, 6, 0),
		}},
		{"pushes to a given-up reader are dropped", 10, 100, []step{
			push(1, 2, 2), cut(0, 9, 2),
			// Even a chunk over the window: the stream is over.
			push(0, 5, 2), push(0, 200, 2), gone(0, 2), push(0, 1, 2),
			push(1, 8, 10), drain(1, 10, 0), gone(0, 0),
		}},
		{"pushes to a reader another's chunk cut are dropped", 10, 100, []step{
			push(0, 7, 7), push(1, 4, 4), push(0, 3, 4), gone(0, 4),
			push(0, 3, 4), drain(1, 4, 0), gone(0, 0),
		}},
		{"closing a given-up reader gives back nothing more", 10, 100, []step{
			push(0, 9, 9), push(1, 2, 2), closeReader(0, 2), drain(1, 2, 0),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// In a bubble a Read that wrongly blocks fails the test as a
			// deadlock instead of hanging it.
			synctest.Test(t, func(t *testing.T) {
				b := NewBudget(tc.limit)
				if got := b.Used(); got != 0 {
					t.Fatalf("new budget: Used = %d, want 0", got)
				}
				var readers [3]*StreamReader
				for i := range readers {
					r := NewStreamReader(tc.window, func(int64) {})
					if got := r.Share(b); got != r {
						t.Fatal("Share returned another reader")
					}
					readers[i] = r
				}
				// What each reader still has to deliver, and whether the
				// test knows it takes no more chunks.
				var unread [len(readers)][]byte
				var over [len(readers)]bool
				for i, s := range tc.steps {
					r := readers[s.reader]
					switch s.op {
					case "push", "cut", "refuse":
						chunk := bytes.Repeat([]byte{byte('a' + i%26)}, s.n)
						err := r.Push(chunk)
						var want error
						switch s.op {
						case "cut":
							want = ErrBudgetExceeded
						case "refuse":
							want = ErrWindowExceeded
						}
						if want == nil && err != nil || want != nil && !errors.Is(err, want) {
							t.Fatalf("step %d: reader %d Push(%d bytes) = %v, want %v", i, s.reader, s.n, err, want)
						}
						switch {
						case s.op == "cut":
							unread[s.reader], over[s.reader] = nil, true
						case s.op == "push" && !over[s.reader]:
							unread[s.reader] = append(unread[s.reader], chunk...)
						}
					case "read", "drain":
						buf := make([]byte, s.n)
						if s.op == "drain" {
							buf = make([]byte, s.n+100)
						}
						n, err := r.Read(buf)
						if n != s.n || err != nil {
							t.Fatalf("step %d: reader %d Read = %d, %v; want %d, nil", i, s.reader, n, err, s.n)
						}
						want := unread[s.reader]
						if s.op == "drain" && len(want) != s.n {
							t.Fatalf("step %d: reader %d drained %d bytes, but was sent %d more", i, s.reader, n, len(want))
						}
						if !bytes.HasPrefix(want, buf[:n]) {
							t.Fatalf("step %d: reader %d Read %q, want a prefix of %q", i, s.reader, buf[:n], want)
						}
						unread[s.reader] = want[n:]
					case "ended":
						if n, err := r.Read(make([]byte, 10)); n != 0 || !errors.Is(err, s.err) {
							t.Fatalf("step %d: reader %d Read = %d, %v; want 0, %v", i, s.reader, n, err, s.err)
						}
						unread[s.reader], over[s.reader] = nil, true
					case "finish":
						r.Finish()
						over[s.reader] = true
					case "fail":
						r.Fail(s.err)
						over[s.reader] = true
					case "close":
						if err := r.Close(); err != nil {
							t.Fatal(err)
						}
						unread[s.reader], over[s.reader] = nil, true
					default:
						t.Fatalf("step %d: unknown op %q", i, s.op)
					}
					if got := b.Used(); got != s.used {
						t.Fatalf("step %d (%s %d bytes, reader %d): Used = %d, want %d", i, s.op, s.n, s.reader, got, s.used)
					}
					if s.used > tc.limit {
						t.Fatalf("step %d: the case expects Used %d over the limit %d", i, s.used, tc.limit)
					}
				}
				for i, r := range readers {
					if len(unread[i]) != 0 {
						t.Errorf("case left %d bytes unread in reader %d", len(unread[i]), i)
					}
					if err := r.Close(); err != nil {
						t.Fatal(err)
					}
				}
				if got := b.Used(); got != 0 {
					t.Errorf("Used = %d once every reader is closed, want 0", got)
				}
			})
		})
	}
}

// TestStreamReaderBudgetConcurrent runs streams that share a budget the way
// the relay does: each stream's sender runs SendStream with a SendWindow of
// its own, which the reader's grants refill, and one goroutine pushes every
// chunk to its reader and finishes it at stream_end, as the session actor
// reading the tunnel does. Prompt readers drain their streams as chunks
// arrive, quitting ones read half of theirs then close it, and idle ones
// never read. An idle stream's window holds all of it, which the budget
// cannot, so every idle reader must be cut.
//
// A prompt reader the scheduler starved may be cut too: the budget weighs
// bytes held by the time they waited, and a starved consumer waits. Then it
// must have delivered a prefix of its body. In every case Used is within the
// limit whenever a Push has returned, as seen from the pushing goroutine, and
// 0 once every reader is drained, closed or given up.
func TestStreamReaderBudgetConcurrent(t *testing.T) {
	const (
		chunk = 1 << 10
		limit = 16 << 10
		// Four budgets' worth per stream: an idle reader cannot hold its
		// stream, and a quitting one has a window or more left to send when
		// it closes.
		size = 64 << 10
	)
	errQuit := errors.New("consumer quit")
	tests := []struct {
		name               string
		prompt, quit, idle int
		window             int64 // of prompt and quitting readers; an idle reader's holds its whole stream
	}{
		{"prompt readers within the budget", 8, 0, 0, 2 << 10},
		{"idle readers are cut", 5, 1, 2, 2 << 10},
		{"one idle reader among many", 15, 0, 1, 1 << 10},
		{"idle readers are cut among wide windows", 5, 1, 2, 16 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.prompt + tc.quit + tc.idle
			quits := func(i int) bool { return i >= tc.prompt && i < tc.prompt+tc.quit }
			idle := func(i int) bool { return i >= tc.prompt+tc.quit }

			b := NewBudget(limit)
			readers := make([]*StreamReader, n)
			wins := make([]*SendWindow, n)
			bodies := make([][]byte, n)
			for i := range n {
				window := tc.window
				if idle(i) {
					window = size
				}
				wins[i] = NewSendWindow(window)
				readers[i] = NewStreamReader(window, wins[i].Grant).Share(b)
				bodies[i] = make([]byte, size)
				// A body of its own per stream, so that bytes delivered to
				// the wrong reader cannot go unnoticed.
				_, _ = rand.NewChaCha8([32]byte{byte(i + 1)}).Read(bodies[i])
			}

			// The consumers. A consumer whose stream ends early closes its
			// sender's window, standing in for the cancel the receiver
			// sends, so that the sender stops waiting for credit.
			results := make([]chan readResult, n)
			for i := range n {
				if idle(i) {
					continue
				}
				results[i] = make(chan readResult, 1)
				go func() {
					var res readResult
					if quits(i) {
						buf := make([]byte, size/2)
						k, err := io.ReadFull(readers[i], buf)
						res = readResult{buf[:k], err}
						if err == nil {
							_ = readers[i].Close()
							wins[i].Close(errQuit)
						}
					} else {
						res.data, res.err = io.ReadAll(readers[i])
					}
					if res.err != nil {
						wins[i].Close(res.err)
					}
					results[i] <- res
				}()
			}

			// The tunnel: every sender writes to it, one goroutine pushes.
			type message struct {
				stream int
				binary bool
				data   []byte
			}
			tunnel := make(chan message)
			sendErrs := make([]error, n)
			var senders sync.WaitGroup
			for i := range n {
				write := func(ctx context.Context, binary bool, data []byte) error {
					select {
					case tunnel <- message{i, binary, data}:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				senders.Go(func() {
					_, sendErrs[i] = SendStream(t.Context(), fmt.Sprintf("stream-%d", i), bytes.NewReader(bodies[i]), wins[i], chunk, write)
				})
			}
			go func() {
				senders.Wait()
				close(tunnel)
			}()

			pushCut := make([]bool, n) // a Push to the stream reported it given up
			var peak int64
			pushed := make(chan struct{})
			go func() {
				defer close(pushed)
				for m := range tunnel {
					r := readers[m.stream]
					if !m.binary {
						if f, err := Decode(m.data); err != nil || f.Type != TypeStreamEnd {
							t.Errorf("stream %d: frame %+v, %v; want stream_end", m.stream, f, err)
						}
						r.Finish()
						continue
					}
					_, data, err := DecodeChunk(m.data)
					if err != nil {
						t.Errorf("stream %d: %v", m.stream, err)
						continue
					}
					switch err := r.Push(data); {
					case err == nil:
					case errors.Is(err, ErrBudgetExceeded):
						pushCut[m.stream] = true
					default:
						t.Errorf("stream %d: Push: %v", m.stream, err)
					}
					// Reads only lower Used, and nothing else pushes: a
					// sample taken here is an upper bound of Used as the
					// Push left it.
					used := b.Used()
					if used < 0 || used > limit {
						t.Errorf("Used = %d after a Push to stream %d, want between 0 and %d", used, m.stream, limit)
					}
					peak = max(peak, used)
				}
			}()

			<-pushed // every sender is done, and so is every Push
			cut := make([]bool, n)
			completed := 0
			for i := range n {
				if idle(i) {
					k, err := readers[i].Read(make([]byte, 1))
					cut[i] = errors.Is(err, ErrBudgetExceeded)
					if k != 0 || !cut[i] {
						t.Errorf("idle stream %d: Read = %d, %v; want 0, ErrBudgetExceeded at once", i, k, err)
					}
					if sendErrs[i] != nil {
						t.Errorf("idle stream %d: SendStream: %v; want the whole stream sent", i, sendErrs[i])
					}
					continue
				}
				res := <-results[i]
				want := bodies[i]
				if quits(i) {
					want = want[:size/2]
				}
				cut[i] = errors.Is(res.err, ErrBudgetExceeded)
				switch {
				case cut[i]:
					if !bytes.HasPrefix(want, res.data) {
						t.Errorf("stream %d, cut: read %d bytes that are not a prefix of its body", i, len(res.data))
					}
					if err := sendErrs[i]; err != nil && !errors.Is(err, ErrBudgetExceeded) {
						t.Errorf("stream %d, cut: SendStream: %v; want nil or ErrBudgetExceeded", i, err)
					}
				case res.err != nil || !bytes.Equal(res.data, want):
					t.Errorf("stream %d: read %d bytes, %v; want all %d, nil", i, len(res.data), res.err, len(want))
				case quits(i):
					if !errors.Is(sendErrs[i], errQuit) {
						t.Errorf("stream %d, quit: SendStream: %v; want %v", i, sendErrs[i], errQuit)
					}
				default:
					completed++
					if sendErrs[i] != nil {
						t.Errorf("stream %d: SendStream: %v", i, sendErrs[i])
					}
				}
			}
			for i := range n {
				switch {
				case pushCut[i] && !cut[i] && !quits(i):
					// A quitting reader may be cut between reading its half
					// and closing; any other must see its cut.
					t.Errorf("stream %d: Push reported it given up, yet its Read did not fail", i)
				}
			}
			if got := b.Used(); got != 0 {
				t.Errorf("Used = %d after every reader is drained, closed or given up; want 0", got)
			}
			for _, r := range readers {
				_ = r.Close()
			}
			if got := b.Used(); got != 0 {
				t.Errorf("Used = %d after every reader is closed, want 0", got)
			}
			// Where windows are wide, how many prompt streams kept up
			// depends on the scheduler; only the accounting must not.
			t.Logf("%d of %d prompt streams completed; Used peaked at %d of %d", completed, tc.prompt, peak, limit)
		})
	}
}

// Next hands out each chunk, in order and no more than asked at once,
// grants window as Read does, and ends with the stream's end.
func TestStreamReaderNextHandsOutChunksWhole(t *testing.T) {
	var granted []int64
	r := NewStreamReader(10, func(n int64) { granted = append(granted, n) })
	next := func(want string) {
		t.Helper()
		got, err := r.Next(3)
		if err != nil || string(got) != want {
			t.Fatalf("Next = %q, %v; want %q", got, err, want)
		}
	}
	for _, c := range []string{"abc", "de"} {
		if err := r.Push([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	next("abc")
	next("de")
	// Half the window taken: one grant of 5.
	if len(granted) != 1 || granted[0] != 5 {
		t.Fatalf("grants %v, want [5]", granted)
	}
	if err := r.Push([]byte("fghij")); err != nil {
		t.Fatal(err)
	}
	r.Finish()
	next("fgh")
	next("ij")
	if got, err := r.Next(3); got != nil || err != io.EOF {
		t.Fatalf("Next at the end = %q, %v; want io.EOF", got, err)
	}
	closed := NewStreamReader(10, func(int64) {})
	closed.Close()
	if _, err := closed.Next(3); err != io.ErrClosedPipe {
		t.Fatalf("Next after Close = %v, want io.ErrClosedPipe", err)
	}
}
