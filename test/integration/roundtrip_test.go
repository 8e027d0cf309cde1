package integration

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"testing"
)

// inlineLimit mirrors the default inline limit: bodies up to it travel in
// the frame, larger ones as a stream.
const inlineLimit = 64 << 10

// payload is n bytes that differ from one position to the next, so that a
// lost, doubled or reordered chunk shows.
func payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1, 2, 3})
	_, _ = rng.Read(b)
	return b
}

// echoUpstream answers /echo... with the request's body and reports what it
// saw of the request in X-Seen-* headers; /blob?size=N sends N bytes of
// payload(N), with a Content-Length when length=1; /teapot answers 418.
func echoUpstream() http.Handler {
	mux := http.NewServeMux()
	echo := func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Seen-Method", r.Method)
		h.Set("X-Seen-Path", r.URL.EscapedPath())
		h.Set("X-Seen-Query", r.URL.RawQuery)
		h.Set("X-Seen-Custom", r.Header.Get("X-Custom"))
		h["X-Seen-Multi"] = r.Header.Values("X-Multi")
		h.Set("X-Seen-Length", strconv.FormatInt(r.ContentLength, 10))
		if ct := r.Header.Get("Content-Type"); ct != "" {
			h.Set("Content-Type", ct)
		}
		if r.ContentLength >= 0 && r.ContentLength <= inlineLimit {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			h.Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body)
			return
		}
		// A large body is echoed while it arrives, as a streaming service
		// would answer.
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, r.Body)
	}
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/echo/", echo)
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("size"))
		if err != nil {
			http.Error(w, "size", http.StatusBadRequest)
			return
		}
		if r.URL.Query().Get("length") == "1" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(payload(uint64(n), n))
	})
	mux.HandleFunc("/teapot", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Reason", "short and stout")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "I'm a teapot")
	})
	return mux
}

func TestSmallRequestsKeepMethodPathQueryHeadersAndBody(t *testing.T) {
	w, r, _ := connect(t, echoUpstream(), nil, nil)
	tests := []struct {
		name, method, path string
		body               []byte
		header             http.Header
		wantPath, wantQry  string
	}{
		{
			name: "GET with query and headers", method: http.MethodGet,
			path:     "/echo?a=1&b=two%20words&c=%2F&a=again",
			header:   http.Header{"X-Custom": {"hello"}, "X-Multi": {"one", "two"}},
			wantPath: "/echo", wantQry: "a=1&b=two%20words&c=%2F&a=again",
		},
		{
			name: "POST of a small JSON body", method: http.MethodPost,
			path:     "/echo/sub/x%20y?q=%E2%9C%93",
			body:     []byte(`{"text":"hello world","voice":"en"}`),
			header:   http.Header{"Content-Type": {"application/json"}, "X-Custom": {"json"}},
			wantPath: "/echo/sub/x%20y", wantQry: "q=%E2%9C%93",
		},
		{
			name: "PUT of a body just over the inline limit", method: http.MethodPut,
			path: "/echo/big", body: payload(1, inlineLimit+1),
			header:   http.Header{"Content-Type": {"application/octet-stream"}},
			wantPath: "/echo/big",
		},
		{
			name: "DELETE without body", method: http.MethodDelete,
			path: "/echo/item/7?force=true", wantPath: "/echo/item/7", wantQry: "force=true",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, publicURL(r, tc.path), bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, body, err := w.do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			seen := resp.Header
			for _, c := range []struct{ name, got, want string }{
				{"method", seen.Get("X-Seen-Method"), tc.method},
				{"path", seen.Get("X-Seen-Path"), tc.wantPath},
				{"query", seen.Get("X-Seen-Query"), tc.wantQry},
				{"X-Custom", seen.Get("X-Seen-Custom"), tc.header.Get("X-Custom")},
				{"length", seen.Get("X-Seen-Length"), strconv.Itoa(len(tc.body))},
				{"Content-Type back", seen.Get("Content-Type"), tc.header.Get("Content-Type")},
			} {
				if c.got != c.want {
					t.Errorf("upstream saw %s %q, want %q", c.name, c.got, c.want)
				}
			}
			if got, want := seen.Values("X-Seen-Multi"), tc.header.Values("X-Multi"); !slices.Equal(got, want) {
				t.Errorf("upstream saw X-Multi %q, want %q", got, want)
			}
			if !bytes.Equal(body, tc.body) {
				t.Errorf("echoed body: %d bytes, want the %d sent", len(body), len(tc.body))
			}
		})
	}

	t.Run("upstream status and headers come back", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, publicURL(r, "/teapot"), nil)
		resp, body, err := w.do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Reason") != "short and stout" || string(body) != "I'm a teapot" {
			t.Errorf("got %d %q %q, want 418 with its header and body", resp.StatusCode, resp.Header.Get("X-Reason"), body)
		}
	})
}

// onlyReader hides the type of a reader, so the HTTP client cannot know the
// body's length and sends it chunked.
type onlyReader struct{ io.Reader }

func TestTenMiBStreamsAreByteExactBothWays(t *testing.T) {
	w, r, tn := connect(t, echoUpstream(), nil, nil)
	const size = 10 << 20
	up := payload(7, size)

	uploads := []struct {
		name       string
		body       io.Reader
		wantLength string // as the upstream saw it
	}{
		{"upload with a length", bytes.NewReader(up), strconv.Itoa(size)},
		{"upload of unknown length", onlyReader{bytes.NewReader(up)}, "-1"},
	}
	for _, tc := range uploads {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, publicURL(r, "/echo/upload?name=a%20b"), tc.body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("X-Custom", "ten")
			resp, body, err := w.do(req)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %.200q", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Seen-Length"); got != tc.wantLength {
				t.Errorf("upstream saw length %s, want %s", got, tc.wantLength)
			}
			if resp.Header.Get("X-Seen-Query") != "name=a%20b" || resp.Header.Get("X-Seen-Custom") != "ten" {
				t.Errorf("upstream saw query %q and X-Custom %q", resp.Header.Get("X-Seen-Query"), resp.Header.Get("X-Seen-Custom"))
			}
			if !bytes.Equal(body, up) {
				t.Errorf("echo differs: got %d bytes, want the %d sent (first difference at %d)", len(body), size, firstDiff(body, up))
			}
		})
	}

	for _, withLength := range []bool{true, false} {
		name := "download without length"
		path := "/blob?size=" + strconv.Itoa(size)
		if withLength {
			name, path = "download with a length", path+"&length=1"
		}
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, publicURL(r, path), nil)
			resp, body, err := w.do(req)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %.200q", resp.StatusCode, body)
			}
			if withLength && resp.ContentLength != size {
				t.Errorf("Content-Length %d, want %d", resp.ContentLength, size)
			}
			if want := payload(size, size); !bytes.Equal(body, want) {
				t.Errorf("download differs: got %d bytes, want %d (first difference at %d)", len(body), size, firstDiff(body, want))
			}
		})
	}

	if st := tn.Status(); !st.Connected || st.Health.Drops != 0 {
		t.Errorf("after the transfers: state %s, %d drops; want the same connection throughout", st.State, st.Health.Drops)
	}
}

// firstDiff is the first index where a and b differ.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
