package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary payloads to both decoders, as a peer could. They
// must never panic, must fail only with ErrMalformed, and whatever they accept
// must survive a round trip through the encoders unchanged.
func FuzzDecode(f *testing.F) {
	for _, tc := range goldenFrames {
		f.Add(readGolden(f, tc.name))
	}
	for _, tc := range malformed {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte(`{"type":"request","Type":"x","headers":{"A":[null,"b"],"B":[]},"body":"AA=="}`))
	f.Add([]byte("{\"type\":\"\xff\\ud800\",\"error\":\"\\u00e9\"}"))
	f.Add([]byte{3, 'a', 'b', 'c', 0x00, 0xff})
	f.Add([]byte{MaxIDLength, 'x'})

	f.Fuzz(func(t *testing.T, data []byte) {
		if frame, err := Decode(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode error %v does not wrap ErrMalformed", err)
			}
		} else {
			encoded, err := Encode(frame)
			if err != nil {
				t.Fatalf("Encode(%+v): %v", frame, err)
			}
			again, err := Decode(encoded)
			if err != nil {
				t.Fatalf("Decode(%s): %v", encoded, err)
			}
			if !reflect.DeepEqual(again, frame) {
				t.Fatalf("round trip through %s:\n got %+v\nwant %+v", encoded, again, frame)
			}
		}

		if id, chunk, err := DecodeChunk(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeChunk error %v does not wrap ErrMalformed", err)
			}
		} else {
			encoded, err := EncodeChunk(id, chunk)
			if err != nil {
				t.Fatalf("EncodeChunk(%q): %v", id, err)
			}
			if !bytes.Equal(encoded, data) {
				t.Fatalf("EncodeChunk(DecodeChunk(%x)) = %x", data, encoded)
			}
		}
	})
}
