package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Frame types of the protocol. Any other type is unknown: the receiver
// answers it with an error frame and keeps the connection up.
const (
	TypeAuth         = "auth"
	TypeAuthOK       = "auth_ok"
	TypeAuthError    = "auth_error"
	TypeHeartbeat    = "heartbeat"
	TypeHeartbeatAck = "heartbeat_ack"
	TypeRequest      = "request"
	TypeResponse     = "response"
	TypeError        = "error"
	TypeCancel       = "cancel"
	TypeStreamEnd    = "stream_end"
	TypeStreamError  = "stream_error"
	TypeWindowUpdate = "window_update"
	// TypeStreamResume moves a response stream cut by a lost connection to
	// another connection of the same supervisor (see Frame.Resume).
	TypeStreamResume = "stream_resume"
)

// WebSocket close codes the protocol gives a meaning to.
const (
	CloseNormal        = 1000 // orderly shutdown
	CloseProtocolError = 1002 // malformed frame: not JSON, or no type
	ClosePolicy        = 1008 // auth refused
	CloseTooBig        = 1009 // message over the read limit
	CloseTryAgainLater = 1013 // relay at its session limit
)

// Defaults of the contract.
const (
	// DefaultReadLimit is the largest WebSocket message either side accepts: 16 MiB.
	DefaultReadLimit = 16 << 20
	// DefaultInlineLimit is the largest body sent inline in a frame's body field: 64 KiB.
	// Larger bodies, or bodies of unknown length, are streamed.
	DefaultInlineLimit = 64 << 10
	// DefaultChunkLimit is the largest chunk of a streamed body in one binary message: 256 KiB.
	DefaultChunkLimit = 256 << 10
	// DefaultWindow is the number of chunk bytes a stream's sender may have in
	// flight before the receiver grants more: 1 MiB.
	DefaultWindow = 1 << 20
	// DefaultTunnel is the tunnel name used when the auth frame names none.
	DefaultTunnel = "default"
	// MaxIDLength is the longest message_id a binary chunk can carry.
	MaxIDLength = 255
)

// ErrMalformed is wrapped by every decoding error: the payload is not a JSON
// object with a string type, or a binary chunk is cut short. The receiver
// treats it as a protocol error (close 1002).
var ErrMalformed = errors.New("wire: malformed frame")

