package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// ErrWindowExceeded is returned by StreamReader.Push when the sender has more
// chunk bytes in flight than the receiver granted. The peer ignores flow
// control, which the receiver treats as a protocol error.
var ErrWindowExceeded = errors.New("wire: stream window exceeded")

// ErrBudgetExceeded ends the StreamReader whose consumer lagged the most
// when the budget it shares with others ran out: the receiver gives its
// stream up rather than let the laggards of many streams add up.
var ErrBudgetExceeded = errors.New("wire: buffer budget exceeded")

// Budget bounds the bytes that many StreamReaders buffer together, besides
// each one's window. It is safe for concurrent use.
//
// When a chunk takes the readers over the budget, the reader whose consumer
// lags the most is given up: the one whose unread bytes times the time since
// its consumer last read is the largest (among equals, the one holding the
// most). Its buffer is dropped and its Read fails with ErrBudgetExceeded at
// once. Neither bytes nor time alone tells a laggard: a new stream that
// keeps up can hold a whole window for a moment, when its sender's first
// burst arrives, and a stream that keeps up can wait a moment for its
// consumer to be scheduled; a client that stopped reading holds bytes for
// good. So the budget is exceeded by at most one chunk, for a moment.
type Budget struct {
	limit int64
	mu    sync.Mutex
	used  int64
	held  map[*StreamReader]*holding // the readers that hold unread bytes
}

// holding is what one reader holds, and since when its consumer has read
// nothing: its last read, or the chunk that ended an empty buffer.
type holding struct {
	bytes int64
	since time.Time
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget {
	return &Budget{limit: limit, held: make(map[*StreamReader]*holding)}
}

// Used is how many bytes the readers sharing b hold now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// add counts n more bytes held by r. Over the limit, it forgets the reader
// whose consumer lags the most and returns it, for the caller to give up.
func (b *Budget) add(r *StreamReader, n int64) (victim *StreamReader) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.held[r]
	if h == nil {
		h = &holding{since: time.Now()}
		b.held[r] = h
	}
	h.bytes += n
	b.used += n
	if b.used <= b.limit {
		return nil
	}
	now := time.Now()
	var worst *holding
	for reader, h := range b.held {
		if worst == nil || h.lagsMore(worst, now) || *h == *worst && reader == r {
			// Ties go to the reader pushing, so that the choice does not
			// hang on map order.
			victim, worst = reader, h
		}
	}
	b.forgetLocked(victim)
	return victim
}

// lagsMore reports whether the consumer of h lags more than that of o at
// now: more bytes unread for longer, or, when that weighs the same, more
// bytes.
func (h *holding) lagsMore(o *holding, now time.Time) bool {
	if a, b := h.weight(now), o.weight(now); a != b {
		return a > b
	}
	return h.bytes > o.bytes
}

// weight is the bytes held times the seconds they have waited for a read.
func (h *holding) weight(now time.Time) float64 {
	return float64(h.bytes) * now.Sub(h.since).Seconds()
}

// release gives back n bytes r held, which its consumer just read; nothing
// if r was forgotten.
func (b *Budget) release(r *StreamReader, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.held[r]
	if h == nil {
		return
	}
	if h.bytes <= n {
		b.forgetLocked(r)
		return
	}
	h.bytes -= n
	h.since = time.Now()
	b.used -= n
}

// forget gives back everything r holds.
func (b *Budget) forget(r *StreamReader) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forgetLocked(r)
}

func (b *Budget) forgetLocked(r *StreamReader) {
	if h := b.held[r]; h != nil {
		b.used -= h.bytes
		delete(b.held, r)
	}
}

// SendWindow is a stream sender's credit of chunk bytes: it starts at the
// initial window and grows with each window_update. It is safe for concurrent
// use.
type SendWindow struct {
	mu     sync.Mutex
	credit int64
	err    error // set by Close; from then on Acquire fails
	// changed is closed (and replaced) whenever credit grows or the window
	// closes, so that waiters can select on it together with their context.
	changed chan struct{}
}

