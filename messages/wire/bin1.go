package wire

// bin1, the optional compact binary encoding of frames: see the package
// documentation (doc.go) for the contract, which TestBin1DocTables holds to
// the tables below.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// Frame encodings, as offered in auth's Encodings and chosen in auth_ok's
// Encoding.
const (
	// EncodingJSON is the protocol's own encoding, one JSON object per text
	// message (Encode, Decode). It is always allowed, and it is the only one
	// in use when auth_ok names no encoding.
	EncodingJSON = "json"
	// EncodingBin1 is the compact binary encoding: one binary message per
	// frame (AppendBin1, DecodeBin1).
	EncodingBin1 = "bin1"
)

// ErrNoBin1 is wrapped by AppendBin1's error for a frame whose type has no
// bin1 code (auth, auth_ok, auth_error, unknown types): the caller sends it as
// JSON text instead, which is always allowed.
var ErrNoBin1 = errors.New("wire: frame type has no bin1 code")

// Choose returns the first of offered (auth's Encodings, in the supervisor's
// order of preference) that accepted contains, or EncodingJSON when none is.
// The relay puts the result in auth_ok's Encoding.
func Choose(offered []string, accepted ...string) string {
	for _, e := range offered {
		if slices.Contains(accepted, e) {
			return e
		}
	}
	return EncodingJSON
}

// bin1 type codes: the byte after the leading 0x00. 0 is never a code, and a
// code is never given to another type. auth, auth_ok and auth_error have none.
const (
	codeHeartbeat    byte = 1
	codeHeartbeatAck byte = 2
	codeRequest      byte = 3
	codeResponse     byte = 4
	codeError        byte = 5
	codeCancel       byte = 6
	codeStreamEnd    byte = 7
	codeStreamError  byte = 8
	codeWindowUpdate byte = 9
	codeStreamResume byte = 10
)

// bin1Types is the frame type of each code; "" for a byte that is no code.
var bin1Types = [...]string{
	codeHeartbeat:    TypeHeartbeat,
	codeHeartbeatAck: TypeHeartbeatAck,
	codeRequest:      TypeRequest,
	codeResponse:     TypeResponse,
	codeError:        TypeError,
	codeCancel:       TypeCancel,
	codeStreamEnd:    TypeStreamEnd,
	codeStreamError:  TypeStreamError,
	codeWindowUpdate: TypeWindowUpdate,
	codeStreamResume: TypeStreamResume,
}

// bin1Code returns the code of frame type t, or 0 when it has none.
func bin1Code(t string) byte {
	switch t {
	case TypeHeartbeat:
		return codeHeartbeat
	case TypeHeartbeatAck:
		return codeHeartbeatAck
	case TypeRequest:
		return codeRequest
	case TypeResponse:
		return codeResponse
	case TypeError:
		return codeError
	case TypeCancel:
		return codeCancel
	case TypeStreamEnd:
		return codeStreamEnd
	case TypeStreamError:
		return codeStreamError
	case TypeWindowUpdate:
		return codeWindowUpdate
	case TypeStreamResume:
		return codeStreamResume
	}
	return 0
}

// bin1 field tags, one per Frame field but Type (which is the type code), in
// the order of Frame's fields. 0 is never a tag, and a tag is never given to
// another field.
const (
	tagMessageID byte = 1
	tagAPIKey    byte = 2
	tagTunnel    byte = 3
	tagClient    byte = 4
	tagSessionID byte = 5
	tagInstance  byte = 6
	tagIndex     byte = 7
	tagResume    byte = 8
	tagEncodings byte = 9
	tagEncoding  byte = 10
	tagOffset    byte = 11
	tagTimestamp byte = 12
	tagMethod    byte = 13
	tagPath      byte = 14
	tagStatus    byte = 15
	tagHeaders   byte = 16
	tagBody      byte = 17
	tagStream    byte = 18
	tagBytes     byte = 19
	tagError     byte = 20
	tagUpgrade   byte = 21
	tagTrailers  byte = 22
)

