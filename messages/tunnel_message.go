package messages

import "io"

// Message types an application sends and receives through the tunnel.
const (
	TypeRequest  = "request"
	TypeResponse = "response"
	TypeError    = "error"
	TypeCancel   = "cancel"
)

// TunnelMessage is the generic application message of the seed: a request,
// its response, an error, or a cancel, matched by MessageID.
type TunnelMessage struct {
	Type      string
	MessageID string
	Method    string              // request
	Path      string              // request: path and query
	Status    int                 // response
	Headers   map[string][]string // request, response
	Body      []byte
	// BodyStream, on a message to send, is read to its end and sent as a
	// stream of chunks instead of Body (use it for bodies over the inline
	// limit or of unknown length). On a received message whose body was
	// streamed, it yields the body as it arrives and Body is nil.
	BodyStream io.Reader
	Error      string // error
	// Upgrade, on a request, is the protocol the public client asks to
	// switch to ("websocket"): BodyStream then carries the client's bytes
	// once the answer is a 101. On a 101 response, the protocol switched
	// to; its BodyStream carries the service's bytes. See PROTOCOL.md.
	Upgrade string
}
