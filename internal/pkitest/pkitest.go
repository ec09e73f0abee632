// Package pkitest issues the certificates of TLS tests: a CA, a server
// certificate for 127.0.0.1 and localhost and a client certificate, all
// signed by the CA, as PEM files, for the buses' and commands' TLS tests.
package pkitest

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

// PKI is a CA with a server certificate for 127.0.0.1 and localhost and a
// client certificate, as PEM files.
type PKI struct {
	CAFile, CertFile, KeyFile string // the CA; the client's certificate and key
	ServerCertFile, ServerKey string
	Server                    tls.Certificate
	Pool                      *x509.CertPool
}

// New writes a PKI into dir.
func New(t testing.TB, dir string) PKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flowbus test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, server bool) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "flowbus test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if server {
			tmpl.IPAddresses, tmpl.DNSNames = []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvDER, srvKey := issue(2, x509.ExtKeyUsageServerAuth, true)
	cliDER, cliKey := issue(3, x509.ExtKeyUsageClientAuth, false)
	cliKeyDER, _ := x509.MarshalECPrivateKey(cliKey)
	srvKeyDER, _ := x509.MarshalECPrivateKey(srvKey)
	pki := PKI{
		CAFile:         write("ca.pem", "CERTIFICATE", caDER),
		CertFile:       write("client.pem", "CERTIFICATE", cliDER),
		KeyFile:        write("client-key.pem", "EC PRIVATE KEY", cliKeyDER),
		ServerCertFile: write("server.pem", "CERTIFICATE", srvDER),
		ServerKey:      write("server-key.pem", "EC PRIVATE KEY", srvKeyDER),
		Server:         tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
		Pool:           x509.NewCertPool(),
	}
	pki.Pool.AddCert(ca)
	return pki
}

// ServerTLS is the server side of the PKI: its certificate, and client
// certificates signed by its CA required (mTLS).
func (p PKI) ServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Server}, ClientCAs: p.Pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}
