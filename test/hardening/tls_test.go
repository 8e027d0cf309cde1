package hardening_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// httpsClient trusts roots only.
func httpsClient(t *testing.T, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

func startTLSRelay(t *testing.T) (r *relay.Relay, certFile string, roots *x509.CertPool) {
	t.Helper()
	certFile, keyFile, roots := harness.SelfSigned(t)
	r = startRelay(t, func(c *relay.Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	return r, certFile, roots
}

// A tunnel over wss:// to a relay whose certificate it trusts carries
// requests from HTTPS clients to the upstream.
func TestWSSEndToEnd(t *testing.T) {
	r, _, roots := startTLSRelay(t)
	tu := startTunnel(t, "wss://"+r.Addr().String()+"/tunnel", defaultKey, upstream(t, hello), func(c *supervisor.Config) {
		c.TLSConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	})
	tu.await(messages.Authenticated)
	if status, body := get(t, httpsClient(t, roots), "https://"+r.Addr().String()+"/v1/tts"); status != http.StatusOK || body != "hello" {
		t.Fatalf("through wss: %d %q", status, body)
	}
}

// A supervisor that cannot verify the relay's certificate fails each
// attempt with a classified failure (UNKNOWN: it is none of the network's
// doing) and keeps trying, as it would with any other failure.
func TestWSSWithAnUntrustedCertificateIsAClassifiedFailure(t *testing.T) {
	r, _, roots := startTLSRelay(t)
	port := r.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name, url string
		tls       *tls.Config
		lastErr   string
	}{
		{"system roots only", "wss://" + r.Addr().String() + "/tunnel", nil, "certificate signed by unknown authority"},
		{"certificate for another name", "wss://localhost:" + strconv.Itoa(port) + "/tunnel", &tls.Config{RootCAs: roots}, "wanted to match localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tu := startTunnel(t, tc.url, defaultKey, "", func(c *supervisor.Config) {
				fastRetry(c)
				c.TLSConfig = tc.tls
			})
			st := tu.failure()
			if st.Health.LastFailureType != messages.Unknown.String() || !strings.Contains(st.Health.LastError, tc.lastErr) {
				t.Fatalf("failure %s: %q; want UNKNOWN with %q", st.Health.LastFailureType, st.Health.LastError, tc.lastErr)
			}
			tu.failure() // and again: it keeps trying
			if st := tu.Status(); st.Health.Successes != 0 {
				t.Fatalf("%d successes without a trusted certificate", st.Health.Successes)
			}
		})
	}
}
