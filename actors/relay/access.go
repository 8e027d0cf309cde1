package relay

// How the public reaches a tunnel besides its path: by host (Config.Domain,
// hostRoutes), and under the tunnel's access rules (the options of its line
// in the keys file, auth.Access), which the node a public request reaches
// first enforces (proxyCall.admitted).

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
)

const (
	// verifiedTTL is how long a basic user and password that bcrypt
	// verified are taken as verified without bcrypt: a minute. A browser
	// sends them with every request; bcrypt costs tens of milliseconds of
	// CPU each time.
	verifiedTTL = time.Minute
	// verifiedMax bounds the verified credentials kept per tunnel: 256.
	verifiedMax = 256
)

// Reasons of tunnel_relay_access_denied_total.
const (
	deniedAddress     = "address"
	deniedCredentials = "credentials"
	deniedRate        = "rate"
)

// hostRoutes is host routing (Config.Domain): the domain, in lower case
// without a trailing dot ("" for none), and the tunnels by their names in
// lower case, since hosts have no case. Of tunnels whose names differ in
// case only, the one named in lower case wins, else the first in order.
type hostRoutes struct {
	domain string
	names  map[string]string
}

func newHostRoutes(domain string, tunnels map[string]string) hostRoutes {
	h := hostRoutes{domain: strings.TrimSuffix(strings.ToLower(domain), ".")}
	if h.domain == "" {
		return hostRoutes{}
	}
	h.names = make(map[string]string, len(tunnels))
	for _, name := range slices.Sorted(maps.Keys(tunnels)) {
		lower := strings.ToLower(name)
		if _, taken := h.names[lower]; !taken || name == lower {
			h.names[lower] = name
		}
	}
	return h
}

// tunnel is the tunnel a Host names: NAME for NAME.{domain} (any case,
// any port, a trailing dot or not), whether or not a tunnel has that
// name (then NAME in lower case, answered 404). found is false for the
// bare domain, other hosts, and without a domain.
func (h hostRoutes) tunnel(host string) (name string, found bool) {
	if h.domain == "" {
		return "", false
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i] // the port; an IPv6 literal's colons are within brackets
	}
	label, found := strings.CutSuffix(strings.TrimSuffix(strings.ToLower(host), "."), "."+h.domain)
	if !found || label == "" {
		return "", false
	}
	if name, known := h.names[label]; known {
		return name, true
	}
	return label, true
}

// access holds the access rules of the tunnels that have any, with their
// state at this node: a token bucket per rate, the basic credentials
// verified lately.
type access struct {
	mu      sync.RWMutex // a reload swaps tunnels
	tunnels map[string]*tunnelAccess
	now     func() time.Time
	// bcrypt holds a place per bcrypt verification running: half the
	// CPUs at most, so that a flood of wrong passwords leaves the rest
	// to the tunnels' traffic.
	bcrypt chan struct{}
	// mac keys the digests of verified credentials: random, this
	// process's own, so that the cache holds nothing a dictionary attack
	// could use on its own.
	mac    []byte
	denied *prometheus.CounterVec
}

type tunnelAccess struct {
	rules     auth.Access
	limiter   *rate.Limiter // nil without a rate
	challenge []string      // the WWW-Authenticate values of a 401

	mu       sync.Mutex
	verified map[[sha256.Size]byte]time.Time // HMAC of user and password -> verified until
}

// denial is why a public request is refused, and its answer.
type denial struct {
	status     int
	reason     string // the metric's label
	text       string
	challenge  []string // WWW-Authenticate values
	retryAfter int      // seconds, for 429
}

// newAccess keeps the rules of tunnels, counting refusals in denied (whose
// series of each rule a tunnel has start at 0); now is the clock of the
// rates and of the verified credentials, nil for time.Now.
func newAccess(tunnels map[string]auth.Tunnel, now func() time.Time, denied *prometheus.CounterVec) *access {
	if now == nil {
		now = time.Now
	}
	a := &access{
		tunnels: make(map[string]*tunnelAccess),
		now:     now,
		bcrypt:  make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		mac:     make([]byte, sha256.Size),
		denied:  denied,
	}
	_, _ = rand.Read(a.mac)
	for name, t := range tunnels {
		rules := t.Access
		if !rules.Restricted() {
			continue
		}
		ta := &tunnelAccess{rules: rules}
		if len(rules.Allow) > 0 {
			denied.WithLabelValues(name, deniedAddress)
		}
		if rules.HasBearer() {
			ta.challenge = append(ta.challenge, "Bearer realm="+quote(name))
		}
		if rules.HasBasic() {
			ta.challenge = append(ta.challenge, "Basic realm="+quote(name))
			ta.verified = make(map[[sha256.Size]byte]time.Time)
		}
		if rules.NeedsCredentials() {
			denied.WithLabelValues(name, deniedCredentials)
		}
		if rules.Rate > 0 {
			ta.limiter = rate.NewLimiter(rate.Limit(rules.Rate), rules.Burst)
			denied.WithLabelValues(name, deniedRate)
		}
		a.tunnels[name] = ta
	}
	return a
}

