package auth_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
)

func TestParseKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		want map[string]string
		err  string
	}{
		{"empty", "", map[string]string{}, ""},
		{"pairs", "default k1\nstudio\tk2\n", map[string]string{"default": "k1", "studio": "k2"}, ""},
		{"comments and blanks", "# the tunnels\n\n  # indented comment\ndefault k1   # main one\n", map[string]string{"default": "k1"}, ""},
		{"key with a hash inside", "a k#1\n", map[string]string{"a": "k#1"}, ""},
		{"crlf", "a k1\r\nb k2\r\n", map[string]string{"a": "k1", "b": "k2"}, ""},
		{"name only", "a k1\nb\n", nil, "line 2"},
		{"three fields", "a k1 extra\n", nil, "line 1"},
		{"bad name", "a/b k1\n", nil, "invalid tunnel name"},
		{"twice", "a k1\na k2\n", nil, `line 2: tunnel "a" listed twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := auth.ParseKeys(strings.NewReader(tc.file))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				for _, key := range []string{"k1", "k2", "extra"} {
					if strings.Contains(err.Error(), key) {
						t.Fatalf("error quotes a key: %v", err)
					}
				}
				return
			}
			if err != nil || !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestValidateKeys(t *testing.T) {
	const k1, k2 = "k1-VGhlIHF1aWNrIGJyb3du", "k2-Zm94IGp1bXBzIG92ZXI"
	for _, tc := range []struct {
		name string
		keys map[string]string
		err  string
	}{
		{"fine", map[string]string{"default": k1, "a": k2}, ""},
		{"none", nil, "no API keys"},
		{"empty key", map[string]string{"a": ""}, "empty key"},
		{"shared", map[string]string{"a": k1, "b": k1}, `"a" and "b" share one key`},
		{"bad name", map[string]string{"a b": k1}, "invalid tunnel name"},
		{"short key", map[string]string{"a": "tiny-key-1"}, `the key of tunnel "a" is too weak`},
	} {
		err := auth.ValidateKeys(tc.keys)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
		if err != nil && (strings.Contains(err.Error(), k1) || strings.Contains(err.Error(), "tiny-key")) {
			t.Errorf("%s: error quotes a key: %v", tc.name, err)
		}
	}
}

// KeyBits takes 22 characters of base64 for enough, and catches keys that
// are short for their alphabet.
func TestKeyBits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		key    string
		enough bool
	}{
		{"openssl rand -base64 24", "3q2+7wABAgMEBQYHCAkKCwwNDg8Q", true},
		{"22 characters of base64url", "AbCdEfGhIjKlMn0pQrStU9", true},
		{"22 letters", "AbCdEfGhIjKlMnOpQrStUv", false},
		{"uuid", "7d3f9a1c-5e2b-4806-91a9-0c8e2f6a9b1d", true},
		{"32 hex digits", "0123456789abcdef0123456789abcdef", true},
		{"22 hex digits", "0123456789abcdef012345", false},
		{"21 characters of base64url", "AbCdEfGhIjKlMnOpQrStU", false},
		{"a short word", "secret", false},
		{"one letter, many times", strings.Repeat("a", 64), true}, // long enough to pass: KeyBits counts, it does not judge
		{"empty", "", false},
	} {
		if got := auth.KeyBits(tc.key) >= auth.MinKeyBits; got != tc.enough {
			t.Errorf("%s: %.0f bits, enough %v; want %v", tc.name, auth.KeyBits(tc.key), got, tc.enough)
		}
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"default": true, "a": true, "tts-eu_1.v2": true, strings.Repeat("x", 64): true,
		"": false, strings.Repeat("x", 65): false, "a/b": false, "a b": false, "ä": false, "a%2F": false,
	} {
		if got := auth.ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v", name, got)
		}
	}
}
