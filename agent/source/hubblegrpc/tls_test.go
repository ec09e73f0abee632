package hubblegrpc

import (
	"context"
	"errors"
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

// TLS and mTLS to a node's Hubble with the certificates a Cilium install
// issues (the Hubble CA, hubble-server-certs, hubble-relay-client-certs):
// with them flows arrive; without them, or with wrong ones, Run stops at
// once with an error that says what is missing or wrong and which setting
// gives it.
func TestTLSWithCiliumCertificates(t *testing.T) {
	p, err := hubbletest.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tlsUp := startUpstream(t, hubbletest.UpstreamConfig{Node: "node-a",
		TLS: observer.ServerTLS{CertFile: p.ServerCert, KeyFile: p.ServerKey, ClientCAFile: p.CAFile}})
	plainUp := startUpstream(t, hubbletest.UpstreamConfig{Node: "node-b"})
	flows := hubbletest.Flows(hubbletest.NewCluster(4, epoch, "node-a").NextEvents(200))
	if err := tlsUp.Feed(flows); err != nil {
		t.Fatal(err)
	}
	name := hubbletest.ServerName("node-a")
	withName := func(c observer.ClientTLS, n string) observer.ClientTLS { c.ServerName = n; return c }

	t.Run("mTLS with the Hubble CA and the relay's client certificate delivers the flows", func(t *testing.T) {
		c := startSource(t, Config{Server: tlsUp.Target(), TLS: withName(tlsOf(true, p.CAFile, p.ClientCert, p.ClientKey), name)})
		waitFor(t, "the flows over mTLS", func() bool { return c.count() == len(flows) })
	})
	cases := []struct {
		name   string
		server string
		tls    observer.ClientTLS
		want   []string
	}{
		{"without the Hubble CA the server is not trusted", tlsUp.Target(), withName(tlsOf(true, "", p.ClientCert, p.ClientKey), name),
			[]string{"not signed by a CA this agent trusts", "--hubble-tls-ca-file"}},
		{"without a client certificate the server refuses", tlsUp.Target(), withName(tlsOf(true, p.CAFile, "", ""), name),
			[]string{"requires a client certificate (mTLS) and none was given", "--hubble-tls-cert-file"}},
		{"a client certificate of another CA is refused", tlsUp.Target(), withName(tlsOf(true, p.CAFile, p.StrangerCert, p.StrangerKey), name),
			[]string{"rejected the client certificate", "signed by the Hubble CA"}},
		{"the address is not the name in the certificate", tlsUp.Target(), tlsOf(true, p.CAFile, p.ClientCert, p.ClientKey),
			[]string{"not issued for the name checked (127.0.0.1", "--hubble-tls-server-name"}},
		{"plaintext to a TLS server", tlsUp.Target(), observer.ClientTLS{}, []string{"probably requires TLS", "--hubble-tls"}},
		{"TLS to a plaintext server", plainUp.Target(), withName(tlsOf(true, p.CAFile, p.ClientCert, p.ClientKey), name),
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
