//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Counter indexes the kernel's per-CPU counters (enum counter in flow.h).
type Counter int

// The kernel counters. Parse errors are the first nine; NonIP and Fragment
// are packets deliberately not tracked; the RingBuf* and MapInsert counters
// are loss.
const (
	CounterEthTruncated     Counter = Counter(bpfCounterCOUNTER_ETH_TRUNCATED)
	CounterIPv4Truncated    Counter = Counter(bpfCounterCOUNTER_IPV4TRUNCATED)
	CounterIPv4Malformed    Counter = Counter(bpfCounterCOUNTER_IPV4MALFORMED)
	CounterIPv6Truncated    Counter = Counter(bpfCounterCOUNTER_IPV6TRUNCATED)
	CounterIPv6Malformed    Counter = Counter(bpfCounterCOUNTER_IPV6MALFORMED)
	CounterIPv6ExtTruncated Counter = Counter(bpfCounterCOUNTER_IPV6EXT_TRUNCATED)
	CounterIPv6ExtLimit     Counter = Counter(bpfCounterCOUNTER_IPV6EXT_LIMIT)
	CounterL4Truncated      Counter = Counter(bpfCounterCOUNTER_L4TRUNCATED)
	CounterTCPMalformed     Counter = Counter(bpfCounterCOUNTER_TCP_MALFORMED)
	CounterNonIP            Counter = Counter(bpfCounterCOUNTER_NON_IP)
	CounterFragment         Counter = Counter(bpfCounterCOUNTER_FRAGMENT)
	// CounterRingBufStart counts start events the ring buffer refused. Nothing
	// else is lost: the flow is still reported when it ends.
	CounterRingBufStart Counter = Counter(bpfCounterCOUNTER_RINGBUF_START)
	// CounterRingBufEnd counts end/reset events the ring buffer refused. The
	// flow stays in the map, marked ended and unreported, and the sweep
	// reports it (EventRecovered): nothing is lost.
	CounterRingBufEnd Counter = Counter(bpfCounterCOUNTER_RINGBUF_END)
	// CounterRingBufLost counts events the ring buffer refused whose data is
	// then lost: per-packet events (naive mode, or packets of flows the map
	// refused), and the end of a flow whose tuple a new connection reused
	// before the sweep could report it.
	CounterRingBufLost Counter = Counter(bpfCounterCOUNTER_RINGBUF_LOST)
	// CounterMapInsert counts new flows the full flows map refused; each of
	// their packets becomes an EventInsertFailed instead.
	CounterMapInsert Counter = Counter(bpfCounterCOUNTER_MAP_INSERT)

	numCounters = int(bpfCounterCOUNTER_MAX)
)

var counterNames = [...]string{
	"eth_truncated", "ipv4_truncated", "ipv4_malformed", "ipv6_truncated", "ipv6_malformed",
	"ipv6_ext_truncated", "ipv6_ext_limit", "l4_truncated", "tcp_malformed",
	"non_ip", "fragment", "ringbuf_start", "ringbuf_end", "ringbuf_lost", "map_insert",
}

// String is the counter's metric label value, e.g. "ipv4_truncated".
func (c Counter) String() string {
	if c < 0 || int(c) >= len(counterNames) {
		return fmt.Sprintf("counter(%d)", int(c))
	}
	return counterNames[c]
}

// IsParseError reports whether c counts malformed or truncated packets.
func (c Counter) IsParseError() bool { return c <= CounterTCPMalformed }

// Counters are the kernel counters summed over CPUs, indexed by Counter.
type Counters [numCounters]uint64

// ParseErrors is the sum of the parse-error counters.
func (c *Counters) ParseErrors() uint64 {
	var n uint64
	for i := CounterEthTruncated; i <= CounterTCPMalformed; i++ {
		n += c[i]
	}
	return n
}

// RingBufFailures is the number of failed bpf_ringbuf_reserve calls.
func (c *Counters) RingBufFailures() uint64 {
	return c[CounterRingBufStart] + c[CounterRingBufEnd] + c[CounterRingBufLost]
}

// Lost is the number of events whose data was lost (CounterRingBufLost).
// Refused start and end events lose nothing (see CounterRingBufStart,
// CounterRingBufEnd).
func (c *Counters) Lost() uint64 { return c[CounterRingBufLost] }

