//go:build linux

package bpf

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// Kernel drops (doc.go, "Kernel drops"): kfree_skb_drop counts the drops of
// pod traffic by the kernel's enum skb_drop_reason and reports the packets
// it parses as EventKernelDrop.

// kdropPrefix is the prefix of the kernel's drop reason names, which the
// metric leaves out (as the kfree_skb tracepoint prints them: "NO_SOCKET").
const kdropPrefix = "SKB_DROP_REASON_"

// KernelDropOther is the reason label of drops whose kernel reason is not
// below 256 (subsystem reasons carry their subsystem in the high bits).
const KernelDropOther = "OTHER"

// hubbleDropReasons maps kernel drop reasons (names without the prefix) to
// Hubble's (flow.DropReason values). Cilium publishes no such table: these
// are flowbus's, where the two mean the same thing; every other reason is
// reported as DROP_REASON_UNKNOWN (0) and counted by its kernel name.
var hubbleDropReasons = map[string]uint8{
	"NO_SOCKET":             178, // SOCKET_LOOKUP_FAILED
	"PKT_TOO_SMALL":         134, // INVALID_PACKET_DROPPED
	"HDR_TRUNC":             134,
	"IP_CSUM":               134,
	"IP_INHDR":              134,
	"TCP_CSUM":              134,
	"UDP_CSUM":              134,
	"ICMP_CSUM":             134,
	"IP_INVALID_SOURCE":     132, // INVALID_SOURCE_IP
	"IP_LOCAL_SOURCE":       132,
	"UNHANDLED_PROTO":       139, // UNSUPPORTED_L3_PROTOCOL
	"IP_NOPROTO":            142, // UNKNOWN_L4_PROTOCOL
	"IPV6_BAD_EXTHDR":       156, // INVALID_IPV6_EXTENSION_HEADER
	"IPV6_TOO_MANY_EXTHDRS": 156,
	"IP_INNOROUTES":         169, // FIB_LOOKUP_FAILED
	"IP_OUTNOROUTES":        169,
	// A tc program's drop: counted, not reported again. flowbus's own
	// policy drops are already their flow's EVENT_FLOW_DROP record.
	"TC_INGRESS": uint8(bpfKdropKDROP_NO_EVENT),
	"TC_EGRESS":  uint8(bpfKdropKDROP_NO_EVENT),
}

// HubbleDropReason returns the Hubble drop reason (a flow.DropReason value)
// of a kernel drop reason name ("NO_SOCKET"), 0 if none maps.
func HubbleDropReason(kernelReason string) uint8 {
	if r := hubbleDropReasons[kernelReason]; r != uint8(bpfKdropKDROP_NO_EVENT) {
		return r
	}
	return 0
}

var kdropNames = sync.OnceValues(func() (map[uint32]string, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("kernel BTF: %w", err)
	}
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
		return nil, fmt.Errorf("kernel BTF: enum skb_drop_reason: %w", err)
	}
	names := map[uint32]string{}
	for _, v := range e.Values {
		if n, ok := strings.CutPrefix(v.Name, kdropPrefix); ok && v.Value < uint64(bpfKdropKDROP_MAX) {
			names[uint32(v.Value)] = n
		}
	}
	return names, nil
})

// kernelDropName names a kdrop_counters slot.
func kernelDropName(names map[uint32]string, slot uint32) string {
	if slot == uint32(bpfKdropKDROP_OTHER) {
		return KernelDropOther
	}
	if n, ok := names[slot]; ok {
		return n
	}
	return fmt.Sprintf("REASON_%d", slot)
}

// fillKdropHubble writes the Hubble reason of every kernel reason the
// running kernel names.
func fillKdropHubble(m *ebpf.Map) error {
	names, err := kdropNames()
	if err != nil {
		return err
	}
	for v, n := range names {
		if h, ok := hubbleDropReasons[n]; ok {
			if err := m.Put(v, h); err != nil {
				return fmt.Errorf("kdrop_hubble %s: %w", n, err)
			}
		}
	}
	return nil
}

// netnsInum is the inode of the calling thread's network namespace.
func netnsInum() (uint32, error) {
	fi, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		return 0, fmt.Errorf("network namespace: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("network namespace: no inode")
	}
	return uint32(st.Ino), nil
}

// attachKernelDrops attaches kfree_skb_drop to the kfree_skb tracepoint.
func attachKernelDrops(prog *ebpf.Program) (link.Link, error) {
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attach tp_btf/kfree_skb: %w", err)
	}
	return l, nil
}

// KernelDropsMissed is how many times the kernel skipped kfree_skb_drop
// (the program's recursion misses): a drop on a CPU where the program was
// already running, e.g. a softirq's drop interrupting the program on a
// drop in process context (tp_btf programs do not nest). Such a drop is
// neither counted by reason nor reported; flowbus's own policy drops among
// them are still records of the tcx programs. Zero when the program is not
// attached.
func (c *Collector) KernelDropsMissed() (uint64, error) {
	if c.kdrop == nil {
		return 0, nil
	}
	st, err := c.objs.KfreeSkbDrop.Stats()
	if err != nil {
		return 0, fmt.Errorf("kfree_skb_drop stats: %w", err)
	}
	return st.RecursionMisses, nil
}

// KernelDrops reads the kernel drops of pod traffic by kernel reason
// ("NO_SOCKET"), summed over CPUs; reasons never seen are left out.
func (c *Collector) KernelDrops() (map[string]uint64, error) {
	names, err := kdropNames()
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	var per []uint64
	for slot := uint32(0); slot < uint32(bpfKdropKDROP_SLOTS); slot++ {
		if err := c.objs.KdropCounters.Lookup(slot, &per); err != nil {
			return nil, fmt.Errorf("read kdrop_counters[%d]: %w", slot, err)
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		if n > 0 {
			out[kernelDropName(names, slot)] += n
		}
	}
	return out, nil
}
