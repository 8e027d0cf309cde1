// Package ttsdemo is a stand-in TTS server for trying and testing the
// tunnel without a real model: POST /v1/tts with {"text":"...","voice":"..."}
// answers a WAV (16-bit mono, 22050 Hz) of a sine tone as long as the text
// would take to say, streamed in 100 ms chunks; GET /healthz answers
// {"status":"ok"}. cmd/tts-demo serves it; the integration and stress tests
// run it in-process.
package ttsdemo

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"time"
	"unicode/utf8"
)

// The audio format: what a small TTS model typically produces.
const (
	sampleRate    = 22050
	bitsPerSample = 16
	headerSize    = 44

	perRune      = 60 * time.Millisecond // spoken length of one character
	minAudio     = 300 * time.Millisecond
	maxTextRunes = 1000
	chunkSamples = sampleRate / 10 // 100 ms of audio per streamed chunk
	fade         = sampleRate / 100
	amplitude    = 0.3 * math.MaxInt16
)

type ttsRequest struct {
	Text  string `json:"text"`
	Voice string `json:"voice"`
}

// NewHandler serves POST /v1/tts and GET /healthz. pace runs between audio
// chunks, standing in for the time a real model spends synthesising; its
// error (the client went away) ends the answer. A nil pace does not pause.
func NewHandler(pace func(ctx context.Context) error) http.Handler {
	if pace == nil {
		pace = func(context.Context) error { return nil }
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("POST /v1/tts", func(w http.ResponseWriter, r *http.Request) {
		var req ttsRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			httpError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
			return
		}
		n := utf8.RuneCountInString(req.Text)
		if n == 0 || n > maxTextRunes {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("text must have 1 to %d characters", maxTextRunes))
			return
		}
		samples := samplesFor(n)
		w.Header().Set("Content-Type", "audio/wav")
		w.Header().Set("X-Audio-Seconds", fmt.Sprintf("%.3f", float64(samples)/sampleRate))
		// No Content-Length: the answer goes out chunked, as a streaming
		// TTS server's does.
		_ = streamTone(r.Context(), w, samples, frequencyOf(req.Voice), pace)
	})
	return mux
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// samplesFor is the length of the audio for a text of n characters.
func samplesFor(n int) int {
	d := max(time.Duration(n)*perRune, minAudio)
	return int(d.Seconds() * sampleRate)
}

// frequencyOf gives each voice a pitch of its own between 220 and 660 Hz;
// the default voice is an A at 440 Hz.
func frequencyOf(voice string) float64 {
	if voice == "" {
		return 440
	}
	h := fnv.New32a()
	h.Write([]byte(voice))
	return 220 + float64(h.Sum32()%440)
}

// wavHeader is the RIFF header of a 16-bit mono PCM WAV of samples samples.
func wavHeader(samples int) []byte {
	dataSize := uint32(samples * bitsPerSample / 8)
	h := make([]byte, 0, headerSize)
	h = append(h, "RIFF"...)
	h = binary.LittleEndian.AppendUint32(h, 36+dataSize)
	h = append(h, "WAVEfmt "...)
	h = binary.LittleEndian.AppendUint32(h, 16) // fmt chunk size
	h = binary.LittleEndian.AppendUint16(h, 1)  // PCM
	h = binary.LittleEndian.AppendUint16(h, 1)  // mono
	h = binary.LittleEndian.AppendUint32(h, sampleRate)
	h = binary.LittleEndian.AppendUint32(h, sampleRate*bitsPerSample/8) // byte rate
	h = binary.LittleEndian.AppendUint16(h, bitsPerSample/8)            // block align
	h = binary.LittleEndian.AppendUint16(h, bitsPerSample)
	h = append(h, "data"...)
	return binary.LittleEndian.AppendUint32(h, dataSize)
}

// streamTone writes the WAV header and a sine tone in chunks of 100 ms,
// flushing each so the client can play it as it comes, and calling pace
// before every chunk after the first.
func streamTone(ctx context.Context, w http.ResponseWriter, samples int, freq float64, pace func(context.Context) error) error {
	flusher, _ := w.(http.Flusher)
	buf := wavHeader(samples)
	for start := 0; start < samples; start += chunkSamples {
		if start > 0 {
			if err := pace(ctx); err != nil {
				return err
			}
		}
		for i := start; i < min(start+chunkSamples, samples); i++ {
			// A short fade at both ends avoids clicks.
			env := min(1, float64(i)/fade, float64(samples-1-i)/fade)
			v := int16(amplitude * env * math.Sin(2*math.Pi*freq*float64(i)/sampleRate))
			buf = binary.LittleEndian.AppendUint16(buf, uint16(v))
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		buf = buf[:0]
	}
	return nil
}

// Pause returns a pace function that waits d between chunks, or until the
// request's context ends.
func Pause(d time.Duration) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