// bin1Kind is how a field's value is laid out.
type bin1Kind uint8

const (
	bin1String  bin1Kind = 1 + iota // raw bytes, decoded as a Go string
	bin1Bytes                       // raw bytes, decoded as a slice of the message
	bin1Int                         // one zig-zag varint
	bin1Bool                        // no bytes: present means true
	bin1Headers                     // count, then per name: name, count, values
	bin1List                        // count, then the items
)

// bin1Fields gives each tag the JSON name of its field (for errors and
// documentation) and its layout; a tag with no kind is unknown.
var bin1Fields = [...]struct {
	name string
	kind bin1Kind
}{
	tagMessageID: {"message_id", bin1String},
	tagAPIKey:    {"api_key", bin1String},
	tagTunnel:    {"tunnel", bin1String},
	tagClient:    {"client", bin1String},
	tagSessionID: {"session_id", bin1String},
	tagInstance:  {"instance", bin1String},
	tagIndex:     {"index", bin1Int},
	tagResume:    {"resume", bin1Bool},
	tagEncodings: {"encodings", bin1List},
	tagEncoding:  {"encoding", bin1String},
	tagOffset:    {"offset", bin1Int},
	tagTimestamp: {"timestamp", bin1Int},
	tagMethod:    {"method", bin1String},
	tagPath:      {"path", bin1String},
	tagStatus:    {"status", bin1Int},
	tagHeaders:   {"headers", bin1Headers},
	tagBody:      {"body", bin1Bytes},
	tagStream:    {"stream", bin1Bool},
	tagBytes:     {"bytes", bin1Int},
	tagError:     {"error", bin1String},
	tagUpgrade:   {"upgrade", bin1String},
	tagTrailers:  {"trailers", bin1Headers},
}

// IsBin1 reports whether a binary WebSocket message is a bin1 frame (first
// byte 0x00) rather than a chunk of a streamed body: the receiver hands it to
// DecodeBin1, which also reports a bin1 message cut short, and any other
// binary message to DecodeChunk.
func IsBin1(data []byte) bool {
	return len(data) > 0 && data[0] == 0
}

