package wire

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

const (
	requestID   = "9b2f6c1e-4d7a-4f3b-8e21-6a0c5d9e7f10"
	heartbeatID = "3e8a1d52-7c64-4b09-a1f3-2d5e8c7b9a04"
)

// goldenFrames pairs each file of testdata/golden with the frame it holds.
// The files are written by hand from PROTOCOL.md, so a change of the
// encoding shows up as a failing test rather than as a silently new contract.
var goldenFrames = []struct {
	name  string
	frame Frame
}{
	{"auth", Frame{Type: TypeAuth, APIKey: "test-key-0123456789", Tunnel: "default", Client: "tunnel-supervisor/1.0.0"}},
	{"auth_ok", Frame{Type: TypeAuthOK, SessionID: "c41d7e0a-2b95-4f6e-9d38-7a1b5c0e3f62"}},
	{"auth_error", Frame{Type: TypeAuthError, Error: "Invalid API key"}},
	{"heartbeat", Frame{Type: TypeHeartbeat, MessageID: heartbeatID, Timestamp: 1764095085123}},
	{"heartbeat_ack", Frame{Type: TypeHeartbeatAck, MessageID: heartbeatID, Timestamp: 1764095085123}},
	{"request", Frame{
		Type: TypeRequest, MessageID: requestID, Method: "POST", Path: "/v1/tts?x=1&voice=en",
		Headers: map[string][]string{"Content-Type": {"application/json"}, "Accept": {"audio/wav"}},
		Body:    []byte(`{"text":"hello"}`),
	}},
	{"response", Frame{
		Type: TypeResponse, MessageID: requestID, Status: 200,
		Headers: map[string][]string{"Content-Type": {"audio/wav"}},
		Body:    []byte("RIFF$\x00\x00\x00WAVE"),
	}},
	{"error", Frame{Type: TypeError, MessageID: requestID, Error: `no route for tunnel "default"`}},
	{"cancel", Frame{Type: TypeCancel, MessageID: requestID}},
	{"request_stream", Frame{
		Type: TypeRequest, MessageID: requestID, Method: "POST", Path: "/v1/tts/stream",
		Headers: map[string][]string{"Content-Type": {"application/json"}}, Stream: true,
	}},
	{"response_stream", Frame{
		Type: TypeResponse, MessageID: requestID, Status: 200,
		Headers: map[string][]string{"Content-Type": {"audio/mpeg"}}, Stream: true,
	}},
	{"stream_end", Frame{Type: TypeStreamEnd, MessageID: requestID}},
	{"stream_error", Frame{Type: TypeStreamError, MessageID: requestID, Error: "upstream: unexpected EOF"}},
	{"window_update", Frame{Type: TypeWindowUpdate, MessageID: requestID, Bytes: 512 << 10}},
	{"auth_connections", Frame{Type: TypeAuth, APIKey: "test-key-0123456789", Tunnel: "default", Client: "tunnel-supervisor/1.0.0",
		Instance: "5e0c1f2a-8b7d-4c3e-9a61-0f2d4b6c8e13", Index: 1, Resume: true}},
	{"auth_ok_resume", Frame{Type: TypeAuthOK, SessionID: "c41d7e0a-2b95-4f6e-9d38-7a1b5c0e3f62", Resume: true}},
	{"stream_resume", Frame{Type: TypeStreamResume, MessageID: requestID}},
	{"stream_resume_answer", Frame{Type: TypeStreamResume, MessageID: requestID, Offset: 196608, Bytes: 1048576}},
	{"auth_encodings", Frame{Type: TypeAuth, APIKey: "test-key-0123456789", Tunnel: "default", Client: "tunnel-supervisor/1.0.0",
		Encodings: []string{EncodingBin1, EncodingJSON}}},
	{"auth_ok_encoding", Frame{Type: TypeAuthOK, SessionID: "c41d7e0a-2b95-4f6e-9d38-7a1b5c0e3f62", Encoding: EncodingBin1}},
}

// readGolden returns a golden file without the newline that ends it on disk.
func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b, []byte("\n"))
}

