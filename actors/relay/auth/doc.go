// Package auth is the relay's auth manager actor: it knows which API key
// opens which tunnel, and which addresses have sent too many wrong keys.
//
// Keys are compared in constant time (crypto/subtle, on SHA-256 digests so
// that not even a key's length leaks), against every configured key with no
// early exit. The key alone decides the tunnel: a key valid for tunnel a,
// presented for tunnel b, is refused. Keys never appear in logs or errors.
//
// Messages (from relaymsg):
//
//	*Authenticate -> answers the sender with *AuthResult
//	*CheckAddress -> answers the sender with *AddressVerdict
//
// An address that sent MaxFailures wrong keys within FailureWindow is
// blocked until FailureWindow has passed since the first of them. The clock
// is Config.Now, so tests move it by hand; the manager needs no timer.
package auth