// AppendBin1 appends the bin1 message of f to dst and returns the extended
// slice; dst may be nil. Fields at their zero value are left out, header
// names come in map order (unspecified: two encodings of one frame may
// differ), and everything else in tag order. DecodeBin1 of the result equals
// f whenever f's empty slices are nil: an empty body, header map, encodings
// list or list of a header's values decodes as nil. AppendBin1 grows dst at
// most once (one allocation), and not at all when dst has the room.
//
// A frame whose type has no bin1 code (auth, auth_ok, auth_error, an unknown
// type) returns dst unchanged and an error wrapping ErrNoBin1: the caller
// sends it as JSON text instead.
func AppendBin1(dst []byte, f *Frame) ([]byte, error) {
	code := bin1Code(f.Type)
	if code == 0 {
		return dst, fmt.Errorf("%w: type %q", ErrNoBin1, Excerpt(f.Type))
	}
	headersLen := bin1HeadersLen(f.Headers)
	trailersLen := bin1HeadersLen(f.Trailers)
	encodingsLen := bin1ListLen(f.Encodings)
	size := 2 +
		bin1StringSize(f.MessageID) + bin1StringSize(f.APIKey) + bin1StringSize(f.Tunnel) +
		bin1StringSize(f.Client) + bin1StringSize(f.SessionID) + bin1StringSize(f.Instance) +
		bin1IntSize(int64(f.Index)) + bin1BoolSize(f.Resume) + bin1ValueSize(encodingsLen) +
		bin1StringSize(f.Encoding) + bin1IntSize(f.Offset) + bin1IntSize(f.Timestamp) +
		bin1StringSize(f.Method) + bin1StringSize(f.Path) + bin1IntSize(int64(f.Status)) +
		bin1ValueSize(headersLen) + bin1ValueSize(len(f.Body)) + bin1BoolSize(f.Stream) +
		bin1IntSize(f.Bytes) + bin1StringSize(f.Error) + bin1StringSize(f.Upgrade) + bin1ValueSize(trailersLen)
	if cap(dst)-len(dst) < size {
		grown := make([]byte, len(dst), len(dst)+size)
		copy(grown, dst)
		dst = grown
	}

	dst = append(dst, 0, code)
	dst = appendBin1String(dst, tagMessageID, f.MessageID)
	dst = appendBin1String(dst, tagAPIKey, f.APIKey)
	dst = appendBin1String(dst, tagTunnel, f.Tunnel)
	dst = appendBin1String(dst, tagClient, f.Client)
	dst = appendBin1String(dst, tagSessionID, f.SessionID)
	dst = appendBin1String(dst, tagInstance, f.Instance)
	dst = appendBin1Int(dst, tagIndex, int64(f.Index))
	dst = appendBin1Bool(dst, tagResume, f.Resume)
	if encodingsLen > 0 {
		dst = append(dst, tagEncodings)
		dst = binary.AppendUvarint(dst, uint64(encodingsLen))
		dst = appendBin1List(dst, f.Encodings)
	}
	dst = appendBin1String(dst, tagEncoding, f.Encoding)
	dst = appendBin1Int(dst, tagOffset, f.Offset)
	dst = appendBin1Int(dst, tagTimestamp, f.Timestamp)
	dst = appendBin1String(dst, tagMethod, f.Method)
	dst = appendBin1String(dst, tagPath, f.Path)
	dst = appendBin1Int(dst, tagStatus, int64(f.Status))
	dst = appendBin1Headers(dst, tagHeaders, headersLen, f.Headers)
	if len(f.Body) > 0 {
		dst = append(dst, tagBody)
		dst = binary.AppendUvarint(dst, uint64(len(f.Body)))
		dst = append(dst, f.Body...)
	}
	dst = appendBin1Bool(dst, tagStream, f.Stream)
	dst = appendBin1Int(dst, tagBytes, f.Bytes)
	dst = appendBin1String(dst, tagError, f.Error)
	dst = appendBin1String(dst, tagUpgrade, f.Upgrade)
	dst = appendBin1Headers(dst, tagTrailers, trailersLen, f.Trailers)
	return dst, nil
}

// appendBin1Headers appends a header field of size n (bin1HeadersLen), or
// nothing for n = 0.
func appendBin1Headers(dst []byte, tag byte, n int, h map[string][]string) []byte {
	if n == 0 {
		return dst
	}
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = binary.AppendUvarint(dst, uint64(len(h)))
	for name, values := range h {
		dst = appendBin1Item(dst, name)
		dst = appendBin1List(dst, values)
	}
	return dst
}

// uvarintLen is the length of binary.AppendUvarint(nil, x).
func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}

// bin1ValueSize is the size of a field with an n byte value, or 0 for n = 0:
// the field is not written.
func bin1ValueSize(n int) int {
	if n == 0 {
		return 0
	}
	return 1 + uvarintLen(uint64(n)) + n
}

func bin1StringSize(s string) int { return bin1ValueSize(len(s)) }

func bin1IntSize(v int64) int {
	if v == 0 {
		return 0
	}
	// The zig-zag form of binary.AppendVarint; at most 10 bytes, so its
	// length takes one byte.
	return 2 + uvarintLen(uint64(v<<1)^uint64(v>>63))
}

func bin1BoolSize(b bool) int {
	if b {
		return 2
	}
	return 0
}

// bin1HeadersLen is the length of the value of a headers field; 0 for none.
func bin1HeadersLen(h map[string][]string) int {
	if len(h) == 0 {
		return 0
	}
	n := uvarintLen(uint64(len(h)))
	for name, values := range h {
		n += uvarintLen(uint64(len(name))) + len(name) + bin1ItemsLen(values)
	}
	return n
}

