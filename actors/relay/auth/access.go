package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Tunnel is one line of a keys file: the tunnel's key (which its
// supervisors present) and the rules its public clients must meet.
type Tunnel struct {
	Key    string
	Access Access
}

// String shows no key: a Tunnel printed by mistake tells nothing secret.
func (t Tunnel) String() string { return "{key: <redacted>, access: " + t.Access.String() + "}" }

// GoString is String, for %#v.
func (t Tunnel) GoString() string { return "auth.Tunnel" + t.String() }

// Keys is the tunnel -> key map of tunnels.
func Keys(tunnels map[string]Tunnel) map[string]string {
	keys := make(map[string]string, len(tunnels))
	for name, t := range tunnels {
		keys[name] = t.Key
	}
	return keys
}

// Access is the public access control of one tunnel: the options of its
// line in the keys file (see ParseTunnels). The zero Access admits every
// public request. It keeps SHA-256 digests of the bearer tokens and the
// bcrypt hashes of the basic passwords, never a token or a password, and
// prints neither (see String).
type Access struct {
	// Allow are the client networks admitted (allow=); empty admits any.
	Allow []netip.Prefix
	// Rate is how many requests a second are admitted on average (rate=);
	// 0 is no limit.
	Rate float64
	// Burst is how many requests may come at once (burst=), with Rate.
	Burst int

	bearer []digest
	basic  []basicUser
}

type digest = [sha256.Size]byte

// basicUser is one basic= option: the digest of the user name, compared
// in constant time as the tokens are, and the bcrypt hash.
type basicUser struct {
	user digest
	hash []byte
	cost int
}

// Restricted says whether a has any rule at all.
func (a Access) Restricted() bool {
	return len(a.Allow) > 0 || a.Rate > 0 || a.NeedsCredentials()
}

// NeedsCredentials says whether a public request must carry a bearer
// token or a basic user and password.
func (a Access) NeedsCredentials() bool { return a.HasBearer() || a.HasBasic() }

// HasBearer says whether bearer tokens are accepted.
func (a Access) HasBearer() bool { return len(a.bearer) > 0 }

// HasBasic says whether basic users are accepted.
func (a Access) HasBasic() bool { return len(a.basic) > 0 }

// AllowsAddr says whether a client at addr may reach the tunnel: any
// address when Allow is empty, else one in a network of Allow. An address
// that is not one (a peer not on IP) is in no network.
func (a Access) AllowsAddr(addr netip.Addr) bool {
	if len(a.Allow) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range a.Allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// CheckBearer says whether token is one of the bearer tokens. It compares
// the token's digest with every one, with no early exit.
func (a Access) CheckBearer(token string) bool {
	d := sha256.Sum256([]byte(token))
	found := 0
	for i := range a.bearer {
		found |= compare(a.bearer[i][:], d[:])
	}
	return found == 1
}

// CheckBasic says whether user and password are a basic user and its
// password. It is slow by design: bcrypt, at the cost of the hash (about
// 50 ms of CPU at cost 10). A user that is not one costs the same, against
// a hash that matches nothing, so that timing tells no user names.
func (a Access) CheckBasic(user, password string) bool {
	if len(a.basic) == 0 {
		return false
	}
	d := sha256.Sum256([]byte(user))
	match := -1
	for i := range a.basic {
		match = subtle.ConstantTimeSelect(compare(a.basic[i].user[:], d[:]), i, match)
	}
	hash := noMatch(a.basic[0].cost)
	if match >= 0 {
		hash = a.basic[match].hash
	}
	ok := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
	return ok && match >= 0
}

// noMatch is a well-formed bcrypt hash of the given cost that no password
// yields (its salt and hash are all zero bits), for users that are not one.
func noMatch(cost int) []byte {
	return []byte(fmt.Sprintf("$2a$%02d$%s", cost, strings.Repeat(".", bcryptHashLen-7)))
}

// String says which rules a has, without a token, a user or a hash.
func (a Access) String() string {
	var parts []string
	if n := len(a.bearer); n > 0 {
		parts = append(parts, fmt.Sprintf("bearer tokens: %d", n))
	}
	if n := len(a.basic); n > 0 {
		parts = append(parts, fmt.Sprintf("basic users: %d", n))
	}
	if len(a.Allow) > 0 {
		nets := make([]string, len(a.Allow))
		for i, p := range a.Allow {
			nets[i] = p.String()
		}
		parts = append(parts, "allow: "+strings.Join(nets, ","))
	}
	if a.Rate > 0 {
		parts = append(parts, fmt.Sprintf("rate: %g/s, burst %d", a.Rate, a.Burst))
	}
	if len(parts) == 0 {
		return "{open}"
	}
	return "{" + strings.Join(parts, "; ") + "}"
}

// GoString is String, for %#v.
func (a Access) GoString() string { return "auth.Access" + a.String() }

// ValidateAccess checks what the options of one line cannot: that no
// bearer token of any tunnel is the key of a tunnel, which would let a
// public client connect as the tunnel's supervisor. Errors name tunnels,
// never a token or a key.
func ValidateAccess(tunnels map[string]Tunnel) error {
	// At load time, where timing tells no one anything: a map, not a
	// comparison of every token with every key.
	owner := make(map[digest]string, len(tunnels))
	for name, t := range tunnels {
		owner[sha256.Sum256([]byte(t.Key))] = name
	}
	for _, name := range slices.Sorted(maps.Keys(tunnels)) {
		for _, d := range tunnels[name].Access.bearer {
			if other, found := owner[d]; found {
				return fmt.Errorf("auth: a bearer token of tunnel %q is the key of tunnel %q: public clients would hold a supervisor's key", name, other)
			}
		}
	}
	return nil
}

// bcryptHashLen is the length of a bcrypt hash: "$2b$10$", 22 characters
// of salt, 31 of hash.
const bcryptHashLen = 60

// validBcrypt reports whether hash is a bcrypt hash, $2a$, $2b$ or $2y$
// (what htpasswd -B writes) at a cost bcrypt accepts, and returns its cost.
func validBcrypt(hash string) (int, bool) {
	if len(hash) != bcryptHashLen || !(strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")) || hash[6] != '$' {
		return 0, false
	}
	for _, c := range []byte(hash[7:]) {
		if !(c == '.' || c == '/' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return 0, false
		}
	}
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return 0, false
	}
	return cost, true
}

