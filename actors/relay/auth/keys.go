package auth

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math"
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

// ParseTunnels reads a keys file: one tunnel per line, its name, its key,
// then the options of its public access control, each name=value:
//
//	NAME KEY [bearer=TOKEN]... [basic=USER:BCRYPT_HASH]... [allow=CIDR[,CIDR]]... [rate=N/s|N/m|N/h] [burst=N]
//
// separated by spaces or tabs. Any one bearer token or basic user admits
// (bearer tokens need MinKeyBits, as keys do); allow networks add up (an
// address is a network of itself); rate and burst come once each, burst
// only with a rate, and by default the rate per second rounded up, at
// least 1. Blank lines and lines starting with '#' are ignored, and so is
// anything from a field starting with '#' after the key. Errors name the
// line and the field, never a key, a token or a hash.
func ParseTunnels(r io.Reader) (map[string]Tunnel, error) {
	tunnels := make(map[string]Tunnel)
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) < 2 {
			return nil, fmt.Errorf("auth: keys line %d: want \"name key [option=value ...]\"", line)
		}
		name := fields[0]
		if !ValidName(name) {
			return nil, fmt.Errorf("auth: keys line %d: invalid tunnel name %q (letters, digits, '-', '_', '.'; at most %d)", line, name, MaxNameLength)
		}
		if _, dup := tunnels[name]; dup {
			return nil, fmt.Errorf("auth: keys line %d: tunnel %q listed twice", line, name)
		}
		t := Tunnel{Key: fields[1]}
		opts := lineOptions{a: &t.Access, tokens: map[digest]bool{}, users: map[digest]bool{}}
		for i, field := range fields[2:] {
			if strings.HasPrefix(field, "#") {
				break
			}
			opt, value, found := strings.Cut(field, "=")
			if !found {
				// Not quoted: a stray field may well be a secret.
				return nil, fmt.Errorf("auth: keys line %d: field %d is not an option: want \"name key [option=value ...]\"", line, i+3)
			}
			if err := opts.option(i+3, opt, value); err != nil {
				return nil, fmt.Errorf("auth: keys line %d (tunnel %q): %w", line, name, err)
			}
		}
		if err := opts.finish(); err != nil {
			return nil, fmt.Errorf("auth: keys line %d (tunnel %q): %w", line, name, err)
		}
		tunnels[name] = t
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: reading keys: %w", err)
	}
	return tunnels, nil
}

// ParseKeys reads a keys file (see ParseTunnels) into its tunnel -> key
// map. It drops the access options: a caller that serves public requests
// wants ParseTunnels.
func ParseKeys(r io.Reader) (map[string]string, error) {
	tunnels, err := ParseTunnels(r)
	if err != nil {
		return nil, err
	}
	return Keys(tunnels), nil
}

// LoadTunnelsFile parses the keys file at path (see ParseTunnels).
func LoadTunnelsFile(path string) (map[string]Tunnel, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	tunnels, err := ParseTunnels(f)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return tunnels, nil
}

// LoadKeysFile parses the keys file at path into its tunnel -> key map
// (see ParseKeys).
func LoadKeysFile(path string) (map[string]string, error) {
	tunnels, err := LoadTunnelsFile(path)
	if err != nil {
		return nil, err
	}
	return Keys(tunnels), nil
}

// MinKeyBits is the least entropy a key must have, as KeyBits estimates
// it: 128 bits, beyond any guessing at any rate.
const MinKeyBits = 128

// KeyBits estimates the entropy of a key drawn at random: its length times
// log2 of the size of the character classes it uses (10 digits, 26
// lower-case and 26 upper-case letters, 33 other printable ASCII
// characters, 128 other bytes). It overestimates a key that is not random
// (a word, a repeated letter), so it catches short keys, not poor ones:
// 22 characters of base64 pass, 22 hex digits do not.
func KeyBits(key string) float64 {
	var digits, lower, upper, other, high bool
	for _, c := range []byte(key) {
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c < 0x80:
			other = true
		default:
			high = true
		}
	}
	alphabet := 0
	for _, class := range []struct {
		used bool
		size int
	}{{digits, 10}, {lower, 26}, {upper, 26}, {other, 33}, {high, 128}} {
		if class.used {
			alphabet += class.size
		}
	}
	if alphabet < 2 {
		return 0
	}
	return float64(len(key)) * math.Log2(float64(alphabet))
}

// ValidateKeys checks a tunnel -> key map: at least one tunnel, valid names,
// every key of MinKeyBits or more (see KeyBits), and no key shared by two
// tunnels (the key decides the tunnel, so it must name one). Errors name
// the tunnel, never the key.
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
		if bits := KeyBits(key); bits < MinKeyBits {
			return fmt.Errorf("auth: the key of tunnel %q is too weak: about %.0f bits, at least %d wanted (22 or more random characters, e.g. from `openssl rand -base64 24`)", name, bits, MinKeyBits)
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
