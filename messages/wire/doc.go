// Package wire is the tunnel's wire contract (PROTOCOL.md) as Go values: the
// JSON control frames, the binary chunk layout of streamed bodies, the close
// codes, the default limits, and the per-stream flow-control primitives that
// both ends use.
//
// It imports no WebSocket library: callers read and write whole WebSocket
// messages and hand their payloads to Decode, DecodeChunk, Encode and
// EncodeChunk. That keeps the contract testable with golden frames and fuzzing
// alone, and lets other relays or clients reuse it.
//
// Flow control is per stream, so that a slow consumer stalls only its own
// stream: the sender takes credit from a SendWindow before each chunk and
// waits when it has none (SendStream does this), while the receiver's
// StreamReader buffers at most the window and gives credit back with a
// window_update each time its consumer has read half a window.
//
// # The bin1 encoding
//
// JSON text is the contract's encoding of control frames and is always
// allowed. bin1 is an optional compact binary encoding of the same frames,
// which saves the cost of JSON on the hot path (AppendBin1, DecodeBin1).
//
// Negotiation: the supervisor lists in auth's "encodings" the encodings it
// can read, most preferred first (["bin1","json"]); the relay answers in
// auth_ok's "encoding" the first of them it also reads (Choose), where empty
// or "json" means JSON text only. auth, auth_ok and auth_error are always
// JSON text. Once auth_ok has named bin1 (for the relay: once it has sent it;
// for the supervisor: once it has read it) either side may send any frame
// whose type has a code as bin1, and must read bin1; it may still send any
// frame as JSON text. Before that, a binary message starting with 0x00 is a
// malformed chunk.
//
// Layout: a bin1 frame is one binary WebSocket message, a zero byte, a type
// code byte, then fields to the end of the message, each a tag byte, a
// uvarint (encoding/binary) length L and L bytes of value:
//
//	00 <code> [<tag> <uvarint L> <L bytes>]...
//
// A chunk of a streamed body starts with its id length, 1 to 255, so the
// first byte tells the two apart (IsBin1). A field at its zero value (empty
// string, body, map or list; integer 0; false) is not written. Values:
//
//	string, body  the raw bytes (strings are not checked for UTF-8)
//	integer       one zig-zag varint (binary.AppendVarint) filling the value
//	boolean       no bytes: present means true
//	headers       uvarint count of names, then per name: uvarint length, the
//	              name, uvarint count of values, per value: uvarint length,
//	              the value; names in no particular order
//	encodings     uvarint count of items, per item: uvarint length, the item
//
// Type codes (auth, auth_ok and auth_error have none):
//
//	1 heartbeat   2 heartbeat_ack  3 request       4 response       5 error
//	6 cancel      7 stream_end     8 stream_error  9 window_update  10 stream_resume
//
// Field tags, in the order of Frame's fields (Type is the type code):
//
//	1 message_id  2 api_key        3 tunnel        4 client         5 session_id
//	6 instance    7 index          8 resume        9 encodings      10 encoding
//	11 offset     12 timestamp     13 method       14 path          15 status
//	16 headers    17 body          18 stream       19 bytes         20 error
//	21 upgrade    22 trailers
//
// Tag 0 and code 0 are never given. A decoder skips a field whose tag it does
// not know, so that new optional fields need no new version; a known tag
// twice in one frame, a header name twice, or a value that does not fit its
// tag's layout makes the frame malformed (close 1002). A type code the
// decoder does not know decodes as the type "bin1:<code in decimal>", fields
// and all, and is answered with an error frame like a JSON frame of an
// unknown type. testdata/bin1 holds annotated hex dumps of sample frames.
package wire
