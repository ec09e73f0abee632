package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/flowbus/flowbus/sinks/bus"
)

// metricsTLS are the TLS flags of a command's /metrics endpoint, the same
// on every command that serves one (agent, aggregator, relay, ocsf).
type metricsTLS struct {
	certFile, keyFile, clientCAFile string
}

// addMetricsTLSFlags adds --metrics-tls-cert-file, --metrics-tls-key-file
// and --metrics-tls-client-ca-file to fs.
func addMetricsTLSFlags(fs *flagSet, m *metricsTLS) {
	fs.StringVar(&m.certFile, "metrics-tls-cert-file", "", "serve /metrics over HTTPS with this certificate (PEM; with --metrics-tls-key-file); a plain HTTP scrape is then refused")
	fs.StringVar(&m.keyFile, "metrics-tls-key-file", "", "key of --metrics-tls-cert-file (PEM)")
	fs.StringVar(&m.clientCAFile, "metrics-tls-client-ca-file", "", "require scrapers to present a client certificate signed by this CA (mTLS); needs --metrics-tls-cert-file")
}

// enabled reports whether /metrics is served over TLS.
func (m metricsTLS) enabled() bool { return m.certFile != "" || m.keyFile != "" }

// config returns the server's TLS configuration, nil without TLS. The
// files are checked as the buses' are (bus.CheckTLSFiles), and every error
// names the flag to fix. The certificate is read again when its files
// change (keyPair).
func (m metricsTLS) config() (*tls.Config, error) {
	if !m.enabled() {
		if m.clientCAFile != "" {
			return nil, fmt.Errorf("%w: --metrics-tls-client-ca-file needs --metrics-tls-cert-file and --metrics-tls-key-file (mTLS is TLS first)", errUsage)
		}
		return nil, nil
	}
	if (m.certFile == "") != (m.keyFile == "") {
		return nil, fmt.Errorf("%w: --metrics-tls-cert-file and --metrics-tls-key-file go together", errUsage)
	}
	if err := bus.CheckTLSFiles(m.clientCAFile, m.certFile, m.keyFile); err != nil {
		return nil, fmt.Errorf("metrics TLS (--metrics-tls-*): %w", err)
	}
	kp := &keyPair{certFile: m.certFile, keyFile: m.keyFile}
	if _, err := kp.get(nil); err != nil {
		return nil, fmt.Errorf("metrics TLS: --metrics-tls-cert-file %s with --metrics-tls-key-file %s: %w", m.certFile, m.keyFile, err)
	}
	c := &tls.Config{GetCertificate: kp.get, MinVersion: tls.VersionTLS12}
	if m.clientCAFile != "" {
		pem, err := os.ReadFile(m.clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("metrics TLS: --metrics-tls-client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("metrics TLS: --metrics-tls-client-ca-file %s: no PEM certificate found", m.clientCAFile)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// listen listens on addr for /metrics, with TLS when the flags ask for it,
// and returns the listener and the URL to log.
func (m metricsTLS) listen(addr string) (net.Listener, string, error) {
	tc, err := m.config()
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics listener (--metrics-address): %w", err)
	}
	if tc == nil {
		return ln, "http://" + ln.Addr().String() + "/metrics", nil
	}
	return tls.NewListener(ln, tc), "https://" + ln.Addr().String() + "/metrics", nil
}

// keyPair is the server certificate of /metrics, read again when its files
// change (a renewed certificate, a Kubernetes Secret updated in place), so
// that a rotation needs no restart. Handshakes look at the files at most
// once per keyPairCheckEvery; a pair that does not load (a half-written
// renewal) leaves the last good one in use.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // of the files cert was read from
	checked time.Time
}

// keyPairCheckEvery is how often a handshake looks whether the files
// changed; a variable for tests.
var keyPairCheckEvery = time.Second

func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && time.Since(k.checked) < keyPairCheckEvery {
		return k.cert, nil
	}
	k.checked = time.Now()
	stamp := fileStamp(k.certFile) + "|" + fileStamp(k.keyFile)
	if k.cert != nil && stamp == k.stamp {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, err
	}
	k.cert, k.stamp = &cert, stamp
	return k.cert, nil
}

// fileStamp identifies a version of a file: its size and modification
// time, through symbolic links (a Secret volume swaps a link).
func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
}