// NewSendWindow returns a window holding initial bytes of credit.
func NewSendWindow(initial int64) *SendWindow {
	return &SendWindow{credit: max(initial, 0), changed: make(chan struct{})}
}

// Acquire waits until the window has credit, then takes min(credit, limit)
// bytes of it and returns that amount. It fails, taking nothing, once ctx
// ends or the window is closed. A limit below 1 takes nothing.
func (w *SendWindow) Acquire(ctx context.Context, limit int) (int, error) {
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		w.mu.Lock()
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return 0, err
		}
		if limit < 1 {
			w.mu.Unlock()
			return 0, nil
		}
		if w.credit > 0 {
			n := min(w.credit, int64(limit))
			w.credit -= n
			w.mu.Unlock()
			return int(n), nil
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-changed:
		}
	}
}

// Grant adds n bytes of credit: a window_update arrived. Grants of n < 1 and
// grants after Close are ignored.
func (w *SendWindow) Grant(n int64) {
	if n < 1 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	// A peer granting absurd amounts must not wrap the credit negative.
	if w.credit > math.MaxInt64-n {
		w.credit = math.MaxInt64
	} else {
		w.credit += n
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

// Close fails every waiting and later Acquire with err (io.ErrClosedPipe if
// err is nil): the stream was aborted or the tunnel lost. Only the first
// Close counts.
func (w *SendWindow) Close(err error) {
	if err == nil {
		err = io.ErrClosedPipe
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
		close(w.changed)
	}
}

// StreamReader is the receiving end of one stream: an io.ReadCloser fed by
// Push with the chunks that arrive for it. It buffers at most its window, and
// gives credit back through grant as the consumer reads: once the bytes read
// since the last grant reach half the window, so that window_update frames go
// out in batches rather than one per chunk. grant is called from the reading
// goroutine, never with the reader's lock held, and never after the stream
// has ended (the sender has nothing more to send). Push, Finish, Fail and
// Close never block, so the goroutine reading the tunnel can call them.
type StreamReader struct {
	mu      sync.Mutex
	arrived sync.Cond           // signalled when a chunk arrives or the stream ends
	chunks  [][]byte            // copies of pushed chunks, oldest first; chunks[0] may be partly read
	batch   int64               // bytes to read before granting: half the window
	credit  int64               // bytes the sender may still push: window + granted - pushed
	drained int64               // bytes read but not yet granted back
	end     error               // io.EOF after Finish, the failure after Fail
	trailer map[string][]string // the stream_end's trailers
	closed  bool
	pushed  int64 // body bytes pushed so far, for a resume's offset
	grant   func(n int64)
	budget  *Budget     // shared with other readers; nil: none
	onAbort func(error) // see OnAbort; nil: none
}

// NewStreamReader returns the reader of a stream whose sender starts with
// window bytes of credit; grant sends a window_update for n more bytes.
func NewStreamReader(window int64, grant func(n int64)) *StreamReader {
	r := &StreamReader{batch: max(window/2, 1), credit: max(window, 0), grant: grant}
	r.arrived.L = &r.mu
	return r
}

// Share makes r count its buffered bytes against b (see Budget) and returns
// r. Call it before the first Push, from the goroutine that pushes.
func (r *StreamReader) Share(b *Budget) *StreamReader {
	r.budget = b
	return r
}

// Push adds one chunk to the buffer. It keeps chunk itself, without a
// copy: the caller hands it over and must not change it afterwards (a
// chunk decoded from a message that ReadMessage returned is the caller's
// own to give). It returns an error wrapping
// ErrWindowExceeded, and keeps nothing, if the chunk is larger than the
// credit the sender has left. If the chunk takes a shared budget over its
// limit, the reader whose consumer lags the most is given up (see Budget);
// if that is r, Push returns an error wrapping ErrBudgetExceeded. After Finish, Fail
// or Close the chunk is dropped without error.
func (r *StreamReader) Push(chunk []byte) error {
	r.mu.Lock()
	if r.closed || r.end != nil || len(chunk) == 0 {
		r.mu.Unlock()
		return nil
	}
	if int64(len(chunk)) > r.credit {
		r.mu.Unlock()
		return fmt.Errorf("%w: %d byte chunk with %d bytes of credit", ErrWindowExceeded, len(chunk), r.credit)
	}
	r.credit -= int64(len(chunk))
	r.pushed += int64(len(chunk))
	r.chunks = append(r.chunks, chunk)
	r.arrived.Signal()
	var victim *StreamReader
	if r.budget != nil {
		// Counted under r.mu, so that a Read cannot give the bytes back
		// before they are counted.
		victim = r.budget.add(r, int64(len(chunk)))
	}
	r.mu.Unlock()
	if victim == nil {
		return nil
	}
	err := fmt.Errorf("%w: this stream's consumer lagged the most when the budget of %d bytes ran out", ErrBudgetExceeded, r.budget.limit)
	victim.abort(err)
	if victim == r {
		return err
	}
	return nil
}

// abort ends the stream with err at once, dropping what is buffered: Read
// returns err without draining, and the OnAbort callback, if any, is called.
func (r *StreamReader) abort(err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.end = err
	r.chunks = nil
	r.budget.forget(r)
	r.arrived.Broadcast()
	f := r.onAbort
	r.mu.Unlock()
	if f != nil {
		f(err)
	}
}

// OnAbort has f called, once, when the shared budget gives r up (see
// Budget), with the error Read then returns; at once if that happened
// already. A consumer does not read while it writes what it took before,
// and a consumer that lags is most likely stuck in such a write: f is how
// it learns of the abort then, from the goroutine that pushed. f must not
// block.
func (r *StreamReader) OnAbort(f func(error)) {
	r.mu.Lock()
	end := r.end
	if !errors.Is(end, ErrBudgetExceeded) {
		r.onAbort = f
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	f(end)
}

// Rebind hands the stream to another sender connection (stream_resume):
// from now on window_updates go through grant. It returns the body bytes
// pushed so far, where the sender must go on from, and the credit the
// sender has from there, every grant made so far counted (some may have
// been lost with the old connection).
func (r *StreamReader) Rebind(grant func(n int64)) (offset, credit int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.grant = grant
	return r.pushed, r.credit
}

// Finish marks the end of the stream (stream_end): Read returns io.EOF once
// the buffer is drained.
func (r *StreamReader) Finish() {
	r.endWith(io.EOF)
}

// FinishWith is Finish of a stream_end that carries trailers (see
// Trailers).
func (r *StreamReader) FinishWith(trailers map[string][]string) {
	r.mu.Lock()
	if r.end == nil {
		r.trailer = trailers
	}
	r.mu.Unlock()
	r.endWith(io.EOF)
}

// Trailers are the trailers of a stream that ended with them (FinishWith);
// nil before its end or without any.
func (r *StreamReader) Trailers() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.trailer
}

// Trailered is a body whose trailers are known once it has been read to
// its end (an HTTP response's): a stream sender puts them in stream_end.
type Trailered interface {
	Trailers() map[string][]string
}

// Fail aborts the stream (stream_error, or the tunnel was lost): Read returns
// err, or io.ErrUnexpectedEOF if err is nil, once the buffer is drained. A
// stream that already ended keeps its first ending.
func (r *StreamReader) Fail(err error) {
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	r.endWith(err)
}

func (r *StreamReader) endWith(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.end == nil {
		r.end = err
		r.arrived.Broadcast()
	}
}

// Read blocks until there is data, the stream has ended, or the reader is
// closed, then fills p from the buffer.
func (r *StreamReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := r.await(); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) && len(r.chunks) > 0 {
		c := copy(p[n:], r.chunks[0])
		n += c
		if c == len(r.chunks[0]) {
			r.chunks[0] = nil
			r.chunks = r.chunks[1:]
		} else {
			r.chunks[0] = r.chunks[0][c:]
		}
	}
	r.consumed(n)
	return n, nil
}

// Next is Read without the copy: it returns at most max bytes of the next
// buffered chunk, as a slice of it, which becomes the caller's. A relay
// copying a body to its client writes what arrived without copying it, and
// the bytes it has taken but not yet written stay bounded by max (they no
// longer count against a shared budget). At the end it returns the stream's
// error, io.EOF when it ended well.
func (r *StreamReader) Next(max int) ([]byte, error) {
	if err := r.await(); err != nil {
		return nil, err
	}
	chunk := r.chunks[0]
	if len(chunk) > max {
		r.chunks[0] = chunk[max:]
		chunk = chunk[:max:max]
	} else {
		r.chunks[0] = nil
		r.chunks = r.chunks[1:]
	}
	r.consumed(len(chunk))
	return chunk, nil
}

// await blocks until there is data, the stream has ended, or the reader is
// closed. With data it returns nil and r.mu held, for consumed to release;
// otherwise the error that ends reading, r.mu released.
func (r *StreamReader) await() error {
	r.mu.Lock()
	for len(r.chunks) == 0 && r.end == nil && !r.closed {
		r.arrived.Wait()
	}
	if r.closed {
		r.mu.Unlock()
		return io.ErrClosedPipe
	}
	if len(r.chunks) == 0 {
		err := r.end
		r.mu.Unlock()
		return err
	}
	return nil
}

// consumed counts n bytes taken by the consumer, with r.mu held, releases
// r.mu and grants window once half of it has been taken.
func (r *StreamReader) consumed(n int) {
	r.drained += int64(n)
	if r.budget != nil {
		r.budget.release(r, int64(n))
	}
	var grant int64
	send := r.grant
	if r.end == nil && r.drained >= r.batch {
		// Count the credit before the window_update leaves, so that chunks
		// sent in answer to it are never taken for excess.
		grant, r.drained = r.drained, 0
		r.credit += grant
	}
	r.mu.Unlock()
	if grant > 0 {
		send(grant)
	}
}

// Close gives the stream up: the buffer is released, later pushes are
// dropped, and Read returns io.ErrClosedPipe.
func (r *StreamReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.chunks = nil
	if r.budget != nil {
		r.budget.forget(r)
	}
	r.arrived.Broadcast()
	return nil
}

// SendStream sends body as the stream messageID: it reads up to chunkSize
// bytes at a time, takes credit for them from win (splitting a read that is
// larger than the credit), and hands each binary chunk to write, then a
// stream_end frame once body is at EOF. It returns the body bytes sent.
//
// If reading body fails, SendStream writes a stream_error frame with the
// error's text and returns the read error. If ctx ends, win is closed, or a
// write fails, it returns at once and writes nothing more: the stream is
// already dead for the peer (a cancel arrived, or the tunnel is gone). ctx
// does not interrupt a body.Read in progress; cancel body's source as well.
//
// write receives a fresh slice on every call and may keep it.
func SendStream(ctx context.Context, messageID string, body io.Reader, win *SendWindow, chunkSize int, write func(ctx context.Context, binary bool, data []byte) error) (int64, error) {
	if err := checkChunkID(messageID); err != nil {
		return 0, err
	}
	if chunkSize < 1 {
		return 0, fmt.Errorf("wire: chunk size must be positive, got %d", chunkSize)
	}
	buf := make([]byte, chunkSize)
	var sent int64
	for {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		n, readErr := body.Read(buf)
		for data := buf[:n]; len(data) > 0; {
			k, err := win.Acquire(ctx, len(data))
			if err != nil {
				return sent, err
			}
			if err := write(ctx, true, layoutChunk(messageID, data[:k])); err != nil {
				return sent, err
			}
			sent += int64(k)
			data = data[k:]
		}
		switch {
		case readErr == io.EOF:
			return sent, write(ctx, false, MustEncode(&Frame{Type: TypeStreamEnd, MessageID: messageID}))
		case readErr != nil:
			frame := MustEncode(&Frame{Type: TypeStreamError, MessageID: messageID, Error: readErr.Error()})
			if err := write(ctx, false, frame); err != nil {
				return sent, errors.Join(readErr, err)
			}
			return sent, readErr
		}
	}
}
