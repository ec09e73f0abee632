package kafka

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flowbus/flowbus/internal/pkitest"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
)

func TestTLSOptionsReachABrokerThatRequiresClientCertificates(t *testing.T) {
	pki := pkitest.New(t, t.TempDir())
	c := newCluster(t, kfake.SeedTopics(2, DefaultTopic), kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{pki.Server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Pool, MinVersion: tls.VersionTLS12}))
	cases := []struct {
		name string
		tls  TLS
		ok   bool
		want string // in the error when not ok
	}{
		{"the CA file and a client certificate connect", TLS{CAFile: pki.CAFile, CertFile: pki.CertFile, KeyFile: pki.KeyFile}, true, ""},
		{"insecure skip verify with a client certificate connects", TLS{InsecureSkipVerify: true, CertFile: pki.CertFile, KeyFile: pki.KeyFile}, true, ""},
		{"the system roots do not trust the test CA", TLS{Enable: true, CertFile: pki.CertFile, KeyFile: pki.KeyFile}, false, "certificate signed by unknown authority"},
		{"no client certificate is refused by the broker", TLS{CAFile: pki.CAFile}, false, "last broker connection error"},
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
