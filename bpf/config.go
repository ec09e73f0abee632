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
	// SweepInterval is how often the flows maps are scanned while they are
	// busy (default 1 s); the interface list is looked at this often, and
	// listed again when the kernel announced a change (doc.go, "Interfaces").
	SweepInterval time.Duration
	// MaxSweepInterval is how often the flows maps are scanned while they
	// are not busy (default 4 × SweepInterval): the last scan found fewer
	// than MaxFlows/2 flows, fewer than MaxFlows/4 events came since, and
	// the kernel refused no end event and no new flow since (doc.go, "Map
	// type and eviction"). Timeouts and tails are then reported up to this
	// late instead of up to SweepInterval.
	MaxSweepInterval time.Duration
	// NaivePerPacketEvents loads the program in the naive per-packet-event
	// mode (no flow state; one EventPacket per packet). For comparisons.
	NaivePerPacketEvents bool
	// PollInterval bounds how long an event waits in the ring buffer
	// (default 100 ms): the kernel wakes the reader at the first event of
	// a batch, and the reader gathers the batch for this long before it
	// drains the ring, unless a quarter of the ring fills first (doc.go,
	// "Wakeups"). The L7 capture reader polls its ring at this interval
	// too when it is set, else every DefaultL7PollInterval.
	PollInterval time.Duration
	// EmitStartEvents makes the kernel emit EventFlowStart for every new
	// flow. Off by default: the reservation adds ~100 ns to a new flow's
	// ~400 ns (bench/HISTORY.md, "Kernel datapath"), and flows are reported
	// when they end or time out.
	EmitStartEvents bool
	// BeforeAttach, when set, is called from the attach loop whenever the
	// set of interfaces to be attached changes, with the whole new set,
	// before the programs are attached to the new ones: whatever the
	// programs look up for an interface (its endpoint and policy) is then
	// in place before its first packet is seen, so an endpoint is never
	// observed without its policy.
	BeforeAttach func(next []Interface)
	// L7 configures the capture of payload heads for L7 parsing; off when
	// L7.Ports is empty.
	L7 L7Config
}

// L7Config configures L7 capture (doc.go, "L7 capture"): every TCP segment
// with payload (and every SYN, FIN and RST) and every UDP datagram of a
// flow whose server port is listed is copied to a ring buffer of its own
// with the first HeadBytes of its payload, at the one interface that
// counts the flow. Flows on other ports pay nothing, and with no ports the
// capture is not in the program at all.
type L7Config struct {
	// Ports are the server ports to capture, each with the class
	// userspace gave it (the kernel counts by class).
	Ports []L7Port
	// HeadBytes is the most payload bytes one capture carries (default
	// 512, at most L7HeadMax).
	HeadBytes uint32
	// RingBufSize is the capture ring buffer's size in bytes: a power of
	// two and a multiple of the page size (default 4 MiB).
	RingBufSize uint32
}

// L7Port is a server port whose flows are captured.
type L7Port struct {
	Port  uint16
	Proto uint8 // 6 TCP or 17 UDP
	// Class is a number from 1 to L7ClassMax-1 that userspace maps to
	// the port's protocol; the kernel's capture counters are per class.
	Class uint8
}

// Enabled reports whether any port is captured.
func (c L7Config) Enabled() bool { return len(c.Ports) > 0 }

// L7 capture limits (enum l7_limits in flow.h).
const (
	L7ClassMax         = 8
	L7HeadMax          = 1024
	DefaultL7HeadBytes = 512
	DefaultL7RingBuf   = 4 << 20
)

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
	DefaultPollInterval  = 100 * time.Millisecond
	// DefaultL7PollInterval is the L7 capture reader's poll interval when
	// PollInterval is not set.
	DefaultL7PollInterval = 50 * time.Millisecond
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
	if c.MaxSweepInterval == 0 {
		c.MaxSweepInterval = 4 * c.SweepInterval
	}
	c.MaxSweepInterval = max(c.MaxSweepInterval, c.SweepInterval)
	if c.L7.HeadBytes == 0 {
		c.L7.HeadBytes = DefaultL7HeadBytes
	}
	if c.L7.RingBufSize == 0 {
		c.L7.RingBufSize = DefaultL7RingBuf
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
	case c.ActiveTimeout < 0 || c.IdleTimeout < 0 || c.EndLinger < 0 || c.SweepInterval < 0 || c.PollInterval < 0 || c.MaxSweepInterval < 0:
		return errors.New("timeouts and intervals must be positive")
	case c.L7.HeadBytes > L7HeadMax:
		return fmt.Errorf("L7 head of %d bytes: at most %d", c.L7.HeadBytes, L7HeadMax)
	case c.L7.RingBufSize&(c.L7.RingBufSize-1) != 0 || c.L7.RingBufSize%page != 0:
		return fmt.Errorf("L7 ring buffer size %d: must be a power of two and a multiple of the page size %d", c.L7.RingBufSize, page)
	}
	seen := map[[2]uint16]bool{}
	for _, p := range c.L7.Ports {
		switch {
		case p.Proto != 6 && p.Proto != 17:
			return fmt.Errorf("L7 port %d: protocol %d is neither TCP (6) nor UDP (17)", p.Port, p.Proto)
		case p.Port == 0:
			return errors.New("L7 port 0: give a server port from 1 to 65535")
		case p.Class == 0 || p.Class >= L7ClassMax:
			return fmt.Errorf("L7 port %d: class %d out of 1..%d", p.Port, p.Class, L7ClassMax-1)
		case seen[[2]uint16{p.Port, uint16(p.Proto)}]:
			return fmt.Errorf("L7 port %d/%d listed twice", p.Port, p.Proto)
		}
		seen[[2]uint16{p.Port, uint16(p.Proto)}] = true
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