// bin1ListLen is the length of the value of a list field; 0 for an empty
// list, which is not written.
func bin1ListLen(list []string) int {
	if len(list) == 0 {
		return 0
	}
	return bin1ItemsLen(list)
}

// bin1ItemsLen is the length of appendBin1List's output: count, then the
// items.
func bin1ItemsLen(list []string) int {
	n := uvarintLen(uint64(len(list)))
	for _, s := range list {
		n += uvarintLen(uint64(len(s))) + len(s)
	}
	return n
}

func appendBin1String(dst []byte, tag byte, s string) []byte {
	if len(s) == 0 {
		return dst
	}
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBin1Int(dst []byte, tag byte, v int64) []byte {
	if v == 0 {
		return dst
	}
	dst = append(dst, tag, 0)
	at := len(dst)
	dst = binary.AppendVarint(dst, v)
	dst[at-1] = byte(len(dst) - at)
	return dst
}

func appendBin1Bool(dst []byte, tag byte, b bool) []byte {
	if !b {
		return dst
	}
	return append(dst, tag, 0)
}

// appendBin1Item appends s with its uvarint length before it.
func appendBin1Item(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendBin1List appends the count of list, then each item; a count of 0 for
// an empty list (a header name with no values).
func appendBin1List(dst []byte, list []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(list)))
	for _, s := range list {
		dst = appendBin1Item(dst, s)
	}
	return dst
}

// bin1Span is where a known field's value lies in the message, and where its
// bytes start in the decoder's string arena.
type bin1Span struct {
	start, end, arena int
}

