// Package batchconn lets frames that are ready together leave in one system
// call.
//
// A WebSocket library writes each message with its own write on the
// connection: one system call per frame. Under load a writer often holds
// several frames at once (responses of concurrent requests, a chunk and a
// window update); writing them as one costs one system call instead of
// several and fills TCP segments. A Conn wraps the network connection under
// the WebSocket: its owner calls Hold before writing what it has queued and
// Flush when its queue is empty, and everything written in between leaves
// in one write (large writes go out at once, with what was held before them,
// in one vectored write).
//
// Writes outside Hold and Flush pass straight through, so a Conn can carry
// any protocol, and writes of other goroutines (a close frame, a pong) are
// safe at any time: while held they join the batch.
package batchconn
