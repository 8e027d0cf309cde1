package auth_test

import (
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/enhanced-tunnel/tunnel/actors/relay/auth"
)

// Secrets of the keys-file tests: no error and no printed Access may show
// one of them.
const (
	accessKey   = "k1-VGhlIHF1aWNrIGJyb3du"
	accessKey2  = "k2-Zm94IGp1bXBzIG92ZXI"
	token1      = "tok1-bGF6eSBkb2dzIHNsZWVw"
	token2      = "tok2_d2hpbGUgY2F0cyBwbGF5=="
	alicePass   = "alice-s3cret pass"
	bobPass     = "bob:colon-in-password"
	weakToken   = "short-token"
	straySecret = "c3RyYXktc2VjcmV0LWZpZWxk"
)

// hash is a bcrypt hash of password at the least cost, to keep tests fast.
func hash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestParseTunnelsOptions(t *testing.T) {
	aliceHash, bobHash := hash(t, alicePass), hash(t, bobPass)
	// htpasswd -B writes $2y$, which is $2b$ by another name.
	bobHashY := "$2y$" + strings.TrimPrefix(bobHash, "$2a$")
	file := fmt.Sprintf("# tunnels\n"+
		"web %s bearer=%s bearer=%s basic=alice:%s basic=bob:%s allow=10.0.0.0/8,192.0.2.7 allow=2001:db8::/32\trate=600/m burst=20 # the web app\n"+
		"api %s rate=2.5/s\n"+
		"plain %s\n"+
		"open %s # a comment right after the key\n",
		accessKey, token1, token2, aliceHash, bobHashY, accessKey2, "k3-"+accessKey, "k4-"+accessKey)
	tunnels, err := auth.ParseTunnels(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(tunnels); got != 4 {
		t.Fatalf("%d tunnels, want 4: %v", got, tunnels)
	}
	web := tunnels["web"]
	if web.Key != accessKey {
		t.Error("web: wrong key")
	}
	a := web.Access
	if got := fmt.Sprint(a.Allow); got != "[10.0.0.0/8 192.0.2.7/32 2001:db8::/32]" {
		t.Errorf("web: allow %s", got)
	}
	if a.Rate != 10 || a.Burst != 20 {
		t.Errorf("web: rate %v burst %d, want 10/s and 20", a.Rate, a.Burst)
	}
	if !a.HasBearer() || !a.HasBasic() || !a.NeedsCredentials() || !a.Restricted() {
		t.Errorf("web: bearer %v basic %v", a.HasBearer(), a.HasBasic())
	}
	for _, c := range []struct {
		name string
		got  bool
		want bool
	}{
		{"first token", a.CheckBearer(token1), true},
		{"second token", a.CheckBearer(token2), true},
		{"a key as token", a.CheckBearer(accessKey), false},
		{"a token cut short", a.CheckBearer(token1[:len(token1)-1]), false},
		{"empty token", a.CheckBearer(""), false},
		{"alice", a.CheckBasic("alice", alicePass), true},
		{"bob, $2y$ hash, colon in password", a.CheckBasic("bob", bobPass), true},
		{"alice with bob's password", a.CheckBasic("alice", bobPass), false},
		{"alice, wrong case", a.CheckBasic("Alice", alicePass), false},
		{"unknown user", a.CheckBasic("carol", alicePass), false},
		{"empty password", a.CheckBasic("alice", ""), false},
	} {
		if c.got != c.want {
			t.Errorf("web: %s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if api := tunnels["api"].Access; api.Rate != 2.5 || api.Burst != 3 || api.NeedsCredentials() || len(api.Allow) != 0 {
		t.Errorf("api: %v, want rate 2.5/s and burst 3, nothing else", api)
	}
	for _, name := range []string{"plain", "open"} {
		if a := tunnels[name].Access; a.Restricted() {
			t.Errorf("%s: %v, want no rule", name, a)
		}
	}
	// Nothing printed shows a secret.
	printed := fmt.Sprint(tunnels) + fmt.Sprintf("%+v %#v %v %#v", web, web, a, a)
	for _, secret := range []string{accessKey, token1, token2, aliceHash, bobHashY, "alice", alicePass} {
		if strings.Contains(printed, secret) {
			t.Errorf("printing the tunnels shows a secret: %s", printed)
		}
	}
	// ParseKeys keeps serving its callers: the keys alone.
	keys, err := auth.ParseKeys(strings.NewReader(file))
	if err != nil || !maps.Equal(keys, auth.Keys(tunnels)) || keys["web"] != accessKey {
		t.Errorf("ParseKeys: %v", err)
	}
}

func TestParseTunnelsDefaultBurst(t *testing.T) {
	for rate, burst := range map[string]int{"10/s": 10, "600/m": 10, "1/m": 1, "2.5/s": 3, "1/h": 1, "0.1/s": 1, "90/m": 2} {
		tunnels, err := auth.ParseTunnels(strings.NewReader("a " + accessKey + " rate=" + rate))
		if err != nil {
			t.Errorf("rate=%s: %v", rate, err)
			continue
		}
		if got := tunnels["a"].Access.Burst; got != burst {
			t.Errorf("rate=%s: burst %d, want %d", rate, got, burst)
		}
	}
}

func TestParseTunnelsRefusesBadOptions(t *testing.T) {
	good := hash(t, alicePass)
	for _, tc := range []struct {
		name, options, err string
	}{
		{"unknown option", "colour=blue", "line 2 (tunnel \"a\"): field 3: unknown option"},
		{"unknown option after a good one", "rate=1/s colour=blue", "field 4: unknown option"},
		{"a field that is no option", straySecret, "line 2: field 3 is not an option"},
		{"a secret with '=' in it", "AbC" + straySecret + "==", "field 3: unknown option"},
		{"weak bearer", "bearer=" + weakToken, "field 3: bearer: the token is too weak"},
		{"bearer with a comma", "bearer=" + token1 + ",x", "bearer: not a token"},
		{"empty bearer", "bearer=", "bearer: not a token"},
		{"bearer twice", "bearer=" + token1 + " bearer=" + token1, "field 4: bearer: the same token twice"},
		{"basic without hash", "basic=alice", "basic: want USER:BCRYPT_HASH"},
		{"basic without user", "basic=:" + good, "basic: want USER:BCRYPT_HASH"},
		{"basic with a password, not a hash", "basic=alice:" + alicePass[:5], "basic: not a bcrypt hash"},
		{"basic with a hash cut short", "basic=alice:" + good[:59], "basic: not a bcrypt hash"},
		{"basic with an md5 htpasswd hash", "basic=alice:$apr1$abcdefgh$0123456789abcdefghijkl", "basic: not a bcrypt hash"},
		{"basic with a bad cost", "basic=alice:" + good[:4] + "99" + good[6:], "basic: not a bcrypt hash"},
		{"basic with a bad character", "basic=alice:" + good[:59] + "!", "basic: not a bcrypt hash"},
		{"basic user twice", "basic=alice:" + good + " basic=alice:" + good, "field 4: basic: the same user twice"},
		{"allow garbage", "allow=ten.0.0.0/8", `allow: "ten.0.0.0/8" is neither`},
		{"allow empty", "allow=", `allow: "" is neither`},
		{"allow trailing comma", "allow=10.0.0.0/8,", `allow: "" is neither`},
		{"allow mixing families", "allow=::ffff:10.0.0.0/8", "mixes IPv4 and IPv6"},
		{"rate without unit", "rate=10", "rate: want N/s, N/m or N/h"},
		{"rate per day", "rate=10/d", "rate: want N/s, N/m or N/h"},
		{"rate zero", "rate=0/s", "rate: want a positive number"},
		{"rate negative", "rate=-1/s", "rate: want a positive number"},
		{"rate infinite", "rate=Inf/s", "rate: want a positive number"},
		{"rate twice", "rate=1/s rate=2/s", "field 4: rate given twice"},
		{"burst twice", "rate=1/s burst=2 burst=3", "field 5: burst given twice"},
		{"burst zero", "rate=1/s burst=0", "burst: want a whole number"},
		{"burst not a number", "rate=1/s burst=lots", "burst: want a whole number"},
		{"burst without rate", "burst=5", "burst without rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := "ok " + accessKey2 + "\na " + accessKey + " " + tc.options + " # c\n"
			_, err := auth.ParseTunnels(strings.NewReader(file))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
			for _, secret := range []string{accessKey, accessKey2, token1, weakToken, good, good[:59], alicePass[:5], straySecret, "$apr1$"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error quotes a secret: %v", err)
				}
			}
		})
	}
}

func TestAccessAllowsAddr(t *testing.T) {
	tunnels, err := auth.ParseTunnels(strings.NewReader("a " + accessKey + " allow=10.0.0.0/8 allow=192.0.2.7,2001:db8::/32\nb " + accessKey2 + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, open := tunnels["a"].Access, tunnels["b"].Access
	for addr, want := range map[string]bool{
		"10.1.2.3": true, "192.0.2.7": true, "192.0.2.8": false, "11.0.0.1": false,
		"::ffff:10.9.9.9": true, "2001:db8::1": true, "2001:db9::1": false, "::1": false,
	} {
		if got := a.AllowsAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("AllowsAddr(%s) = %v, want %v", addr, got, want)
		}
		if !open.AllowsAddr(netip.MustParseAddr(addr)) {
			t.Errorf("a tunnel without allow refuses %s", addr)
		}
	}
	if a.AllowsAddr(netip.Addr{}) {
		t.Error("a peer that is not on IP is allowed")
	}
}

func TestValidateAccessRefusesABearerTokenThatIsAKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		err  string
	}{
		{"fine", "a " + accessKey + " bearer=" + token1 + "\nb " + accessKey2 + "\n", ""},
		{"its own key", "a " + accessKey + " bearer=" + accessKey + "\n", `a bearer token of tunnel "a" is the key of tunnel "a"`},
		{"another tunnel's key", "a " + accessKey + " bearer=" + accessKey2 + "\nb " + accessKey2 + "\n", `a bearer token of tunnel "a" is the key of tunnel "b"`},
	} {
		tunnels, err := auth.ParseTunnels(strings.NewReader(tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		err = auth.ValidateAccess(tunnels)
		if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
		if err != nil && (strings.Contains(err.Error(), accessKey) || strings.Contains(err.Error(), accessKey2)) {
			t.Errorf("%s: error quotes a key: %v", tc.name, err)
		}
	}
}
