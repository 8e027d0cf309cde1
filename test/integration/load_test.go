package integration

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

func TestConcurrentRequestsEachGetTheirOwnAnswer(t *testing.T) {
	const n = 200
	// The upstream holds every request until all n have arrived: they are
	// then all in flight through the one tunnel at the same time.
	var arrived atomic.Int32
	all := make(chan struct{})
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.URL.Query().Get("token")
		body, _ := io.ReadAll(r.Body)
		if arrived.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(patience):
			http.Error(w, "not all requests arrived together", http.StatusInternalServerError)
			return
		case <-r.Context().Done():
			return
		}
		if r.Header.Get("X-Token") != token || string(body) != "body of "+token {
			http.Error(w, "the request's parts belong to different requests", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Token", token)
		fmt.Fprintf(w, "answer to %s: %s", token, strings.Repeat(token, 100))
	})
	w, r, tn := connect(t, upstream, nil, nil)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			token := "t" + strconv.Itoa(i)
			req, err := http.NewRequest(http.MethodPost, publicURL(r, "/answer?token="+token), strings.NewReader("body of "+token))
			if err != nil {
				errs <- err
				return
			}
			req.Header.Set("X-Token", token)
			resp, body, err := w.do(req)
			switch want := fmt.Sprintf("answer to %s: %s", token, strings.Repeat(token, 100)); {
			case err != nil:
				errs <- fmt.Errorf("%s: %v", token, err)
			case resp.StatusCode != http.StatusOK:
				errs <- fmt.Errorf("%s: status %d, body %q", token, resp.StatusCode, body)
			case string(body) != want || resp.Header.Get("X-Token") != token:
				errs <- fmt.Errorf("%s: got the answer %.40q (X-Token %q)", token, body, resp.Header.Get("X-Token"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := arrived.Load(); got != n {
		t.Errorf("the upstream saw %d requests, want %d", got, n)
	}
	if st := tn.Status(); !st.Connected || st.Health.Drops != 0 {
		t.Errorf("after the burst: state %s, %d drops; want one connection throughout", st.State, st.Health.Drops)
	}
}

// endless is the body of the slow stream: bytes that never repeat, made as
// they are needed, so either end can check them piece by piece.
func endless() io.Reader { return rand.NewChaCha8([32]byte{'s', 'l', 'o', 'w'}) }

// slowUpstream serves /slow: an endless body, until the request is
// cancelled, counting what it has written; and /quick: a short answer.
type slowUpstream struct {
	written atomic.Int64
	ended   chan struct{} // closed when /slow returns
}

func (s *slowUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/quick" {
		fmt.Fprintf(w, "quick %s", r.URL.Query().Get("n"))
		return
	}
	defer close(s.ended)
	src := endless()
	buf := make([]byte, 32<<10)
	rc := http.NewResponseController(w)
	for r.Context().Err() == nil {
		_, _ = io.ReadFull(src, buf)
		n, err := w.Write(buf)
		s.written.Add(int64(n))
		if err != nil {
			return
		}
		_ = rc.Flush()
	}
}

// rttSample is what the status says of heartbeat round trips.
type rttSample struct {
	last *float64
	mean float64
}

func (a rttSample) differs(b rttSample) bool {
	return (a.last == nil) != (b.last == nil) || a.last != nil && *a.last != *b.last || a.mean != b.mean
}

// sameAs reads n bytes of r and compares them with the next n of want.
func sameAs(r, want io.Reader, n int) error {
	got, exp := make([]byte, n), make([]byte, n)
	if _, err := io.ReadFull(r, got); err != nil {
		return err
	}
	_, _ = io.ReadFull(want, exp)
	if !bytes.Equal(got, exp) {
		return fmt.Errorf("bytes differ from the upstream's (first difference at %d of %d)", firstDiff(got, exp), n)
	}
	return nil
}

func TestSlowClientStallsOnlyItsOwnStream(t *testing.T) {
	up := &slowUpstream{ended: make(chan struct{})}
	w, r, tn := connect(t, up, nil, nil)

	// The slow client reads a trickle, checking every byte, until told
	// to hurry; then it reads 1 MiB at full speed and leaves.
	resp, err := w.client.Get(publicURL(r, "/slow"))
	if err != nil {
		t.Fatalf("GET /slow: %v", err)
	}
	hurry := make(chan struct{})
	slowDone := make(chan error, 1)
	var slowRead atomic.Int64
	go func() {
		defer resp.Body.Close()
		want := endless()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if err := sameAs(resp.Body, want, 512); err != nil {
					slowDone <- fmt.Errorf("trickle: %v", err)
					return
				}
				slowRead.Add(512)
			case <-hurry:
				slowDone <- sameAs(resp.Body, want, 1<<20)
				return
			}
		}
	}()
	hurried := false
	defer func() {
		if !hurried {
			close(hurry)
		}
	}()

	// The stream backs up: the upstream gets ahead of the client until the
	// stream's window and the sockets' buffers are full, and then writes
	// no faster than the client reads (a window update every 512 KiB
	// read, some seconds apart).
	var mark int64
	var since time.Time
	harness.Eventually(t, patience, "the slow stream to be held back", func() bool {
		if n := up.written.Load(); since.IsZero() || n > mark+256<<10 {
			mark, since = n, time.Now()
			return false
		}
		return mark > 2<<20 && time.Since(since) > 500*time.Millisecond
	})
	heldAt, readAt := up.written.Load(), slowRead.Load()

	before := rttSample{tn.Status().Health.LastHeartbeatRTT, tn.Status().Health.MeanHeartbeatRTT}
	for i := range 20 {
		code, body := w.get(publicURL(r, "/quick?n="+strconv.Itoa(i)))
		if want := "quick " + strconv.Itoa(i); code != http.StatusOK || string(body) != want {
			t.Fatalf("request %d beside the slow stream: %d %q, want 200 %q", i, code, body, want)
		}
	}
	// Heartbeats go on: their round trip is measured again and again.
	changes := 0
	harness.Eventually(t, patience, "three new heartbeat round trips", func() bool {
		h := tn.Status().Health
		if now := (rttSample{h.LastHeartbeatRTT, h.MeanHeartbeatRTT}); now.differs(before) {
			changes++
			before = now
		}
		return changes >= 3
	})
	st := tn.Status()
	if st.State != messages.Authenticated || st.Health.Drops != 0 {
		t.Errorf("beside the slow stream: state %s, %d drops; want AUTHENTICATED throughout", st.State, st.Health.Drops)
	}
	// Meanwhile the upstream wrote about what the client read, no more.
	if wrote, read := up.written.Load()-heldAt, slowRead.Load()-readAt; wrote > read+4<<20 {
		t.Errorf("beside the other requests the upstream wrote %d bytes while the client read %d: the stream was not held back", wrote, read)
	}
	t.Logf("held at %d written; then %d written, %d read", heldAt, up.written.Load()-heldAt, slowRead.Load()-readAt)

	hurried = true
	close(hurry)
	select {
	case err := <-slowDone:
		if err != nil {
			t.Errorf("slow stream: %v", err)
		}
	case <-time.After(patience):
		t.Fatal("the slow stream did not go on once read at full speed")
	}
	// The client has left: the upstream request is cancelled.
	select {
	case <-up.ended:
	case <-time.After(patience):
		t.Fatal("the upstream request of the departed client was not cancelled")
	}
}
