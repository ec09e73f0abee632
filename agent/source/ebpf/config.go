package ebpf

// The source runs the Linux tcx programs of package bpf: source.go,
// convert.go, metrics.go and datapath.go build for Linux only, and on other
// systems (source_other.go) New returns ErrNeedsLinux. This file builds
// everywhere.

import (
	"errors"
	"fmt"
	"time"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/bpf"
)

// ErrNeedsLinux is what New returns, wrapped with the system the binary was
// built for, on any system but Linux.
var ErrNeedsLinux = errors.New("needs Linux (tcx eBPF programs)")

// Defaults of Config.
const (
	DefaultBatchSize = 512
	// DefaultFirstSnapshotWait is how long Run waits for the cluster's
	// first snapshot before it attaches without one.
	DefaultFirstSnapshotWait = 10 * time.Second
)

// Config configures the eBPF source.
type Config struct {
	// Kernel configures the programs: interfaces (names or globs), map and
	// ring buffer sizes, timeouts. Kernel.Interfaces is required.
	Kernel bpf.Config
	// Node is the node name of every flow, and the node identities are
	// computed for (a host-network pod's address is the host here, a
	// remote node elsewhere).
	Node string
	// Cluster is the agent's view of the cluster (package agent/cluster:
	// the endpoints file or Kubernetes); nil for none, when flows carry
	// addresses only and every peer counts as outside the cluster.
	Cluster *cluster.Store
	// ClusterName is the cluster label of identities ("" is Cilium's
	// "default").
	ClusterName string
	// EnforcePolicy makes the programs enforce the cluster's network
	// policies (the default in the agent); off, they observe only: flows
	// still carry identities, and every verdict is FORWARDED.
	EnforcePolicy bool
	// FirstSnapshotWait is how long Run waits for Cluster's first snapshot
	// before attaching (default DefaultFirstSnapshotWait).
	FirstSnapshotWait time.Duration
	// BatchSize is the number of flows per batch sent downstream (default 512).
	BatchSize int
}

func (c Config) withDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FirstSnapshotWait == 0 {
		c.FirstSnapshotWait = DefaultFirstSnapshotWait
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if err := c.Kernel.Validate(); err != nil {
		return fmt.Errorf("ebpf source: %w", err)
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("ebpf source: batch size %d must not be negative", c.BatchSize)
	}
	if c.FirstSnapshotWait < 0 {
		return fmt.Errorf("ebpf source: first snapshot wait %v must not be negative", c.FirstSnapshotWait)
	}
	return nil
}
