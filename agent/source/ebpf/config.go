package ebpf

// The source runs the Linux tcx programs of package bpf: source.go,
// convert.go, metrics.go and datapath.go build for Linux only, and on other
// systems (source_other.go) New returns ErrNeedsLinux. This file builds
// everywhere.

import (
	"errors"
	"fmt"
	"time"

	"github.com/flowbus/flowbus/bpf"
)

// ErrNeedsLinux is what New returns, wrapped with the system the binary was
// built for, on any system but Linux.
var ErrNeedsLinux = errors.New("needs Linux (tcx eBPF programs)")

// Defaults of Config.
const (
	DefaultBatchSize   = 512
	DefaultReloadEvery = 2 * time.Second
)

// Config configures the eBPF source.
type Config struct {
	// Kernel configures the programs: interfaces (names or globs), map and
	// ring buffer sizes, timeouts. Kernel.Interfaces is required.
	Kernel bpf.Config
	// Node is the node name of every flow.
	Node string
	// EndpointsFile is the endpoints file (YAML or JSON, package
	// agent/endpoints) mapping IPs and interfaces to pods; optional.
	// It is re-read when its modification time or size changes.
	EndpointsFile string
	// ReloadEvery is how often the endpoints file is checked (default 2 s).
	ReloadEvery time.Duration
	// BatchSize is the number of flows per batch sent downstream (default 512).
	BatchSize int
}

func (c Config) withDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.ReloadEvery == 0 {
		c.ReloadEvery = DefaultReloadEvery
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
	if c.ReloadEvery < 0 {
		return fmt.Errorf("ebpf source: endpoints reload interval %v must not be negative", c.ReloadEvery)
	}
	return nil
}
