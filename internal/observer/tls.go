package observer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ServerTLS configures TLS on a gRPC server. With CertFile and KeyFile empty
// the server speaks plaintext; with ClientCAFile set it requires and verifies
// client certificates signed by that CA (mTLS).
type ServerTLS struct {
	CertFile, KeyFile string
	ClientCAFile      string
}

// Enabled reports whether TLS is configured.
func (c ServerTLS) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Validate checks that the settings are complete.
func (c ServerTLS) Validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("tls: both a certificate and a key file are needed")
	}
	if c.ClientCAFile != "" && !c.Enabled() {
		return errors.New("tls: a client CA (mTLS) needs a server certificate and key")
	}
	return nil
}

// ServerOption returns the grpc.ServerOption for these settings (nil for plaintext).
func (c ServerTLS) ServerOption() (grpc.ServerOption, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load server key pair: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pool, err := loadPool(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return grpc.Creds(credentials.NewTLS(cfg)), nil
}

// ClientTLS configures a gRPC client: plaintext unless Enabled; CAFile
// verifies the server (system roots if empty); CertFile/KeyFile present a
// client certificate (mTLS); ServerName overrides the name verified.
type ClientTLS struct {
	Enabled            bool
	CAFile             string
	CertFile, KeyFile  string
	ServerName         string
	InsecureSkipVerify bool
}

// DialOption returns the transport credentials option for these settings.
func (c ClientTLS) DialOption() (grpc.DialOption, error) {
	if !c.Enabled {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	cfg := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in flag
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("tls: a client certificate needs both a certificate and a key file")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: load client key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tls: no PEM certificate in %s", file)
	}
	return pool, nil
}
