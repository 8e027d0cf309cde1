// Package auth is the relay's auth manager actor: it knows which API key
// opens which tunnel, and what each client address did lately.
//
// Keys are compared in constant time (crypto/subtle, on SHA-256 digests so
// that not even a key's length leaks), against every configured key with no
// early exit. The key alone decides the tunnel: a key valid for tunnel a,
// presented for tunnel b, is refused. Keys of less than MinKeyBits (128
// bits, see KeyBits) are refused when they are loaded, so that guessing is
// hopeless at any rate. Keys never appear in logs or errors.
//
// Per address (an IPv4 address or an IPv6 /64, as the relay passes it):
//
//   - WebSocket upgrades come from a token bucket (UpgradeRate a second,
//     UpgradeBurst at once); beyond it, CheckAddress says Blocked, and the
//     front answers 429.
//   - Auth failures (wrong keys, and auth timeouts, which sessions report
//     with AuthTimedOut) are counted over FailureWindow. Past MaxFailures,
//     the refusal of each further wrong key is held: AuthResult.Delay puts
//     them one per FailureWindow/MaxFailures. This applies to every auth
//     frame, whenever its connection was opened. A right key is answered
//     at once, whatever its address did: a supervisor behind the same NAT
//     as a client with a wrong key is never locked out.
//
// Messages (from relaymsg):
//
//	*Authenticate -> answers the sender with *AuthResult
//	*CheckAddress -> answers the sender with *AddressVerdict
//	*AuthTimedOut -> counts a failure; no answer
//
// The clock is Config.Now, so tests move it by hand; the manager needs no
// timer. Addresses back at rest are forgotten once per FailureWindow.
package auth
