package hubblegrpc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/internal/hubbletest"
	"github.com/flowbus/flowbus/internal/observer"
	"github.com/flowbus/flowbus/schemas"
)

func tlsOf(enabled bool, ca, cert, key string) observer.ClientTLS {
	return observer.ClientTLS{Enabled: enabled, CAFile: ca, CertFile: cert, KeyFile: key}
}

// pki is a Hubble CA and the certificates a Cilium install issues from it.
type pki struct {
	caFile                    string
	serverCert, serverKey     string // hubble-server-certs: *.default.hubble-grpc.cilium.io
	clientCert, clientKey     string // hubble-relay-client-certs: *.hubble-relay.cilium.io
	strangerCert, strangerKey string // a client certificate of another CA
}

func issue(t *testing.T, dir, name string, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
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

func newPKI(t *testing.T) pki {
	dir := t.TempDir()
	now := time.Now()
	ca := func(serial int64, cn string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	}
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	}
	var p pki
	var caCert *x509.Certificate
	var caKey *ecdsa.PrivateKey
	p.caFile, _, caCert, caKey = issue(t, dir, "hubble-ca", ca(1, "hubble-ca.cilium.io"), nil, nil)
	p.serverCert, p.serverKey, _, _ = issue(t, dir, "hubble-server", leaf(2, "*.default.hubble-grpc.cilium.io", x509.ExtKeyUsageServerAuth), caCert, caKey)
	p.clientCert, p.clientKey, _, _ = issue(t, dir, "hubble-relay-client", leaf(3, "*.hubble-relay.cilium.io", x509.ExtKeyUsageClientAuth), caCert, caKey)
	_, _, otherCA, otherKey := issue(t, dir, "other-ca", ca(4, "someone else's CA"), nil, nil)
	p.strangerCert, p.strangerKey, _, _ = issue(t, dir, "stranger", leaf(5, "stranger", x509.ExtKeyUsageClientAuth), otherCA, otherKey)
	return p
}

// TLS and mTLS to a node's Hubble with the certificates a Cilium install
// issues (the Hubble CA, hubble-server-certs, hubble-relay-client-certs):
// with them flows arrive; without them, or with wrong ones, Run stops at
// once with an error that says what is missing or wrong and which setting
// gives it.
func TestTLSWithCiliumCertificates(t *testing.T) {
	p := newPKI(t)
	tlsUp := startUpstream(t, hubbletest.UpstreamConfig{Node: "node-a",
		TLS: observer.ServerTLS{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.caFile}})
	plainUp := startUpstream(t, hubbletest.UpstreamConfig{Node: "node-b"})
	flows := hubbletest.Flows(hubbletest.NewCluster(4, epoch, "node-a").NextEvents(200))
	if err := tlsUp.Feed(flows); err != nil {
		t.Fatal(err)
	}
	const name = "node-a.default.hubble-grpc.cilium.io"
	withName := func(c observer.ClientTLS, n string) observer.ClientTLS { c.ServerName = n; return c }

	t.Run("mTLS with the Hubble CA and the relay's client certificate delivers the flows", func(t *testing.T) {
		c := startSource(t, Config{Server: tlsUp.Target(), TLS: withName(tlsOf(true, p.caFile, p.clientCert, p.clientKey), name)})
		waitFor(t, "the flows over mTLS", func() bool { return c.count() == len(flows) })
	})
	cases := []struct {
		name   string
		server string
		tls    observer.ClientTLS
		want   []string
	}{
		{"without the Hubble CA the server is not trusted", tlsUp.Target(), withName(tlsOf(true, "", p.clientCert, p.clientKey), name),
			[]string{"not signed by a CA this agent trusts", "--hubble-tls-ca"}},
		{"without a client certificate the server refuses", tlsUp.Target(), withName(tlsOf(true, p.caFile, "", ""), name),
			[]string{"requires a client certificate (mTLS) and none was given", "--hubble-tls-cert"}},
		{"a client certificate of another CA is refused", tlsUp.Target(), withName(tlsOf(true, p.caFile, p.strangerCert, p.strangerKey), name),
			[]string{"rejected the client certificate", "signed by the Hubble CA"}},
		{"the address is not the name in the certificate", tlsUp.Target(), tlsOf(true, p.caFile, p.clientCert, p.clientKey),
			[]string{"not issued for the name checked (127.0.0.1", "--hubble-tls-server-name"}},
		{"plaintext to a TLS server", tlsUp.Target(), observer.ClientTLS{}, []string{"probably requires TLS", "--hubble-tls"}},
		{"TLS to a plaintext server", plainUp.Target(), withName(tlsOf(true, p.caFile, p.clientCert, p.clientKey), name),
			[]string{"does not speak TLS"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, err := New(Config{Server: tc.server, TLS: tc.tls, BackoffMin: 10 * time.Millisecond}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = src.Run(ctx, make(chan []schemas.Flow, 1), func(flowpb.LostEventSource, uint64) {})
			if err == nil || !errors.Is(err, ErrPermanent) {
				t.Fatalf("Run: %v; want a permanent error", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			t.Logf("%v", err)
		})
	}
}
