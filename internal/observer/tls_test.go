package observer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"

	"github.com/flowbus/flowbus/internal/servetest"
)

// writeCert writes a certificate (signed by parent, or self-signed) and its
// key as PEM files in dir and returns their paths.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert, key
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	caFile, _, ca, caKey := writeCert(t, dir, "ca", &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flowbus test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	srvCert, srvKey, _, _ := writeCert(t, dir, "server", &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node-a"},
		DNSNames: []string{"node-a.flowbus"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	cliCert, cliKey, _, _ := writeCert(t, dir, "client", &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "relay"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)

	ring := fixtureRing()
	srv, err := NewServer(Config{NodeName: "node-a", TLS: ServerTLS{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: caFile}}, ring, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := servetest.Serve(t, srv.Serve)

	status := func(c ClientTLS) error {
		opt, err := c.DialOption()
		if err != nil {
			return err
		}
		conn, err := grpc.NewClient(addr, opt)
		if err != nil {
			return err
		}
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		st, err := observerpb.NewObserverClient(conn).ServerStatus(cctx, &observerpb.ServerStatusRequest{})
		if err == nil && st.GetSeenFlows() != 10 {
			t.Errorf("seen flows %d, want 10", st.GetSeenFlows())
		}
		return err
	}
	cases := []struct {
		name string
		tls  ClientTLS
		ok   bool
	}{
		{"a client with a certificate from the CA is served", ClientTLS{Enabled: true, CAFile: caFile, CertFile: cliCert, KeyFile: cliKey, ServerName: "node-a.flowbus"}, true},
		{"a client without a certificate is refused", ClientTLS{Enabled: true, CAFile: caFile, ServerName: "node-a.flowbus"}, false},
		{"a client that does not trust the CA refuses the server", ClientTLS{Enabled: true, CertFile: cliCert, KeyFile: cliKey, ServerName: "node-a.flowbus"}, false},
		{"a plaintext client is refused", ClientTLS{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := status(tc.tls)
			if (err == nil) != tc.ok {
				t.Errorf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestTLSConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ServerTLS
	}{
		{"a certificate without a key", ServerTLS{CertFile: "a.crt"}},
		{"a client CA without a server certificate", ServerTLS{ClientCAFile: "ca.crt"}},
	} {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			if _, err := NewServer(Config{TLS: tc.cfg}, NewRing(2, nil), nil, nil); err == nil {
				t.Error("no error")
			}
		})
	}
}
