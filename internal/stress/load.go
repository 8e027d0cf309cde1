package stress

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"time"
)

// requestDeadline is how long a request may take before it counts as lost
// (a hang): far beyond the relay's request timeout (504), so that only a
// request nobody answers reaches it.
const requestDeadline = 30 * time.Second

// echoSize is the body of an echo request: over the 64 KiB inline limit, so
// it is streamed both ways.
const echoSize = 96 << 10

const healthBody = `{"status":"ok"}` + "\n"

// How a request ended.
type verdict int

const (
	ok     verdict = iota
	failed         // an explicit error: 502/503/504 with the relay's JSON error, or a stream the relay aborted
	lost           // no proper answer: transport error, hang, truncated or corrupt body, unexpected status
)

type result struct {
	verdict verdict
	why     string // the status ("502"), "aborted_midstream", or the kind of loss
	detail  string // for a loss: what exactly happened
}

// tally counts the requests. sent is counted once a request has ended, so
// that sent = ok + failed + lost always holds.
type tally struct {
	mu          sync.Mutex
	sent, ok    int
	failed      int
	lost        int
	failedBy    map[string]int
	lostBy      map[string]int
	lostDetails []string // the first few, to tell what went wrong
	began       time.Time
}

// lostShown is how many lost requests the report describes.
const lostShown = 10

func newTally() *tally {
	return &tally{failedBy: map[string]int{}, lostBy: map[string]int{}, began: time.Now()}
}

func (t *tally) add(r result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent++
	switch r.verdict {
	case ok:
		t.ok++
	case failed:
		t.failed++
		t.failedBy[r.why]++
	case lost:
		t.lost++
		t.lostBy[r.why]++
		if len(t.lostDetails) < lostShown {
			t.lostDetails = append(t.lostDetails, fmt.Sprintf("at %.1fs, %s: %s", time.Since(t.began).Seconds(), r.why, r.detail))
		}
	}
}

// request is one public request and the check of a 200 answer.
type request struct {
	method, path string
	contentType  string
	body         []byte
	check        func(h http.Header, body []byte) error
}

var words = strings.Fields("the quick brown fox jumps over a lazy dog while seven tired relays hum softly in the dark")

func sentence(rng *rand.Rand, minRunes, maxRunes int) string {
	n := minRunes + rng.IntN(maxRunes-minRunes+1)
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()[:n]
}

// pick draws the next request: a small inline answer, a short or a long
// streamed speech, or an echo streamed both ways.
func pick(rng *rand.Rand) request {
	switch p := rng.IntN(100); {
	case p < 35:
		return request{method: http.MethodGet, path: "/healthz", check: checkHealth}
	case p < 60:
		return speech(sentence(rng, 5, 15))
	case p < 85:
		return speech(sentence(rng, 40, 120))
	default:
		body := make([]byte, echoSize)
		for i := range body {
			body[i] = byte(rng.IntN(256))
		}
		return request{method: http.MethodPost, path: "/echo", contentType: "application/octet-stream", body: body, check: func(_ http.Header, got []byte) error {
			if !bytes.Equal(got, body) {
				return fmt.Errorf("echo of %d bytes came back as %d different bytes", len(body), len(got))
			}
			return nil
		}}
	}
}

func speech(text string) request {
	body, _ := json.Marshal(map[string]string{"text": text})
	return request{method: http.MethodPost, path: "/v1/tts", contentType: "application/json", body: body, check: checkWAV}
}

func checkHealth(_ http.Header, body []byte) error {
	if string(body) != healthBody {
		return fmt.Errorf("health answered %q", body)
	}
	return nil
}

// checkWAV checks that the whole WAV its header announces arrived.
func checkWAV(h http.Header, wav []byte) error {
	if ct := h.Get("Content-Type"); ct != "audio/wav" {
		return fmt.Errorf("content type %q", ct)
	}
	if len(wav) < 44 || string(wav[:4]) != "RIFF" {
		return fmt.Errorf("%d bytes without a WAV header", len(wav))
	}
	if want := 44 + int(binary.LittleEndian.Uint32(wav[40:44])); len(wav) != want {
		return fmt.Errorf("WAV of %d bytes, its header says %d", len(wav), want)
	}
	return nil
}