func TestGoldenEncode(t *testing.T) {
	for _, tc := range goldenFrames {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(&tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			if want := readGolden(t, tc.name); !bytes.Equal(got, want) {
				t.Errorf("Encode:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestGoldenDecode(t *testing.T) {
	for _, tc := range goldenFrames {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(readGolden(t, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.frame) {
				t.Errorf("Decode:\n got %+v\nwant %+v", *got, tc.frame)
			}
		})
	}
}

// TestGoldenCoverage keeps the golden set and the protocol's type list in
// step: every known type has a golden frame, every golden file a test case.
func TestGoldenCoverage(t *testing.T) {
	types := map[string]bool{}
	names := map[string]bool{}
	for _, tc := range goldenFrames {
		if !Known(tc.frame.Type) {
			t.Errorf("golden %s has unknown type %q", tc.name, tc.frame.Type)
		}
		types[tc.frame.Type] = true
		names[tc.name] = true
	}
	for _, typ := range []string{
		TypeAuth, TypeAuthOK, TypeAuthError, TypeHeartbeat, TypeHeartbeatAck,
		TypeRequest, TypeResponse, TypeError, TypeCancel,
		TypeStreamEnd, TypeStreamError, TypeWindowUpdate, TypeStreamResume,
	} {
		if !types[typ] {
			t.Errorf("no golden frame of type %s", typ)
		}
	}
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".json"); !names[name] {
			t.Errorf("golden file %s has no test case", f)
		}
	}
}

func TestBodyIsBase64(t *testing.T) {
	got := MustEncode(&Frame{Type: TypeResponse, MessageID: "m", Body: []byte{0x00, 0xff, 0xfe, 'a'}})
	if want := `"body":"AP/+YQ=="`; !bytes.Contains(got, []byte(want)) {
		t.Errorf("Encode = %s, want it to contain %s", got, want)
	}
	f, err := Decode([]byte(`{"type":"response","message_id":"m","body":"AP/+YQ=="}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x00, 0xff, 0xfe, 'a'}; !bytes.Equal(f.Body, want) {
		t.Errorf("Body = %x, want %x", f.Body, want)
	}
}

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Frame
	}{
		{
			name: "unknown fields are ignored",
			in:   `{"type":"cancel","message_id":"m","reason":"gone","extra":{"a":[1,2,{"b":null}]},"n":1.5e300}`,
			want: Frame{Type: TypeCancel, MessageID: "m"},
		},
		{
			name: "field names match exactly",
			in:   `{"type":"heartbeat","Type":"auth","MESSAGE_ID":"x","Body":"not base64!","timestamp":7}`,
			want: Frame{Type: TypeHeartbeat, Timestamp: 7},
		},
		{
			name: "unknown type decodes",
			in:   `{"type":"subscribe","message_id":"m","topic":"news"}`,
			want: Frame{Type: "subscribe", MessageID: "m"},
		},
		{
			name: "error with an empty message_id",
			in:   `{"type":"error","message_id":"","error":"no route"}`,
			want: Frame{Type: TypeError, Error: "no route"},
		},
		{
			name: "null fields are absent",
			in:   `{"type":"response","message_id":null,"headers":null,"body":null,"status":null}`,
			want: Frame{Type: TypeResponse},
		},
		{
			name: "empty body and headers decode as none",
			in:   `{"type":"response","status":204,"headers":{},"body":""}`,
			want: Frame{Type: TypeResponse, Status: 204},
		},
		{
			name: "empty encodings decode as none",
			in:   `{"type":"auth","api_key":"k","encodings":[],"encoding":""}`,
			want: Frame{Type: TypeAuth, APIKey: "k"},
		},
		{
			name: "whitespace and key order do not matter",
			in:   "\n { \"bytes\" : 10 ,\t\"message_id\":\"m\", \"type\" : \"window_update\" } \n",
			want: Frame{Type: TypeWindowUpdate, MessageID: "m", Bytes: 10},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.in))
			if err != nil {
				t.Fatalf("Decode(%s): %v", tc.in, err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("Decode(%s):\n got %+v\nwant %+v", tc.in, *got, tc.want)
			}
			again, err := Decode(MustEncode(got))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("re-decode = %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

var malformed = []struct {
	name string
	in   string
}{
	{"empty", ""},
	{"not JSON", "hello"},
	{"truncated object", `{"type":"auth"`},
	{"JSON array", `[{"type":"auth"}]`},
	{"empty array", `[]`},
	{"JSON string", `"auth"`},
	{"JSON number", `42`},
	{"JSON null", `null`},
	{"no type", `{"message_id":"m"}`},
	{"empty object", `{}`},
	{"empty type", `{"type":""}`},
	{"null type", `{"type":null}`},
	{"type a number", `{"type":1}`},
	{"type a bool", `{"type":true}`},
	{"type an object", `{"type":{"name":"auth"}}`},
	{"type an array", `{"type":["auth"]}`},
	{"timestamp a string", `{"type":"heartbeat","timestamp":"now"}`},
	{"timestamp a fraction", `{"type":"heartbeat","timestamp":1.5}`},
	{"status out of range", `{"type":"response","status":1e400}`},
	{"body not base64", `{"type":"request","body":"***"}`},
	{"headers not a map of lists", `{"type":"request","headers":{"A":"b"}}`},
	{"stream a string", `{"type":"request","stream":"yes"}`},
	{"encodings a string", `{"type":"auth","encodings":"bin1"}`},
	{"encoding a list", `{"type":"auth_ok","encoding":["bin1"]}`},
	{"two objects", `{"type":"auth"}{"type":"auth"}`},
	{"trailing garbage", `{"type":"auth"} x`},
	{"invalid escape", `{"type":"a\q"}`},
}

func TestDecodeMalformed(t *testing.T) {
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Decode([]byte(tc.in))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Decode(%q) = %+v, %v; want ErrMalformed", tc.in, f, err)
			}
		})
	}
}

func TestEncodeNeedsType(t *testing.T) {
	if b, err := Encode(&Frame{MessageID: "m"}); err == nil {
		t.Errorf("Encode without type = %s, want an error", b)
	}
}

func TestChunkGolden(t *testing.T) {
	golden := []byte{3, 'a', 'b', 'c', 0x00, 0xff, 0x10}
	got, err := EncodeChunk("abc", []byte{0x00, 0xff, 0x10})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, golden) {
		t.Errorf("EncodeChunk = %v, want %v", got, golden)
	}
	id, chunk, err := DecodeChunk(golden)
	if err != nil || id != "abc" || !bytes.Equal(chunk, []byte{0x00, 0xff, 0x10}) {
		t.Errorf("DecodeChunk = %q, %v, %v; want abc, [0 255 16], nil", id, chunk, err)
	}
}

func TestChunkRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		id    string
		chunk []byte
	}{
		{"uuid id", requestID, []byte("audio bytes")},
		{"one byte id", "x", []byte{1, 2, 3}},
		{"longest id", strings.Repeat("i", MaxIDLength), []byte{9}},
		{"empty chunk", requestID, nil},
		{"chunk limit", requestID, bytes.Repeat([]byte{0xab}, DefaultChunkLimit)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := EncodeChunk(tc.id, tc.chunk)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) != 1+len(tc.id)+len(tc.chunk) || int(data[0]) != len(tc.id) {
				t.Fatalf("layout: %d bytes with id length %d", len(data), data[0])
			}
			id, chunk, err := DecodeChunk(data)
			if err != nil || id != tc.id || !bytes.Equal(chunk, tc.chunk) {
				t.Errorf("DecodeChunk = %q, %d bytes, %v", id, len(chunk), err)
			}
		})
	}
}

func TestEncodeChunkRejectsID(t *testing.T) {
	for _, id := range []string{"", strings.Repeat("i", MaxIDLength+1)} {
		if data, err := EncodeChunk(id, []byte("x")); err == nil {
			t.Errorf("EncodeChunk with a %d byte id = %v, want an error", len(id), data)
		}
	}
}

func TestDecodeChunkMalformed(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"zero id length", []byte{0}},
		{"zero id length with bytes", []byte{0, 'a', 'b'}},
		{"id cut short", []byte{3, 'a', 'b'}},
		{"only the length", []byte{1}},
		{"longest id cut short", append([]byte{MaxIDLength}, bytes.Repeat([]byte{'i'}, MaxIDLength-1)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, chunk, err := DecodeChunk(tc.in)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeChunk(%v) = %q, %v, %v; want ErrMalformed", tc.in, id, chunk, err)
			}
		})
	}
}

// TestExcerpt pins what Excerpt makes of a peer-chosen field before it is
// logged: up to MaxExcerpt (64) bytes pass unchanged; anything longer is cut
// to at most 64 bytes without splitting a character and marked with the
// length it had, however long that was.
func TestExcerpt(t *testing.T) {
	if MaxExcerpt != 64 {
		t.Fatalf("MaxExcerpt = %d, want 64: log lines are sized for it", MaxExcerpt)
	}
	a := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", ""},
		{"short", "Invalid API key", "Invalid API key"},
		{"exactly 64 ASCII bytes", a(64), a(64)},
		{"exactly 64 bytes of two-byte runes", strings.Repeat("é", 32), strings.Repeat("é", 32)},
		{"65 ASCII bytes", a(65), a(64) + "…(65 bytes)"},
		// "€" is three bytes: at 63 it spans bytes 63 to 65, across the cut,
		// and goes whole.
		{"three-byte rune across byte 64", a(63) + "€tail", a(63) + "…(70 bytes)"},
		{"two-byte rune across byte 64", a(63) + "é", a(63) + "…(65 bytes)"},
		{"four-byte rune across byte 64", a(62) + "😀", a(62) + "…(66 bytes)"},
		{"rune ending at byte 64 is kept", a(61) + "€b", a(61) + "€…(65 bytes)"},
		{"1 MiB", a(1 << 20), a(64) + "…(1048576 bytes)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Excerpt(tc.in)
			if got != tc.want {
				t.Errorf("Excerpt = %q, want %q", got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Excerpt = %q, not valid UTF-8", got)
			}
			// However long the field, the log line stays short.
			if len(got) >= 100 {
				t.Errorf("Excerpt is %d bytes long, want under 100", len(got))
			}
		})
	}
}

// TestExcerptCutsOnARuneBoundary cuts strings of one-, two-, three- and
// four-byte runes, shifted by up to seven ASCII bytes so that every position
// of a rune against the cut comes up: the kept head is a prefix of the input
// of at most MaxExcerpt bytes, ends on a character boundary, falls short of
// the limit by less than one character, and the mark gives the input's
// length.
func TestExcerptCutsOnARuneBoundary(t *testing.T) {
	for _, r := range []string{"a", "é", "€", "😀"} {
		for pad := range 2 * utf8.UTFMax {
			in := strings.Repeat("x", pad) + strings.Repeat(r, MaxExcerpt/len(r)+1)
			got := Excerpt(in)
			mark := fmt.Sprintf("…(%d bytes)", len(in))
			head, ok := strings.CutSuffix(got, mark)
			switch {
			case !ok:
				t.Errorf("Excerpt(%q) = %q, want it to end with %q", in, got, mark)
			case !strings.HasPrefix(in, head) || !utf8.ValidString(head):
				t.Errorf("Excerpt(%q) kept %q, not a valid prefix", in, head)
			case len(head) > MaxExcerpt || len(head) <= MaxExcerpt-len(r):
				t.Errorf("Excerpt(%q) kept %d bytes, want at most %d and less than a rune short of it", in, len(head), MaxExcerpt)
			}
		}
	}
}

// TestExcerptOfInvalidUTF8 feeds bytes that are not UTF-8, as a hostile or
// broken peer may send: what comes back is still valid UTF-8, short, and
// marked with the input's length.
func TestExcerptOfInvalidUTF8(t *testing.T) {
	for _, in := range []string{
		strings.Repeat("\xff", 100),
		strings.Repeat("\x80", 100),          // nothing but continuation bytes
		strings.Repeat("a", 63) + "\xe2\x82", // a rune cut short at the limit
		strings.Repeat("ok\xc0", 40),
	} {
		got := Excerpt(in)
		if !utf8.ValidString(got) || len(got) >= 100 || !strings.HasSuffix(got, fmt.Sprintf("…(%d bytes)", len(in))) {
			t.Errorf("Excerpt(%q) = %q; want valid UTF-8 under 100 bytes, marked with the length %d", in, got, len(in))
		}
	}
}
