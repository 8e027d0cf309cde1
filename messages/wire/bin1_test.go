package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/bin1/*.hex from the encoder")

// allTypes is every frame type of the protocol.
var allTypes = []string{
	TypeAuth, TypeAuthOK, TypeAuthError, TypeHeartbeat, TypeHeartbeatAck,
	TypeRequest, TypeResponse, TypeError, TypeCancel,
	TypeStreamEnd, TypeStreamError, TypeWindowUpdate, TypeStreamResume,
}

// bin1Typed is every frame type that has a bin1 code.
var bin1Typed = []string{
	TypeHeartbeat, TypeHeartbeatAck, TypeRequest, TypeResponse, TypeError, TypeCancel,
	TypeStreamEnd, TypeStreamError, TypeWindowUpdate, TypeStreamResume,
}

// fullFrame returns a frame of type typ with every field set.
func fullFrame(typ string) Frame {
	return Frame{
		Type:      typ,
		MessageID: requestID,
		APIKey:    "test-key-0123456789",
		Tunnel:    "default",
		Client:    "tunnel-supervisor/1.0.0",
		SessionID: "c41d7e0a-2b95-4f6e-9d38-7a1b5c0e3f62",
		Instance:  "5e0c1f2a-8b7d-4c3e-9a61-0f2d4b6c8e13",
		Index:     3,
		Resume:    true,
		Encodings: []string{EncodingBin1, EncodingJSON},
		Encoding:  EncodingBin1,
		Offset:    196608,
		Timestamp: 1764095085123,
		Method:    "POST",
		Path:      "/v1/tts?x=1&voice=en",
		Status:    200,
		Headers: map[string][]string{
			"Content-Type": {"application/json"},
			"Accept":       {"audio/wav", "audio/mpeg"},
			"X-Empty":      {""},
			"X-None":       nil,
		},
		Body:     []byte(`{"text":"hello"}`),
		Stream:   true,
		Bytes:    1 << 20,
		Error:    "upstream: unexpected EOF",
		Upgrade:  "websocket",
		Trailers: map[string][]string{"Grpc-Status": {"0"}, "Grpc-Message": {"ok"}},
	}
}

// mustBin1 is AppendBin1(nil, f) for frames whose type has a code.
func mustBin1(tb testing.TB, f *Frame) []byte {
	tb.Helper()
	data, err := AppendBin1(nil, f)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// bin1Field lays out one field by hand, for messages the encoder would not
// write.
func bin1Field(tag byte, value ...byte) []byte {
	out := binary.AppendUvarint([]byte{tag}, uint64(len(value)))
	return append(out, value...)
}

// bin1Msg is a bin1 message of type code code with the given fields.
func bin1Msg(code byte, fields ...[]byte) []byte {
	return slices.Concat(append([][]byte{{0, code}}, fields...)...)
}

// uv is binary.AppendUvarint of x, to build values by hand.
func uv(x uint64) []byte { return binary.AppendUvarint(nil, x) }

func TestBin1FullFrameSetsEveryField(t *testing.T) {
	v := reflect.ValueOf(fullFrame(TypeRequest))
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("fullFrame leaves %s unset: the round trips would not cover it", v.Type().Field(i).Name)
		}
	}
}

// TestBin1TagsCoverFrame keeps the tag table and Frame in step: every field
// but Type has exactly one tag, tags follow the order of Frame's fields, and
// each tag's layout fits its field's Go type.
func TestBin1TagsCoverFrame(t *testing.T) {
	kindOf := map[reflect.Type]bin1Kind{
		reflect.TypeFor[string]():              bin1String,
		reflect.TypeFor[int]():                 bin1Int,
		reflect.TypeFor[int64]():               bin1Int,
		reflect.TypeFor[bool]():                bin1Bool,
		reflect.TypeFor[[]byte]():              bin1Bytes,
		reflect.TypeFor[[]string]():            bin1List,
		reflect.TypeFor[map[string][]string](): bin1Headers,
	}
	rt := reflect.TypeFor[Frame]()
	var fields []reflect.StructField
	for i := range rt.NumField() {
		if name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ","); name != "type" {
			fields = append(fields, rt.Field(i))
		}
	}
	var tagged []string
	for tag, field := range bin1Fields {
		if field.kind == 0 {
			if field.name != "" || tag != 0 {
				t.Errorf("tag %d is named %q but has no layout", tag, field.name)
			}
			continue
		}
		tagged = append(tagged, field.name)
	}
	if len(tagged) != len(fields) {
		t.Fatalf("%d tags for %d Frame fields besides type", len(tagged), len(fields))
	}
	for i, sf := range fields {
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if tagged[i] != name {
			t.Errorf("tag %d is %q, want %q: tags follow Frame's field order", i+1, tagged[i], name)
			continue
		}
		if want := kindOf[sf.Type]; bin1Fields[i+1].kind != want {
			t.Errorf("tag %d %s has layout %d, want %d for a %v", i+1, name, bin1Fields[i+1].kind, want, sf.Type)
		}
	}
	if len(bin1Fields) > 64 {
		t.Errorf("%d tags: DecodeBin1's uint64 set of seen tags holds 64", len(bin1Fields))
	}
}

// TestBin1DocTables holds the code and tag tables of the package
// documentation to the code.
func TestBin1DocTables(t *testing.T) {
	text, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	block := func(from, to string) map[int]string {
		_, rest, ok1 := strings.Cut(string(text), from)
		block, _, ok2 := strings.Cut(rest, to)
		if !ok1 || !ok2 {
			t.Fatalf("doc.go has no table between %q and %q", from, to)
		}
		pairs := map[int]string{}
		for _, m := range regexp.MustCompile(`(\d+) ([a-z_]+)`).FindAllStringSubmatch(block, -1) {
			n, _ := strconv.Atoi(m[1])
			pairs[n] = m[2]
		}
		return pairs
	}
	codes := block("// Type codes", "// Field tags")
	want := map[int]string{}
	for code, typ := range bin1Types {
		if typ != "" {
			want[code] = typ
		}
	}
	if !reflect.DeepEqual(codes, want) {
		t.Errorf("doc.go's type codes %v, want %v", codes, want)
	}
	tags := block("// Field tags", "// Tag 0")
	want = map[int]string{}
	for tag, field := range bin1Fields {
		if field.kind != 0 {
			want[tag] = field.name
		}
	}
	if !reflect.DeepEqual(tags, want) {
		t.Errorf("doc.go's field tags %v, want %v", tags, want)
	}
}

func TestBin1TypeCodes(t *testing.T) {
	codes := map[byte]string{}
	for _, typ := range allTypes {
		code := bin1Code(typ)
		switch typ {
		case TypeAuth, TypeAuthOK, TypeAuthError:
			if code != 0 {
				t.Errorf("%s has code %d, want none: the handshake stays JSON text", typ, code)
			}
			continue
		}
		if code == 0 {
			t.Errorf("%s has no code", typ)
			continue
		}
		if bin1Types[code] != typ {
			t.Errorf("code %d of %s names %q", code, typ, bin1Types[code])
		}
		if other, dup := codes[code]; dup {
			t.Errorf("code %d of both %s and %s", code, other, typ)
		}
		codes[code] = typ
	}
	if !slices.Equal(slices.Sorted(func(yield func(string) bool) {
		for _, typ := range codes {
			if !yield(typ) {
				return
			}
		}
	}), slices.Sorted(slices.Values(bin1Typed))) {
		t.Errorf("typed codes %v, want %v", codes, bin1Typed)
	}
	for code, typ := range bin1Types {
		if typ != "" && bin1Code(typ) != byte(code) {
			t.Errorf("bin1Types[%d] = %s, whose code is %d", code, typ, bin1Code(typ))
		}
	}
	if bin1Types[0] != "" {
		t.Errorf("code 0 names %q: 0 is never a code", bin1Types[0])
	}
}

func TestBin1RoundTrip(t *testing.T) {
	type testCase struct {
		name  string
		frame Frame
	}
	var tests []testCase
	for _, typ := range bin1Typed {
		tests = append(tests,
			testCase{typ + " with every field", fullFrame(typ)},
			testCase{typ + " with no field", Frame{Type: typ}},
		)
	}
	for _, g := range goldenFrames {
		if bin1Code(g.frame.Type) != 0 {
			tests = append(tests, testCase{"golden " + g.name, g.frame})
		}
	}
	tests = append(tests,
		testCase{"extreme integers", Frame{
			Type: TypeStreamResume, Index: math.MinInt, Status: math.MaxInt,
			Offset: math.MinInt64, Timestamp: math.MaxInt64, Bytes: -1,
		}},
		testCase{"small negative and positive integers", Frame{Type: TypeResponse, Status: -1, Bytes: 63, Offset: 64, Timestamp: -64, Index: -65}},
		testCase{"strings that are not text", Frame{
			Type: TypeError, MessageID: "\x00", Error: "\xff\xfe\x00 not UTF-8 \\u0000",
			Path: strings.Repeat("p", 300), Method: "\x80",
		}},
		testCase{"odd headers", Frame{Type: TypeRequest, Headers: map[string][]string{
			"":       {"empty name"},
			"X-Nil":  nil,
			"X-Many": {"", "a", strings.Repeat("v", 200), ""},
			"x-bin":  {"\x00\xff"},
		}}},
		testCase{"one header, one value", Frame{Type: TypeResponse, Headers: map[string][]string{"A": {"b"}}}},
		testCase{"encodings with an empty item", Frame{Type: TypeHeartbeat, Encodings: []string{"", "bin1"}}},
		testCase{"inline limit body", Frame{Type: TypeResponse, MessageID: requestID, Status: 200, Body: bytes.Repeat([]byte{0xab, 0}, DefaultInlineLimit/2)}},
		testCase{"body of zero bytes", Frame{Type: TypeResponse, Body: []byte{0}}},
	)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := mustBin1(t, &tc.frame)
			if !IsBin1(data) || data[1] != bin1Code(tc.frame.Type) {
				t.Fatalf("message starts % x, want 00 %02x", data[:2], bin1Code(tc.frame.Type))
			}
			got, err := DecodeBin1(data)
			if err != nil {
				t.Fatalf("DecodeBin1(% x): %v", data, err)
			}
			if !reflect.DeepEqual(*got, tc.frame) {
				t.Errorf("round trip:\n got %+v\nwant %+v", *got, tc.frame)
			}
			// The message never passes for a chunk.
			if id, _, err := DecodeChunk(data); !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeChunk of a bin1 message = %q, %v; want ErrMalformed", id, err)
			}
			// Appending keeps what dst held and adds the same message.
			prefix := []byte("prefix")
			appended, err := AppendBin1(prefix, &tc.frame)
			if err != nil || !bytes.HasPrefix(appended, prefix) || len(appended) != len(prefix)+len(data) {
				t.Fatalf("AppendBin1(prefix) = % x, %v", appended, err)
			}
			if again, err := DecodeBin1(appended[len(prefix):]); err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("DecodeBin1 of the appended message = %+v, %v", again, err)
			}
		})
	}
}

// TestBin1EmptyIsAbsent: empty strings, bodies, maps and lists are not
// written, and decode as their zero values, as in JSON.
func TestBin1EmptyIsAbsent(t *testing.T) {
	f := &Frame{Type: TypeResponse, Headers: map[string][]string{}, Body: []byte{}, Encodings: []string{}}
	data := mustBin1(t, f)
	if want := []byte{0, codeResponse}; !bytes.Equal(data, want) {
		t.Errorf("AppendBin1 = % x, want % x", data, want)
	}
	got, err := DecodeBin1(bin1Msg(codeResponse,
		bin1Field(tagMessageID), bin1Field(tagHeaders, 0), bin1Field(tagBody), bin1Field(tagEncodings, 0),
		bin1Field(tagStatus, 0), bin1Field(tagError)))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Frame{Type: TypeResponse}); !reflect.DeepEqual(*got, want) {
		t.Errorf("DecodeBin1 of empty fields = %#v, want %#v", *got, want)
	}
}

func TestAppendBin1Allocs(t *testing.T) {
	f := fullFrame(TypeRequest)
	size := len(mustBin1(t, &f))
	buf := make([]byte, 0, size)
	if n := testing.AllocsPerRun(100, func() {
		out, _ := AppendBin1(buf[:0], &f)
		if len(out) != size || &out[0] != &buf[:1][0] {
			t.Fatal("AppendBin1 did not write into dst's room")
		}
	}); n != 0 {
		t.Errorf("AppendBin1 into a dst with room: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		out, _ := AppendBin1(nil, &f)
		if len(out) != size || cap(out) > size+size/4+16 {
			t.Fatalf("AppendBin1(nil) = %d bytes in a %d byte array, want %d", len(out), cap(out), size)
		}
	}); n != 1 {
		t.Errorf("AppendBin1(nil): %v allocations, want 1", n)
	}
}

func TestAppendBin1NoCode(t *testing.T) {
	for _, typ := range []string{TypeAuth, TypeAuthOK, TypeAuthError, "subscribe", "", "bin1:99", "Heartbeat"} {
		dst := []byte("kept")
		out, err := AppendBin1(dst, &Frame{Type: typ, MessageID: "m"})
		if !errors.Is(err, ErrNoBin1) || !strings.HasPrefix(err.Error(), "wire:") {
			t.Errorf("AppendBin1(%q) error = %v, want ErrNoBin1 with the prefix wire:", typ, err)
		}
		if string(out) != "kept" {
			t.Errorf("AppendBin1(%q) changed dst to %q", typ, out)
		}
	}
}

// TestBin1HeartbeatSize pins the size of an idle connection's traffic: a
// heartbeat with a short id and a millisecond timestamp.
func TestBin1HeartbeatSize(t *testing.T) {
	short := &Frame{Type: TypeHeartbeat, MessageID: "a1", Timestamp: 1764095085123}
	uuid := &Frame{Type: TypeHeartbeat, MessageID: heartbeatID, Timestamp: 1764095085123}
	for _, tc := range []struct {
		f    *Frame
		want int
	}{{short, 14}, {uuid, 48}} {
		data := mustBin1(t, tc.f)
		if len(data) != tc.want {
			t.Errorf("heartbeat with a %d byte id: %d bytes (% x), want %d", len(tc.f.MessageID), len(data), data, tc.want)
		}
		t.Logf("heartbeat with a %d byte id: bin1 %d bytes, JSON %d bytes", len(tc.f.MessageID), len(data), len(MustEncode(tc.f)))
	}
}

func TestDecodeBin1SkipsUnknownTags(t *testing.T) {
	long := bytes.Repeat([]byte{0xee}, 300) // a two-byte length
	data := bin1Msg(codeCancel,
		bin1Field(0, 1, 2, 3),
		bin1Field(21),
		bin1Field(tagMessageID, 'm'),
		bin1Field(200, long...),
		bin1Field(255, 0),
		bin1Field(255, 0), // unknown tags may repeat
		bin1Field(tagError, 'e'),
		bin1Field(100, 0x80), // not a valid varint, but skipped unread
	)
	got, err := DecodeBin1(data)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Frame{Type: TypeCancel, MessageID: "m", Error: "e"}); !reflect.DeepEqual(*got, want) {
		t.Errorf("DecodeBin1 = %+v, want %+v", *got, want)
	}
}

// TestDecodeBin1UnknownCode: a type code the decoder does not know decodes
// with its fields, as a type no receiver knows, to be answered with an error
// frame; it cannot be sent on as bin1.
func TestDecodeBin1UnknownCode(t *testing.T) {
	for _, code := range []byte{0, byte(len(bin1Types)), 99, 255} {
		got, err := DecodeBin1(bin1Msg(code, bin1Field(tagMessageID, 'm', '1'), bin1Field(tagBytes, 2)))
		if err != nil {
			t.Fatalf("code %d: %v", code, err)
		}
		want := Frame{Type: "bin1:" + strconv.Itoa(int(code)), MessageID: "m1", Bytes: 1}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("code %d: DecodeBin1 = %+v, want %+v", code, *got, want)
		}
		if Known(got.Type) {
			t.Errorf("code %d decodes as the known type %q", code, got.Type)
		}
		if _, err := AppendBin1(nil, got); !errors.Is(err, ErrNoBin1) {
			t.Errorf("code %d: AppendBin1 error = %v, want ErrNoBin1", code, err)
		}
	}
}

// malformedBin1 is a table of messages DecodeBin1 refuses.
var malformedBin1 = []struct {
	name string
	in   []byte
}{
	{"empty", nil},
	{"only the leading zero", []byte{0}},
	{"a chunk", []byte{3, 'a', 'b', 'c', 1, 2}},
	{"first byte 0xff", []byte{0xff, codeHeartbeat}},
	{"tag without length", []byte{0, codeCancel, tagMessageID}},
	{"length varint cut short", []byte{0, codeCancel, tagMessageID, 0x80}},
	{"length varint over 64 bits", append([]byte{0, codeCancel, tagMessageID}, bytes.Repeat([]byte{0xff}, 10)...)},
	{"length past the end", []byte{0, codeCancel, tagMessageID, 5, 'a', 'b'}},
	{"length 2^63", bin1Msg(codeCancel, []byte{tagMessageID}, uv(1<<63))},
	{"unknown tag cut short", []byte{0, codeCancel, 200, 3, 'a'}},
	{"known tag twice", bin1Msg(codeCancel, bin1Field(tagMessageID, 'a'), bin1Field(tagMessageID, 'b'))},
	{"body twice", bin1Msg(codeResponse, bin1Field(tagBody, 1), bin1Field(tagBody, 2))},
	{"flag twice", bin1Msg(codeRequest, bin1Field(tagStream), bin1Field(tagStream))},
	{"integer of no bytes", bin1Msg(codeHeartbeat, bin1Field(tagTimestamp))},
	{"integer with a byte after it", bin1Msg(codeHeartbeat, bin1Field(tagTimestamp, 2, 0))},
	{"integer cut short", bin1Msg(codeHeartbeat, bin1Field(tagTimestamp, 0x80))},
	{"integer over 64 bits", bin1Msg(codeHeartbeat, bin1Field(tagTimestamp, append(bytes.Repeat([]byte{0xff}, 9), 0x7f)...))},
	{"boolean with a byte", bin1Msg(codeRequest, bin1Field(tagStream, 1))},
	{"boolean with a zero byte", bin1Msg(codeRequest, bin1Field(tagResume, 0))},
	{"headers of no bytes", bin1Msg(codeRequest, bin1Field(tagHeaders))},
	{"header count cut short", bin1Msg(codeRequest, bin1Field(tagHeaders, 0x80))},
	{"header count over the bytes left", bin1Msg(codeRequest, bin1Field(tagHeaders, 2, 1, 'A', 0))},
	{"header count 2^62", bin1Msg(codeRequest, bin1Field(tagHeaders, uv(1<<62)...))},
	{"header name cut short", bin1Msg(codeRequest, bin1Field(tagHeaders, 1, 5, 'A', 0))},
	{"header name length bad", bin1Msg(codeRequest, bin1Field(tagHeaders, 1, 0x80, 0x80))},
	{"header value count over the bytes left", bin1Msg(codeRequest, bin1Field(tagHeaders, 1, 1, 'A', 3, 1, 'b'))},
	{"header value count 2^40", bin1Msg(codeRequest, bin1Field(tagHeaders, slices.Concat([]byte{1, 1, 'A'}, uv(1<<40), []byte{0, 0})...))},
	{"header value count missing", bin1Msg(codeRequest, bin1Field(tagHeaders, 1, 1, 'A'))},
	{"header value cut short", bin1Msg(codeRequest, bin1Field(tagHeaders, 1, 1, 'A', 1, 4, 'b', 'c'))},
	{"bytes after the last header", bin1Msg(codeRequest, bin1Field(tagHeaders, 1, 1, 'A', 0, 9))},
	{"bytes after no header", bin1Msg(codeRequest, bin1Field(tagHeaders, 0, 9))},
	{"header name twice", bin1Msg(codeRequest, bin1Field(tagHeaders, 2, 1, 'A', 0, 1, 'A', 1, 1, 'b'))},
	{"encodings of no bytes", bin1Msg(codeHeartbeat, bin1Field(tagEncodings))},
	{"encodings count over the bytes left", bin1Msg(codeHeartbeat, bin1Field(tagEncodings, 3, 1, 'a'))},
	{"encodings count 2^40", bin1Msg(codeHeartbeat, bin1Field(tagEncodings, uv(1<<40)...))},
	{"encoding cut short", bin1Msg(codeHeartbeat, bin1Field(tagEncodings, 1, 4, 'b', 'i'))},
	{"bytes after the last encoding", bin1Msg(codeHeartbeat, bin1Field(tagEncodings, 1, 1, 'a', 'b'))},
}

func TestDecodeBin1Malformed(t *testing.T) {
	if strconv.IntSize == 32 {
		malformedBin1 = append(malformedBin1, struct {
			name string
			in   []byte
		}{"status over 32 bits", bin1Msg(codeResponse, bin1Field(tagStatus, binary.AppendVarint(nil, 1<<40)...))})
	}
	for _, tc := range malformedBin1 {
		t.Run(tc.name, func(t *testing.T) {
			f, err := DecodeBin1(tc.in)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeBin1(% x) = %+v, %v; want ErrMalformed", tc.in, f, err)
			}
			if f != nil {
				t.Errorf("DecodeBin1(% x) returned a frame with its error", tc.in)
			}
		})
	}
}

// allocatedBytes is how many bytes fn allocates, on average over runs.
func allocatedBytes(runs int, fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		fn()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestDecodeBin1HostileCounts: counts that claim more than the message holds
// are refused before anything is made for them, and a message of many
// copies of one header name fails at the second copy instead of making room
// for all of them.
func TestDecodeBin1HostileCounts(t *testing.T) {
	many := []byte{}
	many = binary.AppendUvarint(many, 100_000)
	for range 100_000 {
		many = append(many, 1, 'A', 0) // "A" with no values, over and over
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"header count 2^62", bin1Msg(codeRequest, bin1Field(tagHeaders, uv(1<<62)...))},
		{"header count one over", bin1Msg(codeRequest, bin1Field(tagHeaders, slices.Concat(uv(1_000), bytes.Repeat([]byte{0, 0}, 999))...))},
		{"value count 2^40", bin1Msg(codeRequest, bin1Field(tagHeaders, slices.Concat([]byte{1, 1, 'A'}, uv(1<<40), []byte{0})...))},
		{"encodings count 2^40", bin1Msg(codeHeartbeat, bin1Field(tagEncodings, uv(1<<40)...))},
		{"100000 copies of one name", bin1Msg(codeRequest, bin1Field(tagHeaders, many...))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocatedBytes(10, func() { _, err = DecodeBin1(tc.in) })
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeBin1 error = %v, want ErrMalformed", err)
			}
			// One copy of the message's strings at most, and little else.
			if n > uint64(len(tc.in))+16<<10 {
				t.Errorf("DecodeBin1 allocated %d bytes for a %d byte message it refused", n, len(tc.in))
			}
		})
	}
}

// TestDecodeBin1Aliasing: the body is a slice of the message, capped so that
// appending to it cannot overwrite what follows; strings are copies.
func TestDecodeBin1Aliasing(t *testing.T) {
	data := bin1Msg(codeResponse, bin1Field(tagBody, 'b', 'o', 'd', 'y'), bin1Field(tagMessageID, 'm'),
		bin1Field(tagHeaders, 1, 1, 'A', 1, 1, 'v'))
	f, err := DecodeBin1(data)
	if err != nil {
		t.Fatal(err)
	}
	if &f.Body[0] != &data[4] || cap(f.Body) != 4 {
		t.Errorf("Body is not data[4:8:8]")
	}
	clear(data)
	if string(f.Body) != "\x00\x00\x00\x00" {
		t.Errorf("Body = %q after the message was cleared: not an alias", f.Body)
	}
	if f.MessageID != "m" || !reflect.DeepEqual(f.Headers, map[string][]string{"A": {"v"}}) {
		t.Errorf("strings changed with the message: %q %v", f.MessageID, f.Headers)
	}
}

// TestDecodeBin1HeaderValues: the values of different names never share
// room, so that appending to one cannot change another.
func TestDecodeBin1HeaderValues(t *testing.T) {
	f, err := DecodeBin1(bin1Msg(codeRequest, bin1Field(tagHeaders, 2, 1, 'A', 1, 1, 'a', 1, 'B', 1, 1, 'b')))
	if err != nil {
		t.Fatal(err)
	}
	f.Headers["A"] = append(f.Headers["A"], "x")
	if got := f.Headers["B"]; !slices.Equal(got, []string{"b"}) {
		t.Errorf("appending to A changed B to %q", got)
	}
}

func TestIsBin1(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want bool
	}{
		{nil, false},
		{[]byte{0}, true},
		{[]byte{0, codeHeartbeat}, true},
		{[]byte{1, 'a'}, false},
		{[]byte{MaxIDLength}, false},
		{[]byte(`{"type":"heartbeat"}`), false},
	} {
		if got := IsBin1(tc.in); got != tc.want {
			t.Errorf("IsBin1(% x) = %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, id := range []string{"x", requestID, strings.Repeat("i", MaxIDLength)} {
		if chunk, _ := EncodeChunk(id, []byte{0, 0}); IsBin1(chunk) {
			t.Errorf("a chunk of id length %d passes for bin1", len(id))
		}
	}
}

func TestChoose(t *testing.T) {
	tests := []struct {
		name     string
		offered  []string
		accepted []string
		want     string
	}{
		{"supervisor offers nothing", nil, []string{EncodingBin1, EncodingJSON}, EncodingJSON},
		{"relay accepts nothing", []string{EncodingBin1, EncodingJSON}, nil, EncodingJSON},
		{"both bin1", []string{EncodingBin1, EncodingJSON}, []string{EncodingBin1, EncodingJSON}, EncodingBin1},
		{"supervisor's order wins", []string{EncodingJSON, EncodingBin1}, []string{EncodingBin1, EncodingJSON}, EncodingJSON},
		{"relay without bin1", []string{EncodingBin1, EncodingJSON}, []string{EncodingJSON}, EncodingJSON},
		{"unknown encodings skipped", []string{"bin9", "", EncodingBin1}, []string{EncodingBin1}, EncodingBin1},
		{"no common one", []string{"bin9"}, []string{"bin1"}, EncodingJSON},
	}
	for _, tc := range tests {
		if got := Choose(tc.offered, tc.accepted...); got != tc.want {
			t.Errorf("%s: Choose(%q, %q) = %q, want %q", tc.name, tc.offered, tc.accepted, got, tc.want)
		}
	}
}

// bin1Golden pairs each file of testdata/bin1 with the frame it holds. The
// files are annotated hex dumps, so that the layout can be reviewed byte by
// byte; -update writes them from the encoder, with header names sorted.
var bin1Golden = []struct {
	name  string
	frame Frame
}{
	{"heartbeat", Frame{Type: TypeHeartbeat, MessageID: "a1", Timestamp: 1764095085123}},
	{"heartbeat_uuid", Frame{Type: TypeHeartbeat, MessageID: heartbeatID, Timestamp: 1764095085123}},
	{"request", Frame{
		Type: TypeRequest, MessageID: "r7", Method: "POST", Path: "/v1/tts?x=1",
		Headers: map[string][]string{"Content-Type": {"application/json"}, "Accept": {"audio/wav"}},
		Body:    []byte(`{"text":"hello"}`),
	}},
	{"response_stream", Frame{
		Type: TypeResponse, MessageID: requestID, Status: 200,
		Headers: map[string][]string{"Content-Type": {"audio/mpeg"}}, Stream: true,
	}},
	{"window_update", Frame{Type: TypeWindowUpdate, MessageID: requestID, Bytes: 512 << 10}},
}

func TestBin1Golden(t *testing.T) {
	for _, tc := range bin1Golden {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "bin1", tc.name+".hex")
			encoded := canonicalBin1(t, mustBin1(t, &tc.frame))
			if *update {
				if err := os.WriteFile(path, []byte(dumpBin1(t, tc.name, encoded)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			golden := parseHexDump(t, string(text))
			if !bytes.Equal(encoded, golden) {
				t.Errorf("AppendBin1, header names sorted:\n got % x\nwant % x", encoded, golden)
			}
			got, err := DecodeBin1(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.frame) {
				t.Errorf("DecodeBin1:\n got %+v\nwant %+v", *got, tc.frame)
			}
			if !strings.Contains(string(text), fmt.Sprintf(": %d bytes", len(golden))) {
				t.Errorf("the dump's header does not give its size, %d bytes", len(golden))
			}
		})
	}
	files, err := filepath.Glob(filepath.Join("testdata", "bin1", "*.hex"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, tc := range bin1Golden {
		names[tc.name] = true
	}
	for _, f := range files {
		if !names[strings.TrimSuffix(filepath.Base(f), ".hex")] {
			t.Errorf("golden file %s has no test case", f)
		}
	}
}

// parseHexDump reads the bytes of an annotated hex dump: on each line, pairs
// of hex digits up to a "#".
func parseHexDump(tb testing.TB, text string) []byte {
	tb.Helper()
	var out []byte
	for i, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, word := range strings.Fields(line) {
			b, err := hex.DecodeString(word)
			if err != nil || len(b) != 1 {
				tb.Fatalf("line %d: %q is not one byte in hex", i+1, word)
			}
			out = append(out, b...)
		}
	}
	return out
}

// canonicalBin1 returns a valid bin1 message with its header names sorted,
// so that messages can be compared whatever the map order.
func canonicalBin1(tb testing.TB, data []byte) []byte {
	tb.Helper()
	out := slices.Clone(data[:2])
	for p := 2; p < len(data); {
		tag := data[p]
		n, k := binary.Uvarint(data[p+1:])
		start := p + 1 + k
		v := data[start : start+int(n)]
		out = append(out, data[p:start]...)
		p = start + int(n)
		if tag != tagHeaders {
			out = append(out, v...)
			continue
		}
		count, q := binary.Uvarint(v)
		out = append(out, v[:q]...)
		type entry struct {
			name string
			raw  []byte
		}
		var entries []entry
		for range count {
			at := q
			name, end := cutBin1Item(v, string(v), q)
			nv, k := binary.Uvarint(v[end:])
			end += k
			for range nv {
				_, end = cutBin1Item(v, string(v), end)
			}
			entries = append(entries, entry{name, v[at:end]})
			q = end
		}
		slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
		for _, e := range entries {
			out = append(out, e.raw...)
		}
	}
	if len(out) != len(data) {
		tb.Fatalf("canonicalBin1 made %d bytes of %d", len(out), len(data))
	}
	return out
}

// dumpBin1 writes a bin1 message as an annotated hex dump: one line per
// field head, value, header name or value, at most 16 bytes of a string a
// line.
func dumpBin1(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	const width = 56
	var out strings.Builder
	fmt.Fprintf(&out, "# bin1 golden frame %s: %d bytes. Hex bytes, then # what they are.\n", name, len(data))
	fmt.Fprintf(&out, "# Rewritten by: go test ./messages/wire/ -run TestBin1Golden -update\n")
	line := func(indent int, b []byte, format string, args ...any) {
		hexes := make([]string, len(b))
		for i, c := range b {
			hexes[i] = fmt.Sprintf("%02x", c)
		}
		left := strings.Repeat("   ", indent) + strings.Join(hexes, " ")
		fmt.Fprintf(&out, "%-*s # %s%s\n", width, left, strings.Repeat("  ", indent), fmt.Sprintf(format, args...))
	}
	// text writes raw string bytes, 16 a line.
	text := func(indent int, head []byte, s []byte, format string, args ...any) {
		for first := true; first || len(s) > 0; first = false {
			n := min(len(s), 16)
			if first {
				line(indent, append(slices.Clone(head), s[:n]...), format+"%q", append(args, s[:n])...)
			} else {
				line(indent, s[:n], "%q", s[:n])
			}
			s = s[n:]
		}
	}
	// item writes a uvarint length and the string after it, and returns
	// where it ends.
	item := func(indent int, v []byte, p int, what string) int {
		n, k := binary.Uvarint(v[p:])
		text(indent, v[p:p+k], v[p+k:p+k+int(n)], "%s, %d bytes: ", what, n)
		return p + k + int(n)
	}
	line(0, data[:2], "bin1 frame, type code %d: %s", data[1], bin1Types[data[1]])
	for p := 2; p < len(data); {
		tag := data[p]
		n, k := binary.Uvarint(data[p+1:])
		start := p + 1 + k
		v := data[start : start+int(n)]
		field := bin1Fields[tag]
		switch field.kind {
		case bin1String, bin1Bytes:
			line(0, data[p:start], "tag %d %s, %d bytes:", tag, field.name, n)
			text(1, nil, v, "")
		case bin1Int:
			x, _ := binary.Varint(v)
			line(0, data[p:start], "tag %d %s, %d bytes:", tag, field.name, n)
			line(1, v, "zig-zag varint: %d", x)
		case bin1Bool:
			line(0, data[p:start], "tag %d %s, 0 bytes: true", tag, field.name)
		case bin1List:
			line(0, data[p:start], "tag %d %s, %d bytes:", tag, field.name, n)
			count, q := binary.Uvarint(v)
			line(1, v[:q], "%s", plural(count, "item"))
			for range count {
				q = item(1, v, q, "item")
			}
		case bin1Headers:
			line(0, data[p:start], "tag %d %s, %d bytes:", tag, field.name, n)
			count, q := binary.Uvarint(v)
			line(1, v[:q], "%s", plural(count, "name"))
			for range count {
				q = item(1, v, q, "name")
				nv, k := binary.Uvarint(v[q:])
				line(2, v[q:q+k], "%s", plural(nv, "value"))
				q += k
				for range nv {
					q = item(2, v, q, "value")
				}
			}
		default:
			tb.Fatalf("dumpBin1: unknown tag %d", tag)
		}
		p = start + int(n)
	}
	return out.String()
}

// plural is "1 name", "2 names".
func plural(n uint64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// benchFrames are typical small frames of the hot path.
var benchFrames = []struct {
	name  string
	frame Frame
}{
	{"request", Frame{
		Type: TypeRequest, MessageID: requestID, Method: "GET", Path: "/v1/voices?lang=en-US",
		Headers: map[string][]string{
			"Accept":          {"application/json"},
			"Accept-Encoding": {"gzip, deflate, br"},
			"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) tts-client/2.3"},
			"X-Request-Id":    {"5f1c2a9e-0b7d-4e63-8a41-c2d9e07f3b15"},
			"X-Forwarded-For": {"203.0.113.7"},
			"Cookie":          {"session=3b9f0c1d2e"},
		},
	}},
	{"response", Frame{
		Type: TypeResponse, MessageID: requestID, Status: 200,
		Headers: map[string][]string{
			"Content-Type":   {"text/plain; charset=utf-8"},
			"Content-Length": {"11"},
			"Date":           {"Tue, 25 Nov 2025 18:24:45 GMT"},
		},
		Body: []byte("hello world"),
	}},
}

func BenchmarkEncode(b *testing.B) {
	for _, bf := range benchFrames {
		f := bf.frame
		b.Run(bf.name+"/json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Encode(&f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(MustEncode(&f))), "bytes/frame")
		})
		b.Run(bf.name+"/bin1", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := AppendBin1(nil, &f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(mustBin1(b, &f))), "bytes/frame")
		})
		b.Run(bf.name+"/bin1-reused-buffer", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = AppendBin1(buf[:0], &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bf := range benchFrames {
		jsonData := MustEncode(&bf.frame)
		bin1Data := mustBin1(b, &bf.frame)
		b.Run(bf.name+"/json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(jsonData); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bf.name+"/bin1", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeBin1(bin1Data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
