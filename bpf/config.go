package bpf

// The kernel datapath is Linux's (tcx, BPF maps and ring buffer): every file
// of this package that touches it, the bpf2go output included, builds for
// Linux only (//go:build linux). This file builds everywhere: Config, its
// defaults and Validate, so that a flowbus built for another system takes
// and checks the same settings and says that its eBPF source needs Linux.

import (
	"errors"
	"fmt"
	"os"
	"path"
	"time"
)

// Config configures a Collector. Zero values take the documented defaults.
type Config struct {
	// Interfaces are names or path.Match globs ("veth*", "lxc*", "eth0") of
	// the interfaces to attach to; interfaces that appear later are attached
	// when they appear.
	Interfaces []string
	// MaxFlows is the capacity of each kernel flows map, one for IPv4 and
	// one for IPv6 (default 65536 each). When one is full, its new flows are
	// reported packet by packet (EventInsertFailed) and counted in
	// CounterMapInsert.
	MaxFlows uint32
	// RingBufSize is the ring buffer size in bytes: a power of two and a
	// multiple of the page size (default 1 MiB).
	RingBufSize uint32
	// ActiveTimeout: a flow alive this long since its last record is reported
	// (EventActiveTimeout) and keeps being tracked (default 10 s).
	ActiveTimeout time.Duration
	// IdleTimeout: a flow without packets this long is reported and removed
	// (default 10 s).
	IdleTimeout time.Duration
	// EndLinger: the tail of an ended flow (packets after its end) is
	// reported once it has been quiet this long (default 1 s).
	EndLinger time.Duration
	// SweepInterval is how often the flows map is scanned (default 1 s); the
	// interface list is polled at the same pace.
	SweepInterval time.Duration
	// NaivePerPacketEvents loads the program in the naive per-packet-event
	// mode (no flow state; one EventPacket per packet). For comparisons.
	NaivePerPacketEvents bool
	// PollInterval is how often the reader looks at the ring buffer without
	// being woken (default 50 ms): the kernel wakes it only once a quarter of
	// the ring is full, so events wait at most this long in quiet times.
	PollInterval time.Duration
	// EmitStartEvents makes the kernel emit EventFlowStart for every new
	// flow. Off by default: the reservation adds ~100 ns to a new flow's
	// ~400 ns (bench/RESULTS.md, "Kernel datapath"), and flows are reported
	// when they end or time out.
	EmitStartEvents bool
	// BeforeAttach, when set, is called from the attach loop whenever the
	// set of interfaces to be attached changes, with the whole new set,
	// before the programs are attached to the new ones: whatever the
	// programs look up for an interface (its endpoint and policy) is then
	// in place before its first packet is seen, so an endpoint is never
	// observed without its policy.
	BeforeAttach func(next []Interface)
}

// Interface is an interface the programs are attached to.
type Interface struct {
	Index int
	Name  string
}

// Defaults.
const (
	DefaultMaxFlows      = 65536
	DefaultRingBufSize   = 1 << 20
	DefaultActiveTimeout = 10 * time.Second
	DefaultIdleTimeout   = 10 * time.Second
	DefaultEndLinger     = time.Second
	DefaultSweepInterval = time.Second
	DefaultPollInterval  = 50 * time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.MaxFlows == 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.RingBufSize == 0 {
		c.RingBufSize = DefaultRingBufSize
	}
	if c.ActiveTimeout == 0 {
		c.ActiveTimeout = DefaultActiveTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.EndLinger == 0 {
		c.EndLinger = DefaultEndLinger
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	return c
}

// Validate reports the first invalid setting (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	page := uint32(os.Getpagesize())
	switch {
	case len(c.Interfaces) == 0:
		return errors.New("no interfaces to attach to: give names or globs such as lxc* or eth0")
	case c.RingBufSize&(c.RingBufSize-1) != 0 || c.RingBufSize%page != 0:
		return fmt.Errorf("ring buffer size %d: must be a power of two and a multiple of the page size %d", c.RingBufSize, page)
	case c.ActiveTimeout < 0 || c.IdleTimeout < 0 || c.EndLinger < 0 || c.SweepInterval < 0 || c.PollInterval < 0:
		return errors.New("timeouts and intervals must be positive")
	}
	for _, p := range c.Interfaces {
		if p == "" {
			return errors.New("empty interface pattern")
		}
		if _, err := pathMatch(p); err != nil {
			return fmt.Errorf("interface pattern %q: %w", p, err)
		}
	}
	return nil
}

func pathMatch(p string) (bool, error) { return path.Match(p, "") }