// send makes one request to base and judges the answer.
func send(client *http.Client, base string, req request) result {
	ctx, cancel := context.WithTimeout(context.Background(), requestDeadline)
	defer cancel()
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	// How the connection was had tells a keep-alive race from a relay
	// that cut a fresh connection.
	var conn string
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		conn = fmt.Sprintf("new connection %v", ci.Conn.LocalAddr())
		if ci.Reused {
			conn = fmt.Sprintf("reused connection %v, idle %v", ci.Conn.LocalAddr(), ci.IdleTime)
		}
	}}
	hr, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), req.method, base+req.path, body)
	if err != nil {
		return result{verdict: lost, why: "bad_request", detail: err.Error()}
	}
	if req.contentType != "" {
		hr.Header.Set("Content-Type", req.contentType)
	}
	resp, err := client.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return result{verdict: lost, why: "hang", detail: req.path + ": no answer within " + requestDeadline.String()}
		}
		return result{verdict: lost, why: "transport", detail: fmt.Sprintf("%s on %s: %v", req.path, conn, err)}
	}
	defer resp.Body.Close()
	got, readErr := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		switch {
		case readErr != nil && ctx.Err() != nil:
			return result{verdict: lost, why: "hang", detail: fmt.Sprintf("%s: body stalled after %d bytes", req.path, len(got))}
		case readErr != nil:
			// The status line was out when the tunnel went: the relay cuts
			// the public connection (PROTOCOL.md), which the client sees as
			// a broken body, never as a clean end.
			return result{verdict: failed, why: "aborted_midstream"}
		}
		if err := req.check(resp.Header, got); err != nil {
			return result{verdict: lost, why: "truncated_or_corrupt", detail: fmt.Sprintf("%s on %s: %v (headers %v)", req.path, conn, err, resp.Header)}
		}
		return result{verdict: ok}
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		var e struct{ Error string }
		if readErr == nil && json.Unmarshal(got, &e) == nil && e.Error != "" {
			return result{verdict: failed, why: strconv.Itoa(resp.StatusCode)}
		}
		return result{verdict: lost, why: "error_without_reason", detail: fmt.Sprintf("%s: %d %q %v", req.path, resp.StatusCode, got, readErr)}
	}
	return result{verdict: lost, why: "status_" + strconv.Itoa(resp.StatusCode), detail: fmt.Sprintf("%s: %q", req.path, got)}
}

// load is the request traffic: Concurrency clients, each sending one
// request after the other until stopped. A request holds gate for reading
// while it runs; a relay restart takes it for writing (see injector).
type load struct {
	client *http.Client
	base   string
	gate   *sync.RWMutex
	tally  *tally
	stop   chan struct{}
	wg     sync.WaitGroup
}

func (l *load) start(seed int64, clients int, guard func(string, func())) {
	for i := range clients {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			guard(fmt.Sprintf("client %d", i), func() { l.run(rng) })
		}()
	}
}

// failurePause is how long a client waits after a request that did not
// succeed, as a client backing off would: an outage is not a busy loop of
// 503s that would swamp the counts.
const failurePause = 250 * time.Millisecond

// run is one client: it sends requests until stop, pausing up to 20 ms
// between them, failurePause after one that did not succeed.
func (l *load) run(rng *rand.Rand) {
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		req := pick(rng)
		l.gate.RLock()
		r := send(l.client, l.base, req)
		l.gate.RUnlock()
		l.tally.add(r)
		pause := time.Duration(rng.IntN(20)) * time.Millisecond
		if r.verdict != ok {
			pause = failurePause
		}
		select {
		case <-l.stop:
			return
		case <-time.After(pause):
		}
	}
}

// finish stops the clients and waits until every request in flight has
// ended and been counted.
func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}
