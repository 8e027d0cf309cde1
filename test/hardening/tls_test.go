package hardening_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor"
)

// selfSigned writes a fresh self-signed ECDSA certificate for 127.0.0.1
// (an IP SAN) and its key as PEM files, and returns them with a pool that
// trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "tunnel hardening test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, roots
}

// httpsClient trusts roots only.
func httpsClient(t *testing.T, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

func startTLSRelay(t *testing.T) (r *relay.Relay, certFile string, roots *x509.CertPool) {
	t.Helper()
	certFile, keyFile, roots := selfSigned(t)
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
