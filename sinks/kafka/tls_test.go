package kafka

import (
	"context"
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
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// testPKI writes a CA, a broker certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, as PEM files in dir.
type testPKI struct {
	caFile, certFile, keyFile string
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flowbus test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "flowbus test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
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
	srvDER, srvKey := issue(2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	cliDER, cliKey := issue(3, x509.ExtKeyUsageClientAuth, nil)
	cliKeyDER, _ := x509.MarshalECPrivateKey(cliKey)
	pki := testPKI{
		caFile:   write("ca.pem", "CERTIFICATE", caDER),
		certFile: write("client.pem", "CERTIFICATE", cliDER),
		keyFile:  write("client-key.pem", "EC PRIVATE KEY", cliKeyDER),
		server:   tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
		pool:     x509.NewCertPool(),
	}
	pki.pool.AddCert(ca)
	return pki
}

func TestTLSOptionsReachABrokerThatRequiresClientCertificates(t *testing.T) {
	pki := newTestPKI(t)
	c := newCluster(t, kfake.SeedTopics(2, DefaultTopic), kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{pki.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool, MinVersion: tls.VersionTLS12}))
	cases := []struct {
		name string
		tls  TLS
		ok   bool
		want string // in the error when not ok
	}{
		{"the CA file and a client certificate connect", TLS{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}, true, ""},
		{"insecure skip verify with a client certificate connects", TLS{InsecureSkipVerify: true, CertFile: pki.certFile, KeyFile: pki.keyFile}, true, ""},
		{"the system roots do not trust the test CA", TLS{Enable: true, CertFile: pki.certFile, KeyFile: pki.keyFile}, false, "certificate signed by unknown authority"},
		{"no client certificate is refused by the broker", TLS{CAFile: pki.caFile}, false, "last broker connection error"},
		{"plaintext to a TLS broker fails", TLS{}, false, "context deadline exceeded"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs(), TLS: tc.tls}})
			wait := 10 * time.Second
			if !tc.ok {
				wait = 1500 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			err := p.Publish(ctx, bustest.Messages("node-tls", 10*i+1, 2))
			switch {
			case tc.ok && err != nil:
				t.Fatalf("publish: %v", err)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("publish: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