// DecodeBin1 parses one bin1 message (a binary message for which IsBin1 is
// true) into a frame. Fields with a tag it does not know are skipped. A type
// code it does not know decodes as the type "bin1:<code>", fields and all,
// which the caller answers with an error frame as for any unknown type.
//
// Body aliases data, so data must not be changed while the frame is in use;
// the strings are copied (all into one allocation). An empty string, body,
// header map or encodings list decodes as its zero value (nil for the last
// three), as Decode does, so that DecodeBin1 of AppendBin1's output equals
// the frame encoded.
//
// A message that does not start with 0x00 and a type code, has a field cut
// short or with a bad length, a value that does not match its tag's layout
// (an integer not one varint or out of the field's range, a boolean with
// bytes, a count larger than the bytes left could hold, bytes after the last
// item), a known tag twice, or a header name twice returns an error wrapping
// ErrMalformed. Nothing is allocated for a count before the bytes it counts
// are known to be there.
func DecodeBin1(data []byte) (*Frame, error) {
	if len(data) < 2 || data[0] != 0 {
		if len(data) == 0 {
			return nil, fmt.Errorf("%w: bin1: empty message", ErrMalformed)
		}
		if data[0] != 0 {
			return nil, fmt.Errorf("%w: bin1: first byte %#02x, not 0x00", ErrMalformed, data[0])
		}
		return nil, fmt.Errorf("%w: bin1: no type code", ErrMalformed)
	}
	code := data[1]
	var typ string
	if int(code) < len(bin1Types) {
		typ = bin1Types[code]
	}
	if typ == "" {
		typ = "bin1:" + strconv.Itoa(int(code))
	}

	// First pass: find the known fields, check that no field is cut short,
	// and add up the bytes of those that hold strings.
	var spans [len(bin1Fields)]bin1Span
	var seen uint64
	stringBytes := 0
	for p := 2; p < len(data); {
		tag := data[p]
		n, k := binary.Uvarint(data[p+1:])
		if k <= 0 {
			return nil, fmt.Errorf("%w: bin1: field tag %d at byte %d: no valid length", ErrMalformed, tag, p)
		}
		start := p + 1 + k
		if n > uint64(len(data)-start) {
			return nil, fmt.Errorf("%w: bin1: field tag %d at byte %d: length %d but %d bytes left", ErrMalformed, tag, p, n, len(data)-start)
		}
		p = start + int(n)
		if int(tag) >= len(bin1Fields) || bin1Fields[tag].kind == 0 {
			continue // unknown: skipped
		}
		if seen&(1<<tag) != 0 {
			return nil, fmt.Errorf("%w: bin1: field %s twice", ErrMalformed, bin1Fields[tag].name)
		}
		seen |= 1 << tag
		spans[tag] = bin1Span{start: start, end: p}
		switch bin1Fields[tag].kind {
		case bin1String, bin1Headers, bin1List:
			stringBytes += p - start
		}
	}

	// All strings of the frame are cut from one copy of the fields that
	// hold them.
	var arena string
	if stringBytes > 0 {
		var b strings.Builder
		b.Grow(stringBytes)
		for m := seen; m != 0; m &= m - 1 {
			tag := bits.TrailingZeros64(m)
			switch bin1Fields[tag].kind {
			case bin1String, bin1Headers, bin1List:
				s := &spans[tag]
				s.arena = b.Len()
				b.Write(data[s.start:s.end])
			}
		}
		arena = b.String()
	}

	f := &Frame{Type: typ}
	for m := seen; m != 0; m &= m - 1 {
		tag := byte(bits.TrailingZeros64(m))
		s := spans[tag]
		v := data[s.start:s.end:s.end]
		var str string // the value as a string, for the fields that hold strings
		switch bin1Fields[tag].kind {
		case bin1String, bin1Headers, bin1List:
			str = arena[s.arena : s.arena+len(v)]
		}
		var err error
		switch tag {
		case tagMessageID:
			f.MessageID = str
		case tagAPIKey:
			f.APIKey = str
		case tagTunnel:
			f.Tunnel = str
		case tagClient:
			f.Client = str
		case tagSessionID:
			f.SessionID = str
		case tagInstance:
			f.Instance = str
		case tagIndex:
			f.Index, err = bin1IntValue(v)
		case tagResume:
			f.Resume, err = bin1BoolValue(v)
		case tagEncodings:
			f.Encodings, err = bin1ListValue(v, str)
		case tagEncoding:
			f.Encoding = str
		case tagOffset:
			f.Offset, err = bin1Int64Value(v)
		case tagTimestamp:
			f.Timestamp, err = bin1Int64Value(v)
		case tagMethod:
			f.Method = str
		case tagPath:
			f.Path = str
		case tagStatus:
			f.Status, err = bin1IntValue(v)
		case tagHeaders:
			f.Headers, err = bin1HeadersValue(v, str)
		case tagBody:
			if len(v) > 0 {
				f.Body = v
			}
		case tagStream:
			f.Stream, err = bin1BoolValue(v)
		case tagBytes:
			f.Bytes, err = bin1Int64Value(v)
		case tagError:
			f.Error = str
		case tagUpgrade:
			f.Upgrade = str
		case tagTrailers:
			f.Trailers, err = bin1HeadersValue(v, str)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: bin1: field %s: %v", ErrMalformed, bin1Fields[tag].name, err)
		}
	}
	return f, nil
}

var (
	errBin1Varint = errors.New("not one zig-zag varint")
	errBin1Range  = errors.New("integer out of range")
	errBin1Bool   = errors.New("boolean with bytes")
)

func bin1Int64Value(v []byte) (int64, error) {
	x, n := binary.Varint(v)
	if n <= 0 || n != len(v) {
		return 0, errBin1Varint
	}
	return x, nil
}

func bin1IntValue(v []byte) (int, error) {
	x, err := bin1Int64Value(v)
	if err != nil {
		return 0, err
	}
	if int64(int(x)) != x {
		return 0, errBin1Range
	}
	return int(x), nil
}