// loadOptions are the load-time settings of the kernel objects.
type loadOptions struct {
	maxFlows             uint32
	ringBufSize          uint32
	naivePerPacketEvents bool
	emitStartEvents      bool
	wakeupBytes          uint32
	endLinger            time.Duration // sweep_husks frees ended entries quiet this long
	l7                   L7Config      // with defaults
}

// loadObjects loads the programs and maps with the given sizes and switches.
func loadObjects(o loadOptions) (*bpfObjects, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load flow program spec: %w", err)
	}
	if o.maxFlows > 0 {
		spec.Maps["flows4"].MaxEntries = o.maxFlows
		spec.Maps["flows6"].MaxEntries = o.maxFlows
	}
	if o.ringBufSize > 0 {
		spec.Maps["events"].MaxEntries = o.ringBufSize
	}
	if err := spec.Variables["naive_per_packet_events"].Set(boolByte(o.naivePerPacketEvents)); err != nil {
		return nil, fmt.Errorf("set naive_per_packet_events: %w", err)
	}
	if err := spec.Variables["emit_start_events"].Set(boolByte(o.emitStartEvents)); err != nil {
		return nil, fmt.Errorf("set emit_start_events: %w", err)
	}
	if err := spec.Variables["wakeup_bytes"].Set(o.wakeupBytes); err != nil {
		return nil, fmt.Errorf("set wakeup_bytes: %w", err)
	}
	if err := spec.Variables["end_linger_ns"].Set(uint64(max(o.endLinger, 0))); err != nil {
		return nil, fmt.Errorf("set end_linger_ns: %w", err)
	}
	if err := setL7(spec, o.l7); err != nil {
		return nil, err
	}
	tick, err := tickNs()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["tick_ns"].Set(tick); err != nil {
		return nil, fmt.Errorf("set tick_ns: %w", err)
	}
	netns, err := netnsInum()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["agent_netns_inum"].Set(netns); err != nil {
		return nil, fmt.Errorf("set agent_netns_inum: %w", err)
	}
	var objs bpfObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load flow programs: %+v", ve)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("load flow programs (needs root or CAP_BPF+CAP_NET_ADMIN): %w", err)
		}
		return nil, fmt.Errorf("load flow programs: %w", err)
	}
	if err := calibrateClock(objs.ClockCalibrate); err != nil {
		objs.Close()
		return nil, err
	}
	if err := fillKdropHubble(objs.KdropHubble); err != nil {
		objs.Close()
		return nil, err
	}
	if err := fillL7Ports(objs.L7Ports, o.l7.Ports); err != nil {
		objs.Close()
		return nil, err
	}
	return &objs, nil
}

// tickNs returns the kernel's tick (jiffy) length in ns, TICK_NSEC: the
// resolution the kernel reports for CLOCK_MONOTONIC_COARSE.
func tickNs() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0, fmt.Errorf("read kernel tick (CLOCK_MONOTONIC_COARSE resolution): %w", err)
	}
	if n := ts.Nano(); n > 0 && n <= int64(time.Second) {
		return uint64(n), nil
	}
	return 0, fmt.Errorf("kernel tick %v out of range", time.Duration(ts.Nano()))
}

// calibrateClock runs clock_calibrate, which sets the jiffies to
// CLOCK_MONOTONIC offset of the established path's last_seen. It retries
// when a tick raced the program's reads (it needs none of them twice in a
// row; ten tries fail only if the program is broken).
func calibrateClock(prog *ebpf.Program) error {
	frame := make([]byte, 14) // BPF_PROG_TEST_RUN wants an Ethernet header
	for range 10 {
		ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			return fmt.Errorf("calibrate jiffies clock: %w", err)
		}
		if ret == 1 {
			return nil
		}
	}
	return errors.New("calibrate jiffies clock: a tick raced every try")
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// readCounters sums the per-CPU counters.
func readCounters(m *ebpf.Map) (Counters, error) {
	var c Counters
	var per []uint64
	for i := range numCounters {
		n, err := readCounter(m, Counter(i), &per)
		if err != nil {
			return c, err
		}
		c[i] = n
	}
	return c, nil
}

// readCounter reads counter i of m, summed over CPUs, into the per-CPU
// buffer *per (reused when it has the right length).
func readCounter(m *ebpf.Map, i Counter, per *[]uint64) (uint64, error) {
	if per == nil {
		per = new([]uint64)
	}
	if err := m.Lookup(uint32(i), per); err != nil {
		return 0, fmt.Errorf("read counter %s: %w", i, err)
	}
	var n uint64
	for _, v := range *per {
		n += v
	}
	return n, nil
}
