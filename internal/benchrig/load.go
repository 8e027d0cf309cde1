package benchrig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// requestTimeout bounds one request or message round trip, so that a stuck
// answer is an error rather than a hung run.
const requestTimeout = 10 * time.Second

// readBuffer is each connection's buffer for reading answers.
const readBuffer = 64 << 10

// exchange sends one request on a connection and reads its answer whole:
// the body bytes and the time from the start to the first of them.
type exchange func(ctx context.Context) (n int64, ttfb time.Duration, err error)

// dialer opens one connection of a closed loop: its exchange and how to
// close it.
type dialer func(ctx context.Context) (exchange, func(), error)

// loopResult is what a closed loop measured.
type loopResult struct {
	requests int64 // answered whole and right
	errors   int64 // failed, warm-up included
	firstErr error
	bytes    int64
	elapsed  time.Duration
	// latencies and ttfbs of the requests counted, unsorted.
	latencies, ttfbs []time.Duration
}

// worker is one connection's share of a loopResult.
type worker struct {
	requests, errors, bytes int64
	firstErr                error
	latencies, ttfbs        []time.Duration
}

func (w *worker) fail(err error) {
	w.errors++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// closedLoop runs conns connections, each sending its next request as soon
// as it has read the previous answer, for d. Each connection first makes
// one exchange that is not timed (its dial, the server's first request),
// then mark is called, the clock starts, and mark is called again once the
// last exchange has ended, so that mark's readings span exactly the timed
// requests. A connection that stopOnError stops at its first error (a
// WebSocket is broken then); others go on.
func closedLoop(ctx context.Context, conns int, d time.Duration, dial dialer, stopOnError bool, mark func() error) (*loopResult, error) {
	exchanges := make([]exchange, 0, conns)
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	defer closeAll()
	for range conns {
		ex, closeConn, err := dial(ctx)
		if err != nil {
			return nil, fmt.Errorf("connecting: %w", err)
		}
		exchanges = append(exchanges, ex)
		closers = append(closers, closeConn)
	}
	// An interrupt closes the connections, so that no read holds the
	// run for requestTimeout.
	stopClosing := context.AfterFunc(ctx, closeAll)
	defer stopClosing()

	workers := make([]worker, conns)
	var warm, done sync.WaitGroup
	start := make(chan struct{})
	var deadline time.Time // written before start is closed
	for i, ex := range exchanges {
		w := &workers[i]
		warm.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			_, _, err := ex(ctx)
			if err != nil {
				w.fail(fmt.Errorf("warm-up: %w", err))
			}
			warm.Done()
			<-start
			if err != nil && stopOnError {
				return
			}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				n, ttfb, err := ex(ctx)
				if err != nil {
					w.fail(err)
					if stopOnError {
						return
					}
					continue
				}
				w.latencies = append(w.latencies, time.Since(t0))
				w.ttfbs = append(w.ttfbs, ttfb)
				w.requests++
				w.bytes += n
			}
		}()
	}
	warm.Wait()
	markErr := mark()
	t0 := time.Now()
	deadline = t0.Add(d)
	close(start)
	done.Wait()
	elapsed := time.Since(t0)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(markErr, mark()); err != nil {
		return nil, err
	}
	r := &loopResult{elapsed: elapsed}
	for _, w := range workers {
		r.requests += w.requests
		r.errors += w.errors
		r.bytes += w.bytes
		if r.firstErr == nil {
			r.firstErr = w.firstErr
		}
		r.latencies = append(r.latencies, w.latencies...)
		r.ttfbs = append(r.ttfbs, w.ttfbs...)
	}
	return r, nil
}

// httpDialer makes GET requests for url through client, whose transport
// keeps one connection per closed-loop connection alive.
func httpDialer(client *http.Client, url string) dialer {
	return func(context.Context) (exchange, func(), error) {
		buf := make([]byte, readBuffer)
		return func(ctx context.Context) (int64, time.Duration, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return 0, 0, err
			}
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return 0, 0, err
			}
			defer resp.Body.Close()
			n, ttfb, err := readAll(resp.Body, buf, t0)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
			}
			return n, ttfb, err
		}, func() {}, nil
	}
}

// newHTTPClient returns a client of its own for conns keep-alive
// connections: nothing is shared between runs, nothing compressed, no
// proxy from the environment.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			DisableCompression:  true,
		},
		Timeout: requestTimeout,
	}
}

// wsDialer sends msg as a text message on a WebSocket of its own to url
// and reads the one answer, which must be want bytes long.
func wsDialer(url string, msg []byte, want int64) dialer {
	return func(ctx context.Context) (exchange, func(), error) {
		d := websocket.Dialer{HandshakeTimeout: requestTimeout}
		c, _, err := d.DialContext(ctx, url, nil)
		if err != nil {
			return nil, nil, err
		}
		c.SetReadLimit(MaxBytes + 1)
		buf := make([]byte, readBuffer)
		return func(context.Context) (int64, time.Duration, error) {
			t0 := time.Now()
			if err := c.SetWriteDeadline(t0.Add(requestTimeout)); err != nil {
				return 0, 0, err
			}
			if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
				return 0, 0, err
			}
			if err := c.SetReadDeadline(t0.Add(requestTimeout)); err != nil {
				return 0, 0, err
			}
			_, r, err := c.NextReader()
			if err != nil {
				return 0, 0, err
			}
			n, ttfb, err := readAll(r, buf, t0)
			if err == nil && n != want {
				err = fmt.Errorf("answer of %d bytes, want %d", n, want)
			}
			return n, ttfb, err
		}, func() { c.Close() }, nil
	}
}

// readAll reads r to its end into buf, again and again, and returns the
// bytes read and when the first arrived, counted from t0.
func readAll(r io.Reader, buf []byte, t0 time.Time) (int64, time.Duration, error) {
	var n int64
	var ttfb time.Duration
	for {
		k, err := r.Read(buf)
		if k > 0 && n == 0 {
			ttfb = time.Since(t0)
		}
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, ttfb, nil
		}
		if err != nil {
			return n, ttfb, err
		}
	}
}

// median returns the middle of samples (which it sorts), by the nearest
// rank; 0 for none.
func median(samples []time.Duration) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	return samples[int(math.Ceil(0.5*float64(len(samples))))-1]
}
