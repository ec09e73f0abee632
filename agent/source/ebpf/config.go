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
	"github.com/flowbus/flowbus/agent/l7/fqdn"
	"github.com/flowbus/flowbus/agent/l7/stream"
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
	// L7, when set, follows the L7 protocols of its ports without a policy
	// (doc.go, "L7"): the kernel captures the heads of their segments
	// (Kernel.L7.RingBufSize sizes its ring; the head is L7.HeadBytes),
	// and L7 records (REQUEST, RESPONSE) join the flow records.
	L7 *stream.Config
	// Names tunes the cache of DNS answers that gives flows the names
	// their pods resolved (with L7 following a DNS port).
	Names fqdn.Options
	// SockLB, when set, load balances the cluster's services at the
	// socket layer (doc.go, "Socket load balancing"); it needs Cluster.
	SockLB *SockLBConfig
	// PinDir, when set, is the BPF filesystem directory the kernel's flow,
	// identity, policy and socket LB maps are pinned in while Run runs
	// (internal/bpfpin), for `flowbus bpf` and `flowbus audit`. A pin that
	// fails is logged; the source runs on without it.
	PinDir string
}

func (c Config) withDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FirstSnapshotWait == 0 {
		c.FirstSnapshotWait = DefaultFirstSnapshotWait
	}
	if c.L7 != nil {
		l7 := *c.L7
		_ = l7.Validate() // fills the defaults; New has validated
		c.L7 = &l7
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
	if c.SockLB != nil {
		if c.Cluster == nil {
			return errors.New("ebpf source: socket load balancing needs the cluster's services (--endpoints or --endpoints-source kubernetes)")
		}
		if err := c.SockLB.Validate(); err != nil {
			return fmt.Errorf("ebpf source: %w", err)
		}
	}
	if c.L7 != nil {
		l7 := *c.L7
		if err := l7.Validate(); err != nil {
			return fmt.Errorf("ebpf source: %w", err)
		}
		if l7.HeadBytes > bpf.L7HeadMax {
			return fmt.Errorf("ebpf source: L7 head of %d bytes: the kernel captures at most %d", l7.HeadBytes, bpf.L7HeadMax)
		}
	}
	return nil
}
