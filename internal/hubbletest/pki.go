package hubbletest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// PKI is a Hubble CA and the certificates a Cilium install issues from it,
// as PEM files.
type PKI struct {
	CAFile                    string // the Hubble CA (hubble-ca.cilium.io)
	ServerCert, ServerKey     string // hubble-server-certs: *.default.hubble-grpc.cilium.io
	ClientCert, ClientKey     string // hubble-relay-client-certs: *.hubble-relay.cilium.io
	StrangerCert, StrangerKey string // a client certificate signed by another CA
}

// ServerName is the name a client verifies for node's Hubble server
// (cluster "default").
func ServerName(node string) string { return node + ".default.hubble-grpc.cilium.io" }

// NewPKI writes a PKI into dir, valid for an hour.
func NewPKI(dir string) (PKI, error) {
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
	var p PKI
	var err error
	var caCert, otherCA *x509.Certificate
	var caKey, otherKey *ecdsa.PrivateKey
	steps := []func() error{
		func() (err error) {
			p.CAFile, _, caCert, caKey, err = issue(dir, "hubble-ca", ca(1, "hubble-ca.cilium.io"), nil, nil)
			return err
		},
		func() (err error) {
			p.ServerCert, p.ServerKey, _, _, err = issue(dir, "hubble-server", leaf(2, "*.default.hubble-grpc.cilium.io", x509.ExtKeyUsageServerAuth), caCert, caKey)
			return err
		},
		func() (err error) {
			p.ClientCert, p.ClientKey, _, _, err = issue(dir, "hubble-relay-client", leaf(3, "*.hubble-relay.cilium.io", x509.ExtKeyUsageClientAuth), caCert, caKey)
			return err
		},
		func() (err error) {
			_, _, otherCA, otherKey, err = issue(dir, "other-ca", ca(4, "someone else's CA"), nil, nil)
			return err
		},
		func() (err error) {
			p.StrangerCert, p.StrangerKey, _, _, err = issue(dir, "stranger", leaf(5, "stranger", x509.ExtKeyUsageClientAuth), otherCA, otherKey)
			return err
		},
	}
	for _, step := range steps {
		if err = step(); err != nil {
			return PKI{}, err
		}
	}
	return p, nil
}

// issue writes a certificate signed by parent (self-signed when nil) and
// its new key as PEM files in dir.
func issue(dir, name string, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey, err error) {
	if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		return
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return
	}
	err = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return
}
