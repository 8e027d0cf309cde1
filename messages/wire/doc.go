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
package wire