func bin1BoolValue(v []byte) (bool, error) {
	if len(v) != 0 {
		return false, errBin1Bool
	}
	return true, nil
}

// skipBin1Item returns where the item (uvarint length, bytes) at v[p:] ends.
func skipBin1Item(v []byte, p int) (int, error) {
	n, k := binary.Uvarint(v[p:])
	if k <= 0 {
		return 0, fmt.Errorf("no valid length at byte %d", p)
	}
	p += k
	if n > uint64(len(v)-p) {
		return 0, fmt.Errorf("item of %d bytes at byte %d but %d bytes left", n, p, len(v)-p)
	}
	return p + int(n), nil
}

// cutBin1Item returns the item at v[p:], already checked by skipBin1Item, as
// a string cut from a (the same bytes as v), and where it ends.
func cutBin1Item(v []byte, a string, p int) (string, int) {
	n, k := binary.Uvarint(v[p:])
	p += k
	return a[p : p+int(n)], p + int(n)
}

// bin1Count reads the count at v[p:] of things that take at least least
// bytes each, and checks that the bytes after it can hold that many.
func bin1Count(v []byte, p, least int) (int, int, error) {
	n, k := binary.Uvarint(v[p:])
	if k <= 0 {
		return 0, 0, fmt.Errorf("no valid count at byte %d", p)
	}
	p += k
	if n > uint64((len(v)-p)/least) {
		return 0, 0, fmt.Errorf("count %d at byte %d larger than the %d bytes left can hold", n, p-k, len(v)-p)
	}
	return int(n), p, nil
}

// bin1ListValue decodes a list value v; a holds the same bytes as a string.
// An empty list decodes as nil.
func bin1ListValue(v []byte, a string) ([]string, error) {
	count, p, err := bin1Count(v, 0, 1)
	if err != nil {
		return nil, err
	}
	var list []string
	if count > 0 {
		list = make([]string, count)
	}
	for i := range list {
		if _, err := skipBin1Item(v, p); err != nil {
			return nil, err
		}
		list[i], p = cutBin1Item(v, a, p)
	}
	if p != len(v) {
		return nil, fmt.Errorf("%d bytes after the last item", len(v)-p)
	}
	return list, nil
}

// bin1HeadersValue decodes a headers value v; a holds the same bytes as a
// string. An empty map decodes as nil, a name with no values as nil values.
func bin1HeadersValue(v []byte, a string) (map[string][]string, error) {
	// A name takes at least two bytes: its length and its count of values.
	names, first, err := bin1Count(v, 0, 2)
	if err != nil {
		return nil, err
	}
	// First walk: check the layout and count the values, so that one slice
	// holds them all.
	total := 0
	p := first
	for range names {
		if p, err = skipBin1Item(v, p); err != nil {
			return nil, err
		}
		var n int
		if n, p, err = bin1Count(v, p, 1); err != nil {
			return nil, err
		}
		for range n {
			if p, err = skipBin1Item(v, p); err != nil {
				return nil, err
			}
		}
		total += n
	}
	if p != len(v) {
		return nil, fmt.Errorf("%d bytes after the last header", len(v)-p)
	}
	if names == 0 {
		return nil, nil
	}

	all := make([]string, total)
	// The hint is capped: a message of many copies of one name must fail at
	// the second copy, not after making room for all of them.
	h := make(map[string][]string, min(names, 64))
	p = first
	for i := range names {
		var name string
		name, p = cutBin1Item(v, a, p)
		n, k := binary.Uvarint(v[p:])
		p += k
		var values []string
		if n > 0 {
			values, all = all[:n:n], all[n:]
			for j := range values {
				values[j], p = cutBin1Item(v, a, p)
			}
		}
		h[name] = values
		if len(h) != i+1 {
			return nil, fmt.Errorf("header %q twice", Excerpt(name))
		}
	}
	return h, nil
}
