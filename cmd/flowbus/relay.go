package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/flowbus/flowbus/agent/metrics"
	"github.com/flowbus/flowbus/aggregator/relay"
)

// newRelayFlags returns the flags of `flowbus relay` and the config they
// fill, and the metrics endpoint's.
func newRelayFlags(cio cmdIO) (*flagSet, *relay.Config, *relayMetrics) {
	fs := newFlagSet("relay", "relay --agents host:port[,host:port...] [flags]", "Serve the Hubble Observer API "+
		"on --observer-address, merging every agent's flows in time order, as Hubble relay does. A host may be a DNS "+
		"name with many addresses (a headless Service): each address is an agent, resolved again every "+
		"--resolve-interval.", cio)
	cfg := &relay.Config{}
	var m relayMetrics
	fs.group("Agent")
	fs.StringSliceVar(&cfg.Agents, "agents", nil, "agents' Observer addresses, host:port (e.g. flowbus-agents.flowbus.svc:4244); repeat or separate with commas")
	fs.DurationVar(&cfg.ResolveInterval, "resolve-interval", relay.DefaultResolveInterval, "how often agent names are resolved again")
	fs.check("resolve-interval", positive(&cfg.ResolveInterval))
	fs.DurationVar(&cfg.RetryInterval, "retry-interval", relay.DefaultRetryInterval, "how often a follow stream retries agents it lost; also the longest wait between two connection attempts to an agent that is down")
	fs.check("retry-interval", positive(&cfg.RetryInterval))
	fs.DurationVar(&cfg.SortWindow, "sort-window", relay.DefaultSortWindow, "follow: how long a flow may wait for older flows of quieter agents")
	fs.check("sort-window", positive(&cfg.SortWindow))
	fs.DurationVar(&cfg.BatchWindow, "batch-window", relay.DefaultBatchWindow, "non-follow: how long a flow may wait for a slow agent before order becomes best-effort")
	fs.check("batch-window", positive(&cfg.BatchWindow))
	fs.BoolVar(&cfg.ClientTLS.Enabled, "agent-tls", false, "connect to agents with TLS")
	fs.StringVar(&cfg.ClientTLS.CAFile, "agent-tls-ca-file", "", "CA that signs the agents' certificates (default: system roots)")
	fs.StringVar(&cfg.ClientTLS.CertFile, "agent-tls-cert-file", "", "client certificate presented to agents (mTLS)")
	fs.StringVar(&cfg.ClientTLS.KeyFile, "agent-tls-key-file", "", "key of --agent-tls-cert-file")
	fs.StringVar(&cfg.ClientTLS.ServerName, "agent-tls-server-name", "", "name to verify in the agents' certificates")

	fs.group("Observer API")
	fs.StringVar(&cfg.ListenAddress, "observer-address", "127.0.0.1:4245", "serve the merged Observer API here (hubble observe --server, flowbus observe). Unset, it is loopback, or :4245 with --observer-tls-cert-file; a plaintext address beyond loopback needs --observer-insecure")
	fs.alias("listen-address", "observer-address")
	fs.Bool("observer-insecure", false, "accept serving the merged Observer API in plaintext on an address beyond loopback (every pod's flows, to anyone who can reach it); warns")
	fs.StringVar(&cfg.ServerTLS.CertFile, "observer-tls-cert-file", "", "Observer API: server certificate (PEM; enables TLS)")
	fs.alias("tls-cert-file", "observer-tls-cert-file")
	fs.StringVar(&cfg.ServerTLS.KeyFile, "observer-tls-key-file", "", "Observer API: server key (PEM)")
	fs.alias("tls-key-file", "observer-tls-key-file")
	fs.StringVar(&cfg.ServerTLS.ClientCAFile, "observer-tls-client-ca-file", "", "Observer API: CA for client certificates (enables mTLS)")
	fs.alias("tls-client-ca-file", "observer-tls-client-ca-file")

	fs.group("Metrics")
	fs.StringVar(&m.addr, "metrics-address", "", "serve the relay's flowbus_relay_* metrics here at /metrics; empty disables")
	addMetricsTLSFlags(fs, &m.tls)
	return fs, cfg, &m
}

// relayMetrics are the relay's metrics endpoint flags.
type relayMetrics struct {
	addr string
	tls  metricsTLS
}

// runRelay is `flowbus relay`: Hubble relay's role, merging the Observer
// streams of many agents on :4245.
func runRelay(ctx context.Context, args []string, cio cmdIO) error {
	fs, cfgp, mp := newRelayFlags(cio)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, m := *cfgp, *mp
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if len(cfg.Agents) == 0 {
		return fmt.Errorf("%w: --agents is required (e.g. --agents flowbus-agents.flowbus.svc:4244)", errUsage)
	}
	cfg.Version = version
	insecure, _ := fs.GetBool("observer-insecure")
	addr, err := observerAddress("relay", cfg.ListenAddress, fs.Changed("observer-address") && cfg.ListenAddress != "", 4245, cfg.ServerTLS.CertFile != "", insecure, cio.Log)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg.ListenAddress = addr
	reg := prometheus.NewRegistry()
	r, err := relay.New(cfg, cio.Log, reg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddress, err)
	}
	cio.Log.Info("relay serving", "address", lis.Addr().String(), "agents", cfg.Agents)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.Serve(ctx, lis) })
	if m.addr != "" {
		mln, url, err := m.tls.listen(m.addr)
		if err != nil {
			lis.Close()
			return err
		}
		cio.Log.Info("metrics", "url", url)
		g.Go(func() error { return metrics.Serve(ctx, mln, reg, cio.Log) })
	}
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
