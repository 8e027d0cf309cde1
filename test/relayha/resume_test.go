package relayha_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
)

// connectResumable connects a supervisor connection that asks for resume,
// and expects auth_ok to grant it.
func connectResumable(t *testing.T, r *relay.Relay, name, instance string, index int) *rawSupervisor {
	t.Helper()
	s := dialAuth(t, r, name, &wire.Frame{Type: wire.TypeAuth, APIKey: key, Client: "relayha-raw/1", Instance: instance, Index: index, Resume: true}, nil)
	if f := s.expect(wire.TypeAuthOK); !f.Resume {
		t.Fatalf("%s: auth_ok %+v, want resume", name, f)
	}
	return s
}

// audio is a response body of several chunks.
var audio = bytes.Repeat([]byte("0123456789abcdef"), 4096)

// chunkSize is what the test supervisors send at once.
const chunkSize = 4096

// streamedGet sends a public GET and waits for its request frame at one
// of supervisors: it returns the one that got it, the message id, and the
// channel of the public answer.
func streamedGet(t *testing.T, r *relay.Relay, supervisors ...*rawSupervisor) (*rawSupervisor, string, <-chan publicAnswer) {
	t.Helper()
	c := client(t)
	answered := make(chan publicAnswer, 1)
	go func() {
		status, body, err := fetch(c, http.MethodGet, publicURL(r)+"/v1/tts/stream", "")
		answered <- publicAnswer{status, body, err}
	}()
	for {
		for _, s := range supervisors {
			select {
			case f := <-s.frames:
				if f.Type != wire.TypeRequest {
					t.Fatalf("%s: got %+v, want the request", s.name, f)
				}
				return s, f.MessageID, answered
			default:
			}
		}
		select {
		case <-answered:
			t.Fatal("public request answered before any supervisor got it")
		default:
		}
		eventually(t, "a supervisor gets the request", func() bool {
			for _, s := range supervisors {
				if len(s.frames) > 0 {
					return true
				}
			}
			return false
		})
	}
}

type publicAnswer struct {
	status int
	body   string
	err    error
}

// sendBody sends audio[from:to] as chunks of stream id.
func (s *rawSupervisor) sendBody(id string, from, to int) {
	for at := from; at < to; at += chunkSize {
		s.chunk(id, audio[at:min(at+chunkSize, to)])
	}
}

// resumeOn asks s to resume stream id and returns the relay's offset,
// checked against sent (what the old connection sent) and the credit.
func resumeOn(t *testing.T, s *rawSupervisor, id string, sent int) int {
	t.Helper()
	s.send(&wire.Frame{Type: wire.TypeStreamResume, MessageID: id})
	f := s.expect(wire.TypeStreamResume)
	if f.MessageID != id || f.Offset < 0 || f.Offset > int64(sent) || f.Bytes < int64(len(audio))-f.Offset {
		t.Fatalf("stream_resume %+v: want an offset up to %d and credit for the rest of %d bytes", f, sent, len(audio))
	}
	return int(f.Offset)
}

func wantWhole(t *testing.T, answered <-chan publicAnswer) {
	t.Helper()
	a := <-answered
	if a.err != nil || a.status != http.StatusOK || a.body != string(audio) {
		t.Fatalf("public answer %d, %d bytes, %v: want 200 and the %d bytes intact", a.status, len(a.body), a.err, len(audio))
	}
}

func wantResumes(t *testing.T, r *relay.Relay, result string, n int) {
	t.Helper()
	want := `tunnel_relay_resumes_total{result="` + result + `"} ` + string(rune('0'+n))
	if text := metrics(t, client(t), r); !strings.Contains(text, want) {
		t.Errorf("metrics lack %q", want)
	}
}

