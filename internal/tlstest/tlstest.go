// Package tlstest makes throwaway certificate authorities and
// certificates for tests of TLS connections: a CA, a server certificate
// for 127.0.0.1 and localhost, and client certificates with a chosen
// common name, written as PEM files into the test's temporary directory.
//
// Contract: every key is a fresh ECDSA P-256 key; certificates are valid
// from an hour ago for a day; nothing is cached between calls, so two CAs
// never trust each other's certificates (which is how tests make a "wrong
// certificate").
package tlstest

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
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a throwaway certificate authority.
type CA struct {
	// CertFile is the path of the CA certificate (PEM).
	CertFile string
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Pool holds only this CA's certificate.
	Pool *x509.CertPool

	key *ecdsa.PrivateKey
	dir string
}

// Pair is a certificate the CA issued and its key, as files and as a
// tls.Certificate.
type Pair struct {
	// CertFile and KeyFile are the PEM files of the certificate and its
	// key (PKCS #8, mode 0600).
	CertFile, KeyFile string
	// TLS is the pair ready for tls.Config.Certificates.
	TLS tls.Certificate
}

// NewCA makes a CA named name whose files go into a directory of
// tb.TempDir().
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Strata tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("tlstest: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("tlstest: %v", err)
	}
	dir := tb.TempDir()
	ca := &CA{Cert: cert, Pool: x509.NewCertPool(), key: key, dir: dir, CertFile: filepath.Join(dir, "ca.crt")}
	ca.Pool.AddCert(cert)
	writePEM(tb, ca.CertFile, "CERTIFICATE", der, 0o644)
	return ca
}

// Server issues a server certificate for 127.0.0.1, ::1 and localhost
// (plus extra DNS names), named file base "server" in the CA's directory.
func (ca *CA) Server(tb testing.TB, dnsNames ...string) *Pair {
	tb.Helper()
	tmpl := ca.leaf(tb, "localhost")
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.DNSNames = append([]string{"localhost"}, dnsNames...)
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	return ca.issue(tb, "server", tmpl)
}

// Client issues a client certificate whose subject's common name is cn
// (PostgreSQL's cert authentication maps it to the role of that name).
func (ca *CA) Client(tb testing.TB, cn string) *Pair {
	tb.Helper()
	tmpl := ca.leaf(tb, cn)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(tb, "client-"+cn, tmpl)
}

// ClientConfig returns a TLS configuration that trusts only this CA,
// verifies the server name serverName, and presents client (if not nil).
func (ca *CA) ClientConfig(serverName string, client *Pair) *tls.Config {
	c := &tls.Config{RootCAs: ca.Pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if client != nil {
		c.Certificates = []tls.Certificate{client.TLS}
	}
	return c
}

// ServerConfig returns a TLS configuration presenting server that
// requires and verifies client certificates issued by this CA.
func (ca *CA) ServerConfig(server *Pair) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{server.TLS},
		ClientCAs:    ca.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

func (ca *CA) leaf(tb testing.TB, cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Strata tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
}

func (ca *CA) issue(tb testing.TB, base string, tmpl *x509.Certificate) *Pair {
	tb.Helper()
	key := newKey(tb)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatalf("tlstest: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("tlstest: %v", err)
	}
	p := &Pair{CertFile: filepath.Join(ca.dir, base+".crt"), KeyFile: filepath.Join(ca.dir, base+".key")}
	writePEM(tb, p.CertFile, "CERTIFICATE", der, 0o644)
	writePEM(tb, p.KeyFile, "PRIVATE KEY", keyDER, 0o600)
	p.TLS, err = tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		tb.Fatalf("tlstest: %v", err)
	}
	return p
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("tlstest: %v", err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		tb.Fatalf("tlstest: %v", err)
	}
	return n
}

func writePEM(tb testing.TB, path, kind string, der []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode); err != nil {
		tb.Fatalf("tlstest: %v", err)
	}
}
