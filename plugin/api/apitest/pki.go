package apitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PKI is a throwaway certificate authority with a server certificate for
// 127.0.0.1 and a client certificate, as PEM files, for TLS and mutual TLS
// tests.
type PKI struct {
	Dir                   string
	CA                    string // the CA's certificate
	ServerCert, ServerKey string
	ClientCert, ClientKey string

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

// NewPKI creates the files in a temporary directory (ECDSA P-256, valid
// for an hour).
func NewPKI(tb testing.TB) PKI {
	tb.Helper()
	dir := tb.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fibgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	p := PKI{Dir: dir, CA: filepath.Join(dir, "ca.pem"), ca: ca, caKey: caKey}
	writePEM(tb, p.CA, "CERTIFICATE", caDER)
	p.ServerCert, p.ServerKey = p.issue(tb, &x509.Certificate{Subject: pkix.Name{CommonName: "server"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}})
	p.ClientCert, p.ClientKey = p.Client(tb, "client")
	return p
}

// Client issues another client certificate signed by the CA, with the
// common name cn and the subject alternative names given as "dns:NAME",
// "uri:URI", "email:ADDRESS" or "ip:ADDRESS", and returns its certificate
// and key files (named after cn).
func (p PKI) Client(tb testing.TB, cn string, sans ...string) (cert, key string) {
	tb.Helper()
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, s := range sans {
		k, v, _ := strings.Cut(s, ":")
		switch k {
		case "dns":
			tmpl.DNSNames = append(tmpl.DNSNames, v)
		case "email":
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, v)
		case "ip":
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(v))
		case "uri":
			u, err := url.Parse(v)
			if err != nil {
				tb.Fatal(err)
			}
			tmpl.URIs = append(tmpl.URIs, u)
		default:
			tb.Fatalf("apitest: SAN %q: want dns:, email:, ip: or uri:", s)
		}
	}
	return p.issue(tb, tmpl)
}

func (p PKI) issue(tb testing.TB, tmpl *x509.Certificate) (string, string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	name := tmpl.Subject.CommonName
	cert, keyFile := filepath.Join(p.Dir, name+".pem"), filepath.Join(p.Dir, name+"-key.pem")
	writePEM(tb, cert, "CERTIFICATE", der)
	writePEM(tb, keyFile, "EC PRIVATE KEY", keyDER)
	return cert, keyFile
}

func writePEM(tb testing.TB, file, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// FreeAddr returns a loopback TCP address that nothing listens on now.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