// One supervisor, two connections with resume: the connection streaming a
// response dies mid-body, and the other resumes the stream from the
// relay's offset. The public client gets the whole body.
func TestStreamResumesOnAnotherConnectionAfterALoss(t *testing.T) {
	r := startRelay(t, nil)
	a := connectResumable(t, r, "a", "instance-a", 0)
	b := connectResumable(t, r, "b", "instance-a", 1)
	first, id, answered := streamedGet(t, r, a, b)
	second := b
	if first == b {
		second = a
	}
	first.send(&wire.Frame{Type: wire.TypeResponse, MessageID: id, Status: http.StatusOK, Stream: true,
		Headers: map[string][]string{"Content-Type": {"audio/mpeg"}}})
	sent := len(audio) / 3
	first.sendBody(id, 0, sent)
	first.drop()
	c := client(t)
	eventually(t, "the relay notices the loss", func() bool {
		return strings.Contains(metrics(t, c, r), `tunnel_relay_tunnel_sessions{tunnel="default"} 1`)
	})
	offset := resumeOn(t, second, id, sent)
	second.sendBody(id, offset, len(audio))
	second.send(&wire.Frame{Type: wire.TypeStreamEnd, MessageID: id})
	wantWhole(t, answered)
	wantResumes(t, r, "resumed", 1)
}

// The supervisor resumes on another connection while the relay still
// holds the first one (a path that blackholes): the relay hands the
// stream over, and drops what comes late on the first.
func TestStreamResumesWhileTheOldConnectionIsOpen(t *testing.T) {
	r := startRelay(t, nil)
	a := connectResumable(t, r, "a", "instance-a", 0)
	b := connectResumable(t, r, "b", "instance-a", 1)
	first, id, answered := streamedGet(t, r, a, b)
	second := b
	if first == b {
		second = a
	}
	first.send(&wire.Frame{Type: wire.TypeResponse, MessageID: id, Status: http.StatusOK, Stream: true})
	sent := len(audio) / 2
	first.sendBody(id, 0, sent)
	// Once this is answered, the relay has the response: the supervisor
	// resumes a stream it has seen the relay take.
	first.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "hb0"})
	first.expect(wire.TypeHeartbeatAck)
	offset := resumeOn(t, second, id, sent)
	// Late on the old connection: dropped without a word.
	first.sendBody(id, offset, offset+chunkSize)
	first.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "hb"})
	if ack := first.expect(wire.TypeHeartbeatAck); ack.MessageID != "hb" {
		t.Fatalf("ack %+v", ack)
	}
	second.sendBody(id, offset, len(audio))
	second.send(&wire.Frame{Type: wire.TypeStreamEnd, MessageID: id})
	wantWhole(t, answered)
	if !first.isOpen() {
		t.Fatal("the old connection was closed")
	}
	wantResumes(t, r, "resumed", 1)
}

// Another supervisor process cannot take a stream over; the stream goes on
// where it was.
func TestStreamResumeRefusedForAnotherInstance(t *testing.T) {
	r := startRelay(t, nil)
	a := connectResumable(t, r, "a", "instance-a", 0)
	first, id, answered := streamedGet(t, r, a)
	other := connectResumable(t, r, "other", "instance-b", 0)
	first.send(&wire.Frame{Type: wire.TypeResponse, MessageID: id, Status: http.StatusOK, Stream: true})
	first.sendBody(id, 0, len(audio)/2)
	first.send(&wire.Frame{Type: wire.TypeHeartbeat, MessageID: "hb0"})
	first.expect(wire.TypeHeartbeatAck)
	other.send(&wire.Frame{Type: wire.TypeStreamResume, MessageID: id})
	if f := other.expect(wire.TypeError); f.MessageID != id || f.Error != "stream cannot be resumed" {
		t.Fatalf("refusal %+v", f)
	}
	first.sendBody(id, len(audio)/2, len(audio))
	first.send(&wire.Frame{Type: wire.TypeStreamEnd, MessageID: id})
	wantWhole(t, answered)
	wantResumes(t, r, "refused", 1)
}
