package messages

import "time"

// StateChanged is sent by the connection actor on every state change, and
// passed on by the supervisor to the heartbeat, breaker and health actors.
type StateChanged struct {
	State State
	// Connection is the index of the tunnel's connection that changed.
	Connection int
	At         time.Time
	// Attempt counts connection attempts since the tunnel started, from 1.
	Attempt int
	// SessionID and ConnectTime are set when State is Authenticated:
	// the relay's session id and the time from dial to auth_ok.
	SessionID string
	// Epoch, set when State is Authenticated, numbers the session among all
	// of the tunnel's (see Inbound): what was bound to it fails with it.
	Epoch       int
	ConnectTime time.Duration
	// Resume is set when the relay's auth_ok said it keeps this session's
	// response streams open for a stream_resume should the session be lost.
	Resume bool
}
