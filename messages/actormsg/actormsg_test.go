package actormsg

import (
	"testing"

	"github.com/enhanced-tunnel/tunnel/messages"
)

func TestConnectionFailedIsAnError(t *testing.T) {
	f := &ConnectionFailed{Type: messages.Timeout, Err: messages.ErrStopped}
	if f.Error() != "TIMEOUT: tunnel: stopped" || f.Unwrap() != messages.ErrStopped {
		t.Fatalf("%q", f.Error())
	}
	if (&ConnectionFailed{Type: messages.Unknown}).Error() != "UNKNOWN" {
		t.Fatal("no cause")
	}
}