// Frame is one control frame. Which fields are used depends on Type (see
// PROTOCOL.md); unused fields are left empty and are not encoded. It travels
// as JSON text (Encode, Decode), where Body is base64, or, once auth has
// negotiated it, as a bin1 binary message (AppendBin1, DecodeBin1).
type Frame struct {
	Type      string `json:"type"`
	MessageID string `json:"message_id,omitempty"`
	APIKey    string `json:"api_key,omitempty"`
	Tunnel    string `json:"tunnel,omitempty"`
	Client    string `json:"client,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	// Instance and Index, in auth, name the supervisor process (random per
	// process) and which of its connections this is: the relay replaces a
	// session with the same pair and keeps a session of any other beside it.
	Instance string `json:"instance,omitempty"`
	Index    int    `json:"index,omitempty"`
	// Resume, in auth, says the supervisor can move its response streams
	// to another of its connections when one is lost (stream_resume); in
	// auth_ok, that the relay keeps such streams open for it meanwhile.
	Resume bool `json:"resume,omitempty"`
	// Encodings, in auth, lists the frame encodings the supervisor can read,
	// most preferred first (["bin1","json"]); JSON text is always read,
	// listed or not. Encoding, in auth_ok, is the one the relay chose from
	// that list (Choose), which both sides may send from then on; empty, or
	// EncodingJSON, means JSON text only. See "The bin1 encoding" in the
	// package documentation.
	Encodings []string `json:"encodings,omitempty"`
	Encoding  string   `json:"encoding,omitempty"`
	// Offset, in the relay's stream_resume, is how many body bytes of the
	// stream it has: the supervisor sends again from there.
	Offset    int64               `json:"offset,omitempty"`
	Timestamp int64               `json:"timestamp,omitempty"`
	Method    string              `json:"method,omitempty"`
	Path      string              `json:"path,omitempty"`
	Status    int                 `json:"status,omitempty"`
	Headers   map[string][]string `json:"headers,omitempty"`
	Body      []byte              `json:"body,omitempty"`
	Stream    bool                `json:"stream,omitempty"`
	Bytes     int64               `json:"bytes,omitempty"`
	Error     string              `json:"error,omitempty"`
	// Upgrade, in a request, is the protocol the public client asks to
	// switch to (its Upgrade header, e.g. "websocket"); the request's body
	// stream then carries the client's bytes once the response is 101. In a
	// 101 response it is the protocol switched to, and the response's body
	// stream carries the service's bytes. See "Upgrades" in PROTOCOL.md.
	Upgrade string `json:"upgrade,omitempty"`
	// Trailers, in a stream_end, are the trailer fields of the body that
	// ends (an HTTP response's trailers, e.g. grpc-status).
	Trailers map[string][]string `json:"trailers,omitempty"`
}

// MaxExcerpt is the most bytes of one frame field that Excerpt keeps.
const MaxExcerpt = 64

// Excerpt returns s fit to be logged: at most MaxExcerpt bytes of it, cut on
// a character boundary and marked with the length it had. A peer decides
// what its frames hold, and one frame must not be able to fill a log.
func Excerpt(s string) string {
	if len(s) <= MaxExcerpt {
		return s
	}
	cut := MaxExcerpt
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d bytes)", strings.ToValidUTF8(s[:cut], "?"), len(s))
}

// Known reports whether t is one of the protocol's frame types.
func Known(t string) bool {
	switch t {
	case TypeAuth, TypeAuthOK, TypeAuthError, TypeHeartbeat, TypeHeartbeatAck,
		TypeRequest, TypeResponse, TypeError, TypeCancel,
		TypeStreamEnd, TypeStreamError, TypeWindowUpdate, TypeStreamResume:
		return true
	}
	return false
}

// Encode returns the JSON text of f.
func Encode(f *Frame) ([]byte, error) {
	if f.Type == "" {
		return nil, errors.New("wire: frame has no type")
	}
	// Without HTML escaping a path such as "/tts?a=1&b=2" reads the same on
	// the wire as in PROTOCOL.md; frames never land in an HTML page.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// MustEncode is Encode for frames built in code, whose encoding cannot fail.
func MustEncode(f *Frame) []byte {
	b, err := Encode(f)
	if err != nil {
		panic(err)
	}
	return b
}

// Decode parses one JSON text message. Unknown fields are ignored; an unknown
// type decodes fine (the caller answers it with an error frame). A payload
// that is not a JSON object, has fields of the wrong JSON type, or lacks a
// string "type" returns an error wrapping ErrMalformed.
//
// Field names must match exactly: encoding/json on its own would also read
// "Type" or "MESSAGE_ID", which the contract calls unknown fields. An empty
// body, header map or encodings list decodes as nil, so that a decoded frame
// equals the decoding of its own encoding.
func Decode(data []byte) (*Frame, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var f Frame
	fields := []struct {
		name string
		dst  any
	}{
		{"type", &f.Type},
		{"message_id", &f.MessageID},
		{"api_key", &f.APIKey},
		{"tunnel", &f.Tunnel},
		{"client", &f.Client},
		{"session_id", &f.SessionID},
		{"instance", &f.Instance},
		{"index", &f.Index},
		{"resume", &f.Resume},
		{"encodings", &f.Encodings},
		{"encoding", &f.Encoding},
		{"offset", &f.Offset},
		{"timestamp", &f.Timestamp},
		{"method", &f.Method},
		{"path", &f.Path},
		{"status", &f.Status},
		{"headers", &f.Headers},
		{"body", &f.Body},
		{"stream", &f.Stream},
		{"bytes", &f.Bytes},
		{"error", &f.Error},
	}
	for _, field := range fields {
		value, ok := raw[field.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(value, field.dst); err != nil {
			return nil, fmt.Errorf("%w: field %s: %v", ErrMalformed, field.name, err)
		}
	}
	if f.Type == "" {
		return nil, fmt.Errorf("%w: no type", ErrMalformed)
	}
	if len(f.Body) == 0 {
		f.Body = nil
	}
	if len(f.Headers) == 0 {
		f.Headers = nil
	}
	if len(f.Encodings) == 0 {
		f.Encodings = nil
	}
	return &f, nil
}

// EncodeChunk lays out one binary message of a streamed body: one byte with
// the id's length, the id, then the chunk bytes.
func EncodeChunk(messageID string, chunk []byte) ([]byte, error) {
	if err := checkChunkID(messageID); err != nil {
		return nil, err
	}
	return layoutChunk(messageID, chunk), nil
}

func checkChunkID(messageID string) error {
	if len(messageID) == 0 || len(messageID) > MaxIDLength {
		return fmt.Errorf("wire: chunk message_id must be 1 to %d bytes, got %d", MaxIDLength, len(messageID))
	}
	return nil
}

// layoutChunk is EncodeChunk for an id already checked.
func layoutChunk(messageID string, chunk []byte) []byte {
	out := make([]byte, 1+len(messageID)+len(chunk))
	out[0] = byte(len(messageID))
	copy(out[1:], messageID)
	copy(out[1+len(messageID):], chunk)
	return out
}

// DecodeChunk splits a binary message into its message_id and chunk bytes.
// The chunk aliases data.
func DecodeChunk(data []byte) (messageID string, chunk []byte, err error) {
	if len(data) == 0 {
		return "", nil, fmt.Errorf("%w: empty binary message", ErrMalformed)
	}
	n := int(data[0])
	if n == 0 || len(data) < 1+n {
		return "", nil, fmt.Errorf("%w: binary message with id length %d but %d bytes", ErrMalformed, n, len(data))
	}
	return string(data[1 : 1+n]), data[1+n:], nil
}
