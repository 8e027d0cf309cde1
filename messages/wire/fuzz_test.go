package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
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

// FuzzDecodeBin1 feeds arbitrary binary messages to DecodeBin1, as a peer
// could. It must never panic and must fail only with ErrMalformed; a frame it
// accepts must encode again (or, for an unknown type code, be refused by
// AppendBin1 with ErrNoBin1), in no more bytes than it came in, and decode
// to the same frame.
func FuzzDecodeBin1(f *testing.F) {
	for _, tc := range goldenFrames {
		if data, err := AppendBin1(nil, &tc.frame); err == nil {
			f.Add(data)
		}
	}
	for _, typ := range bin1Typed {
		full := fullFrame(typ)
		f.Add(mustBin1(f, &full))
	}
	for _, tc := range bin1Golden {
		f.Add(mustBin1(f, &tc.frame))
	}
	for _, tc := range malformedBin1 {
		f.Add(tc.in)
	}
	f.Add(bin1Msg(99, bin1Field(tagMessageID, 'm'), bin1Field(200, 1, 2)))
	f.Add(bin1Msg(codeRequest, bin1Field(tagHeaders, 2, 0, 0, 1, 'A', 2, 0, 1, 'b')))

	f.Fuzz(func(t *testing.T, data []byte) {
		frame, err := DecodeBin1(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeBin1 error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !IsBin1(data) {
			t.Fatalf("DecodeBin1 accepted % x, which IsBin1 refuses", data)
		}
		encoded, err := AppendBin1(nil, frame)
		if bin1Code(frame.Type) == 0 {
			if want := "bin1:" + strconv.Itoa(int(data[1])); frame.Type != want || !errors.Is(err, ErrNoBin1) {
				t.Fatalf("code %d decoded as type %q; AppendBin1 error %v", data[1], frame.Type, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("AppendBin1(%+v): %v", frame, err)
		}
		if len(encoded) > len(data) {
			t.Fatalf("%d bytes encode again in %d", len(data), len(encoded))
		}
		again, err := DecodeBin1(encoded)
		if err != nil {
			t.Fatalf("DecodeBin1(% x): %v", encoded, err)
		}
		if !reflect.DeepEqual(again, frame) {
			t.Fatalf("round trip through % x:\n got %+v\nwant %+v", encoded, again, frame)
		}
	})
}
