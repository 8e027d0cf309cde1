// Package wire is the tunnel's wire contract (PROTOCOL.md) as Go values: the
// JSON control frames, the binary chunk layout of streamed bodies, the close
// codes, the default limits, and the per-stream flow-control primitives that
// both ends use.
//
// It imports no WebSocket library: callers read and write whole WebSocket
// messages and hand their payloads to Decode, DecodeChunk, Encode and
// EncodeChunk. That keeps the contract testable with golden frames and fuzzing
// alone, and lets other relays or clients reuse it.
package wire
