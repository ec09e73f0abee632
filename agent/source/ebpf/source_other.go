//go:build !linux

package ebpf

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/schemas"
)

// Source is the kernel flow source; this build has none.
type Source struct{}

// New returns ErrNeedsLinux: the programs are Linux tcx programs.
func New(Config, *slog.Logger, prometheus.Registerer) (*Source, error) {
	return nil, errNeedsLinux()
}

// Name returns "ebpf".
func (s *Source) Name() string { return "ebpf" }

// Run returns ErrNeedsLinux.
func (s *Source) Run(context.Context, chan<- []schemas.Flow, func(flowpb.LostEventSource, uint64)) error {
	return errNeedsLinux()
}

func errNeedsLinux() error {
	return fmt.Errorf("the eBPF source %w: this build is for %s", ErrNeedsLinux, runtime.GOOS)
}