// check decides on a public request for tunnel from client whose
// Authorization header is authorization, in this order: the address
// (403), the credentials (401), the rate (429). A refusal is counted and
// returned; nil admits. strip says the Authorization header carried the
// relay's credentials, which must go no further. err is ctx's error when
// the client left while its credentials waited for bcrypt.
func (a *access) check(ctx context.Context, tunnel string, client netip.Addr, authorization string) (d *denial, strip bool, err error) {
	ta := a.tunnelAccess(tunnel)
	if ta == nil {
		return nil, false, nil
	}
	if !ta.rules.AllowsAddr(client) {
		return a.deny(tunnel, &denial{status: http.StatusForbidden, reason: deniedAddress,
			text: fmt.Sprintf("tunnel %q is not open to this address", tunnel)}), false, nil
	}
	if ta.rules.NeedsCredentials() {
		ok, err := a.credentials(ctx, ta, authorization)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			text := fmt.Sprintf("tunnel %q needs credentials", tunnel)
			if authorization != "" {
				text = fmt.Sprintf("wrong credentials for tunnel %q", tunnel)
			}
			return a.deny(tunnel, &denial{status: http.StatusUnauthorized, reason: deniedCredentials, text: text, challenge: ta.challenge}), false, nil
		}
	}
	if ta.limiter != nil {
		now := a.now()
		res := ta.limiter.ReserveN(now, 1)
		if wait := res.DelayFrom(now); wait > 0 {
			res.CancelAt(now)
			return a.deny(tunnel, &denial{status: http.StatusTooManyRequests, reason: deniedRate,
				text:       fmt.Sprintf("tunnel %q is over its request rate; retry later", tunnel),
				retryAfter: max(1, int(math.Ceil(wait.Seconds())))}), false, nil
		}
	}
	return nil, ta.rules.NeedsCredentials(), nil
}

func (a *access) tunnelAccess(tunnel string) *tunnelAccess {
	if a == nil {
		return nil
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.tunnels[tunnel]
}

func (a *access) deny(tunnel string, d *denial) *denial {
	a.denied.WithLabelValues(tunnel, d.reason).Inc()
	return d
}

// credentials says whether authorization carries a bearer token or a
// basic user of ta. Schemes are case-insensitive (RFC 9110 11.1).
func (a *access) credentials(ctx context.Context, ta *tunnelAccess, authorization string) (bool, error) {
	scheme, param, _ := strings.Cut(strings.TrimSpace(authorization), " ")
	param = strings.TrimSpace(param)
	switch {
	case strings.EqualFold(scheme, "Bearer") && ta.rules.HasBearer():
		return ta.rules.CheckBearer(param), nil
	case strings.EqualFold(scheme, "Basic") && ta.rules.HasBasic():
		raw, err := base64.StdEncoding.DecodeString(param)
		if err != nil {
			return false, nil
		}
		user, password, ok := strings.Cut(string(raw), ":")
		if !ok {
			return false, nil
		}
		return a.basic(ctx, ta, user, password)
	}
	return false, nil
}

// basic verifies a basic user and password: at once if bcrypt verified
// them within verifiedTTL, else with bcrypt, waiting for a place.
func (a *access) basic(ctx context.Context, ta *tunnelAccess, user, password string) (bool, error) {
	mac := hmac.New(sha256.New, a.mac)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(user)))
	mac.Write(n[:])
	mac.Write([]byte(user))
	mac.Write([]byte(password))
	var key [sha256.Size]byte
	mac.Sum(key[:0])
	if ta.isVerified(key, a.now()) {
		return true, nil
	}
	select {
	case a.bcrypt <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	ok := ta.rules.CheckBasic(user, password)
	<-a.bcrypt
	if ok {
		ta.remember(key, a.now())
	}
	return ok, nil
}

func (ta *tunnelAccess) isVerified(key [sha256.Size]byte, now time.Time) bool {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	until, found := ta.verified[key]
	if found && !now.Before(until) {
		delete(ta.verified, key)
		return false
	}
	return found
}

// remember keeps key as verified for verifiedTTL; at verifiedMax, expired
// entries go, then the one closest to expiring.
func (ta *tunnelAccess) remember(key [sha256.Size]byte, now time.Time) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	if _, found := ta.verified[key]; !found && len(ta.verified) >= verifiedMax {
		var oldest [sha256.Size]byte
		var oldestUntil time.Time
		for k, until := range ta.verified {
			switch {
			case !now.Before(until):
				delete(ta.verified, k)
			case oldestUntil.IsZero() || until.Before(oldestUntil):
				oldest, oldestUntil = k, until
			}
		}
		if len(ta.verified) >= verifiedMax {
			delete(ta.verified, oldest)
		}
	}
	ta.verified[key] = now.Add(verifiedTTL)
}

// admitted enforces the access rules of p's tunnel, where the public
// request arrived: a request another node of the fleet handed over was
// checked there, and comes without the credentials. A refused request is
// answered here (403; 401 with WWW-Authenticate; 429 with Retry-After) and
// admitted says false, before the request takes a slot or its body is
// read. An admitted request loses the Authorization header that carried
// the relay's credentials: the upstream never sees them.
func (p *proxyCall) admitted() bool {
	if hopProto(p.req) != "" {
		return true
	}
	client, _ := p.r.proxies.client(p.req)
	d, strip, err := p.r.access.check(p.req.Context(), p.tunnel, client, p.req.Header.Get("Authorization"))
	switch {
	case err != nil:
		p.status = clientGone
		return false
	case d != nil:
		h := p.w.Header()
		for _, c := range d.challenge {
			h.Add("WWW-Authenticate", c)
		}
		if d.retryAfter > 0 {
			h.Set("Retry-After", strconv.Itoa(d.retryAfter))
		}
		p.r.log.WithFields(logrus.Fields{"tunnel": p.tunnel, "reason": d.reason, "remote_addr": addrText(client, p.req.RemoteAddr)}).
			Debug("Public request refused by its tunnel's access rules")
		p.fail(d.status, d.text)
		return false
	}
	if strip {
		p.req.Header.Del("Authorization")
	}
	return true
}
