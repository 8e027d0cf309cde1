// Package hardening tests the relay and the supervisor together against
// what a hostile or broken network can throw at them: malformed and
// oversized frames, frames about ids nobody knows, floods of wrong keys, an
// upstream that answers garbage, clients that leave mid-stream, and the
// limits that bound them all. It also holds the security tests: wss:// end
// to end (library and binaries) and keys kept out of every log, status,
// metric and error text.
//
// The package's only code outside its tests is RawRelay, a relay stand-in
// that writes whatever bytes a test gives it; the fuzz targets of the
// connection actor and of the supervisor use it too.
package hardening