// validToken reports whether token can travel in an Authorization header
// as a bearer token: RFC 6750's b64token, letters, digits and -._~+/ with
// '=' at the end only.
func validToken(token string) bool {
	body := strings.TrimRight(token, "=")
	if body == "" {
		return false
	}
	for _, c := range []byte(body) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~+/", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// lineOptions reads the options of one line into a, with what the line
// said so far: tokens and users (by digest), whether it set a rate. Errors
// say what is wrong with which option, never its value.
type lineOptions struct {
	a       *Access
	tokens  map[digest]bool
	users   map[digest]bool
	rateSet bool
}

// option applies one name=value field; field is its position on the line,
// for the error.
func (o *lineOptions) option(field int, name, value string) error {
	switch name {
	case "bearer":
		if !validToken(value) {
			return fmt.Errorf("field %d: bearer: not a token (letters, digits, -._~+/, then '=' at most)", field)
		}
		if bits := KeyBits(value); bits < MinKeyBits {
			return fmt.Errorf("field %d: bearer: the token is too weak: about %.0f bits, at least %d wanted (e.g. `openssl rand -base64 24`)", field, bits, MinKeyBits)
		}
		d := sha256.Sum256([]byte(value))
		if o.tokens[d] {
			return fmt.Errorf("field %d: bearer: the same token twice", field)
		}
		o.tokens[d] = true
		o.a.bearer = append(o.a.bearer, d)
	case "basic":
		user, hash, found := strings.Cut(value, ":")
		if !found || user == "" {
			return fmt.Errorf("field %d: basic: want USER:BCRYPT_HASH", field)
		}
		cost, ok := validBcrypt(hash)
		if !ok {
			return fmt.Errorf("field %d: basic: not a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters; e.g. from `htpasswd -nbB user password`)", field)
		}
		d := sha256.Sum256([]byte(user))
		if o.users[d] {
			return fmt.Errorf("field %d: basic: the same user twice", field)
		}
		o.users[d] = true
		o.a.basic = append(o.a.basic, basicUser{user: d, hash: []byte(hash), cost: cost})
	case "allow":
		for part := range strings.SplitSeq(value, ",") {
			prefix, err := parsePrefix(part)
			if err != nil {
				return fmt.Errorf("field %d: allow: %v", field, err)
			}
			o.a.Allow = append(o.a.Allow, prefix)
		}
	case "rate":
		if o.rateSet {
			return fmt.Errorf("field %d: rate given twice", field)
		}
		perSecond, err := parseRate(value)
		if err != nil {
			return fmt.Errorf("field %d: rate: %v", field, err)
		}
		o.a.Rate, o.rateSet = perSecond, true
	case "burst":
		if o.a.Burst != 0 {
			return fmt.Errorf("field %d: burst given twice", field)
		}
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 {
			return fmt.Errorf("field %d: burst: want a whole number of requests, at least 1", field)
		}
		o.a.Burst = n
	default:
		return fmt.Errorf("field %d: unknown option (bearer=, basic=, allow=, rate=, burst=)", field)
	}
	return nil
}

// finish checks the line as a whole and sets the default burst: the rate
// per second, rounded up, at least 1.
func (o *lineOptions) finish() error {
	switch {
	case o.a.Burst != 0 && !o.rateSet:
		return fmt.Errorf("burst without rate")
	case o.rateSet && o.a.Burst == 0:
		o.a.Burst = max(1, int(math.Ceil(o.a.Rate)))
	}
	return nil
}

// parsePrefix reads an address (a network of itself alone) or a CIDR
// network, IPv4-mapped IPv6 ones as IPv4.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		addr, err := netip.ParseAddr(s)
		if err != nil || addr.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a CIDR network", s)
		}
		addr = addr.Unmap()
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	prefix, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a CIDR network", s)
	}
	if addr := prefix.Addr(); addr.Is4In6() {
		if prefix.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q mixes IPv4 and IPv6", s)
		}
		prefix = netip.PrefixFrom(addr.Unmap(), prefix.Bits()-96)
	}
	return prefix.Masked(), nil
}

// parseRate reads N/s, N/m or N/h (N a positive number) as requests per
// second.
func parseRate(s string) (float64, error) {
	num, unit, found := strings.Cut(s, "/")
	per := map[string]float64{"s": 1, "m": 60, "h": 3600}[unit]
	if !found || per == 0 {
		return 0, fmt.Errorf("want N/s, N/m or N/h, such as 10/s or 600/m")
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("want a positive number of requests before the '/'")
	}
	return n / per, nil
}
