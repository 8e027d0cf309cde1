package auth

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxNameLength is the longest tunnel name accepted.
const MaxNameLength = 64

// ValidName reports whether name can name a tunnel: 1 to 64 ASCII letters,
// digits, '-', '_' or '.', so that it fits a /t/{name}/ path segment as is.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLength {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// ParseKeys reads a keys file: one "name key" pair per line, separated by
// spaces or tabs. Blank lines and lines starting with '#' are ignored, and
// so is anything after the key that starts with '#'. Errors name the line,
// never the key.
func ParseKeys(r io.Reader) (map[string]string, error) {
	keys := make(map[string]string)
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) < 2 || (len(fields) > 2 && !strings.HasPrefix(fields[2], "#")) {
			return nil, fmt.Errorf("auth: keys line %d: want \"name key\"", line)
		}
		name := fields[0]
		if !ValidName(name) {
			return nil, fmt.Errorf("auth: keys line %d: invalid tunnel name %q (letters, digits, '-', '_', '.'; at most %d)", line, name, MaxNameLength)
		}
		if _, dup := keys[name]; dup {
			return nil, fmt.Errorf("auth: keys line %d: tunnel %q listed twice", line, name)
		}
		keys[name] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: reading keys: %w", err)
	}
	return keys, nil
}

// LoadKeysFile parses the keys file at path (see ParseKeys).
func LoadKeysFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	keys, err := ParseKeys(f)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return keys, nil
}

// ValidateKeys checks a tunnel -> key map: at least one tunnel, valid names,
// no empty key, and no key shared by two tunnels (the key decides the
// tunnel, so it must name one).
func ValidateKeys(keys map[string]string) error {
	if len(keys) == 0 {
		return errors.New("auth: no API keys configured")
	}
	owner := make(map[string]string, len(keys))
	for name, key := range keys {
		if !ValidName(name) {
			return fmt.Errorf("auth: invalid tunnel name %q", name)
		}
		if key == "" {
			return fmt.Errorf("auth: tunnel %q has an empty key", name)
		}
		if other, dup := owner[key]; dup {
			a, b := min(name, other), max(name, other)
			return fmt.Errorf("auth: tunnels %q and %q share one key", a, b)
		}
		owner[key] = name
	}
	return nil
}

// compare is the byte comparison of keySet.lookup: crypto/subtle's, whose
// time depends only on the length of its inputs (digests, all 32 bytes).
var compare = subtle.ConstantTimeCompare

type keyEntry struct {
	tunnel string
	digest [sha256.Size]byte
}

// keySet holds digests of the keys, never the keys themselves.
type keySet struct {
	entries []keyEntry
}

func newKeySet(keys map[string]string) *keySet {
	ks := &keySet{entries: make([]keyEntry, 0, len(keys))}
	for name, key := range keys {
		ks.entries = append(ks.entries, keyEntry{tunnel: name, digest: sha256.Sum256([]byte(key))})
	}
	return ks
}

// lookup returns the tunnel key opens. It compares key with every entry and
// picks the match without branching on it, so its time does not tell which
// entry matched, or whether any did.
func (ks *keySet) lookup(key string) (string, bool) {
	d := sha256.Sum256([]byte(key))
	match := -1
	for i := range ks.entries {
		eq := compare(ks.entries[i].digest[:], d[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return "", false
	}
	return ks.entries[match].tunnel, true
}
