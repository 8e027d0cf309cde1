package auth

import (
	"crypto/subtle"
	"reflect"
	"testing"
)

// lookup compares against every key, with crypto/subtle, whether the key
// matches the first entry, the last, or none: no early exit.
func TestLookupComparesEveryKeyInConstantTime(t *testing.T) {
	if reflect.ValueOf(compare).Pointer() != reflect.ValueOf(subtle.ConstantTimeCompare).Pointer() {
		t.Fatal("keys are not compared with subtle.ConstantTimeCompare")
	}
	keys := map[string]string{"a": "key-a", "b": "key-b", "c": "key-c", "d": "key-d"}
	ks := newKeySet(keys)
	calls := 0
	compare = func(x, y []byte) int {
		calls++
		if len(x) != 32 || len(y) != 32 {
			t.Errorf("compared %d and %d bytes; want two SHA-256 digests", len(x), len(y))
		}
		return subtle.ConstantTimeCompare(x, y)
	}
	t.Cleanup(func() { compare = subtle.ConstantTimeCompare })
	for _, tc := range []struct {
		key, tunnel string
		ok          bool
	}{
		{ks.entries[0].tunnel, ks.entries[0].tunnel, true},
		{ks.entries[3].tunnel, ks.entries[3].tunnel, true},
		{"", "", false},
		{"key-", "", false},
		{"key-a-and-more", "", false},
	} {
		key := keys[tc.key]
		if !tc.ok {
			key = tc.key
		}
		calls = 0
		tunnel, ok := ks.lookup(key)
		if tunnel != tc.tunnel || ok != tc.ok {
			t.Errorf("lookup(%q) = %q, %v", key, tunnel, ok)
		}
		if calls != len(keys) {
			t.Errorf("lookup(%q) compared %d keys, want all %d", key, calls, len(keys))
		}
	}
}
