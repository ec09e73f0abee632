package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/flowbus/flowbus/agent/metrics"
	"github.com/flowbus/flowbus/aggregator/relay"
)

// runRelay is `flowbus relay`: Hubble relay's role, merging the Observer
// streams of many agents on :4245.
func runRelay(ctx context.Context, args []string, cio cmdIO) error {
	fs := pflag.NewFlagSet("relay", pflag.ContinueOnError)
	fs.SetOutput(cio.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(cio.Stderr, "Usage: flowbus relay --agents host:port[,host:port...] [flags]\n\nServe the Hubble Observer API on --listen-address, merging every agent's flows\nin time order. A host may be a DNS name with many addresses (a headless\nService): each address is an agent, resolved again every --resolve-interval.\n\nFlags:")
		fmt.Fprint(cio.Stderr, fs.FlagUsages())
	}
	var cfg relay.Config
	var metricsAddr string
	fs.StringVar(&cfg.ListenAddress, "listen-address", relay.DefaultListenAddress, "Address to serve the Observer API on")
	fs.StringSliceVar(&cfg.Agents, "agents", nil, "Agents' Observer addresses, host:port (e.g. flowbus-agents.flowbus.svc:4244); repeat or separate with commas")
	fs.DurationVar(&cfg.ResolveInterval, "resolve-interval", 0, "How often agent names are resolved again (default 30s)")
	fs.DurationVar(&cfg.RetryInterval, "retry-interval", 0, "How often a follow stream retries agents it lost (default 5s)")
	fs.DurationVar(&cfg.SortWindow, "sort-window", 0, "Follow: how long a flow may wait for older flows of quieter agents (default 500ms)")
	fs.DurationVar(&cfg.BatchWindow, "batch-window", 0, "Non-follow: how long a flow may wait for a slow agent before order becomes best-effort (default 5s)")
	fs.StringVar(&cfg.ServerTLS.CertFile, "tls-cert-file", "", "Serve TLS with this certificate (PEM)")
	fs.StringVar(&cfg.ServerTLS.KeyFile, "tls-key-file", "", "Key of --tls-cert-file (PEM)")
	fs.StringVar(&cfg.ServerTLS.ClientCAFile, "tls-client-ca-file", "", "Require client certificates signed by this CA (mTLS)")
	fs.BoolVar(&cfg.ClientTLS.Enabled, "agent-tls", false, "Connect to agents with TLS")
	fs.StringVar(&cfg.ClientTLS.CAFile, "agent-tls-ca-file", "", "CA that signs the agents' certificates (default: system roots)")
	fs.StringVar(&cfg.ClientTLS.CertFile, "agent-tls-cert-file", "", "Client certificate presented to agents (mTLS)")
	fs.StringVar(&cfg.ClientTLS.KeyFile, "agent-tls-key-file", "", "Key of --agent-tls-cert-file")
	fs.StringVar(&cfg.ClientTLS.ServerName, "agent-tls-server-name", "", "Name to verify in the agents' certificates")
	fs.StringVar(&metricsAddr, "metrics-address", "", "Serve the relay's flowbus_relay_* metrics on this address (/metrics); empty: off")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if len(cfg.Agents) == 0 {
		return fmt.Errorf("%w: --agents is required (e.g. --agents flowbus-agents.flowbus.svc:4244)", errUsage)
	}
	cfg.Version = version
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
	if metricsAddr != "" {
		g.Go(func() error { return metrics.ListenAndServe(ctx, metricsAddr, reg, cio.Log) })
	}
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
