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
	for _, tc := range []struct {
		name string
		keys map[string]string
		err  string
	}{
		{"fine", map[string]string{"default": "k1", "a": "k2"}, ""},
		{"none", nil, "no API keys"},
		{"empty key", map[string]string{"a": ""}, "empty key"},
		{"shared", map[string]string{"a": "same", "b": "same"}, `"a" and "b" share one key`},
		{"bad name", map[string]string{"a b": "k"}, "invalid tunnel name"},
	} {
		err := auth.ValidateKeys(tc.keys)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "same") {
			t.Errorf("%s: error quotes a key: %v", tc.name, err)
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
