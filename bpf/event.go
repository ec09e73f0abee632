//go:build linux

package bpf

import (
	"net/netip"
	"unsafe"
)

// EventKind says why an Event was produced.
type EventKind uint8

// Kernel event kinds (values of enum event_type), then the kinds the
// Collector's sweep produces from the flows map.
const (
	// EventFlowStart: a new flow entered the map. Counters cover its first packet.
	EventFlowStart EventKind = EventKind(bpfEventTypeEVENT_FLOW_START)
	// EventFlowEnd: FIN in both directions, then the last ACK.
	EventFlowEnd EventKind = EventKind(bpfEventTypeEVENT_FLOW_END)
	// EventFlowReset: a RST closed the flow. One per reset flow.
	EventFlowReset EventKind = EventKind(bpfEventTypeEVENT_FLOW_RESET)
	// EventInsertFailed: the flows map was full; the event carries one packet.
	EventInsertFailed EventKind = EventKind(bpfEventTypeEVENT_INSERT_FAILED)
	// EventPacket: one packet, in naive per-packet mode.
	EventPacket EventKind = EventKind(bpfEventTypeEVENT_PACKET)
	// EventFlowTail: packets of an ended flow after its end was reported
	// (late ACKs, retransmitted FINs, resets after the close); Continued is
	// set. The kernel sends it when a new connection takes the entry over,
	// the sweep when the entry is freed.
	EventFlowTail EventKind = EventKind(bpfEventTypeEVENT_FLOW_TAIL)
	// EventFlowDrop: the first packet of a flow that policy denies, dropped
	// and reported at once; its later packets come in its next records.
	EventFlowDrop EventKind = EventKind(bpfEventTypeEVENT_FLOW_DROP)
	// EventFlowVerdict: a policy change turned the flow's verdict; the
	// event carries the counts under the old verdict, the flow goes on.
	EventFlowVerdict EventKind = EventKind(bpfEventTypeEVENT_FLOW_VERDICT)
	// EventKernelDrop: the kernel dropped this packet of a pod interface
	// (the kfree_skb tracepoint): one packet, from its sender (Src), with
	// Verdict VerdictDropped and DropReason the Hubble reason its kernel
	// reason maps to (0 when none does; doc.go, "Kernel drops"). Ingress
	// says the pod behind the interface sent it.
	EventKernelDrop EventKind = EventKind(bpfEventTypeEVENT_KERNEL_DROP)
	// EventActiveTimeout: a flow alive for ActiveTimeout since its last
	// record; counters are those since that record; the flow stays tracked.
	EventActiveTimeout EventKind = 16 + iota
	// EventIdleTimeout: no packet for IdleTimeout; the flow is removed.
	EventIdleTimeout
	// EventRecovered: the flow ended but its end event was lost (ring buffer
	// full); the sweep reports it from the map instead.
	EventRecovered
	// EventFlush: Run is stopping and reports every flow still in the map.
	EventFlush
)

var kindNames = map[EventKind]string{
	EventFlowStart: "start", EventFlowEnd: "end", EventFlowReset: "reset",
	EventInsertFailed: "insert_failed", EventPacket: "packet", EventFlowTail: "tail",
	EventFlowDrop: "drop", EventFlowVerdict: "verdict", EventKernelDrop: "kernel_drop",
	EventActiveTimeout: "active_timeout", EventIdleTimeout: "idle_timeout",
	EventRecovered: "recovered", EventFlush: "flush",
}

func (k EventKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "unknown"
}

// Final reports whether the event closes its flow: no later record of the
// same flow follows (until a new connection reuses the tuple).
func (k EventKind) Final() bool {
	switch k {
	case EventFlowEnd, EventFlowReset, EventFlowTail, EventIdleTimeout, EventRecovered, EventFlush:
		return true
	}
	return false
}

// resets reports whether, after the event, the flow's counters in the
// kernel start again from zero: it closed the flow, or the kernel took the
// reported counters off the entry (a first drop, a verdict change).
func (k EventKind) resets() bool {
	return k.Final() || k == EventFlowDrop || k == EventFlowVerdict
}

// TCP flag bits of Event.TCPFlags (header bit order, as schemas.TCPFlags).
const (
	TCPFlagFIN uint16 = 1 << iota
	TCPFlagSYN
	TCPFlagRST
	TCPFlagPSH
	TCPFlagACK
	TCPFlagURG
	TCPFlagECE
	TCPFlagCWR
	TCPFlagNS
)

// Event is one flow observation, oriented from the flow's initiator (Src)
// to its responder (Dst). "Fwd" counters are initiator→responder.
//
// For EventPacket and EventInsertFailed the event is one packet: its counters
// are in the Fwd fields when IsReply is false, in the Rev fields otherwise.
type Event struct {
	Kind      EventKind
	IfIndex   uint32
	IfName    string // empty if the interface is no longer known
	IPVersion uint8  // 4 or 6
	Protocol  uint8  // IANA number
	Src, Dst  netip.Addr
	SrcPort   uint16 // for ICMP echo: the echo identifier
	DstPort   uint16
	// Ingress reports that the initiator's packets pass the interface's tc
	// ingress hook (on a pod's host-side veth: the pod opened the flow).
	Ingress bool
	// IsReply reports that the packet that caused the event came from the
	// responder (kernel events only).
	IsReply bool
	// Midstream reports a TCP flow whose entry a packet that opens nothing
	// (no SYN, no SYN-ACK) created: this interface did not see the
	// connection open, and Src is only the sender of the first packet seen.
	Midstream bool
	// Continued reports that an earlier event of this flow already reported
	// part of it (an active-timeout record, or its end for a tail): the
	// counters are those since, and the flow was counted before.
	Continued bool
	// TCPFlags is the OR of every flag seen in the flow; when Continued,
	// without the SYN, FIN and RST an earlier event already carried.
	TCPFlags    uint16
	ICMPType    uint8 // of the flow's first packet
	ICMPCode    uint8
	FirstSeenNs int64 // Unix ns
	LastSeenNs  int64 // Unix ns
	BytesFwd    uint64
	BytesRev    uint64
	PacketsFwd  uint64
	PacketsRev  uint64
	HandshakeNs uint64 // SYN → SYN-ACK seen here, 0 if not measured or Continued
	// Verdict is VerdictForwarded or VerdictDropped (by policy, DropReason
	// then says why); PolicyID names the policies that decided it (a key
	// of the table the policy's owner keeps; 0: no policy applied).
	Verdict    uint8
	DropReason uint8
	PolicyID   uint32
	// PeerIdentity is the security identity of the side that is not the pod
	// behind the interface, from the ipcache when the verdict was decided
	// (0 when no policy was ever loaded).
	PeerIdentity uint32
}

// tcpEventFlags are the flags a continued flow's events do not repeat.
const tcpEventFlags = TCPFlagSYN | TCPFlagFIN | TCPFlagRST

// eventSize is the size of a kernel ring buffer record.
const eventSize = int(unsafe.Sizeof(bpfFlowEvent{}))

// addrFrom converts a key address (IPv4-mapped for family 4).
func addrFrom(b *[16]uint8, family uint8) netip.Addr {
	a := netip.AddrFrom16(*b)
	if family == 4 {
		return a.Unmap()
	}
	return a
}

// fill sets ev from a key and stats, orienting it by the initiator.
// monoToUnix converts bpf_ktime_get_ns to Unix ns.
func (ev *Event) fill(kind EventKind, k *bpfFlowKey, st *bpfFlowStats, monoToUnix int64) {
	ev.Kind = kind
	ev.IfIndex = k.Ifindex
	ev.IPVersion = k.Family
	ev.Protocol = k.Proto
	lo, hi := addrFrom(&k.AddrLo, k.Family), addrFrom(&k.AddrHi, k.Family)
	if st.InitiatorLo != 0 {
		ev.Src, ev.Dst, ev.SrcPort, ev.DstPort = lo, hi, k.PortLo, k.PortHi
	} else {
		ev.Src, ev.Dst, ev.SrcPort, ev.DstPort = hi, lo, k.PortHi, k.PortLo
	}
	ev.Ingress = st.InitiatorIngress != 0
	ev.IsReply = false
	ev.Midstream = st.Flags&uint32(bpfFlowFlagFLOW_MIDSTREAM) != 0
	ev.Continued = kind == EventFlowTail || st.Flags&uint32(bpfFlowFlagFLOW_CONTINUED) != 0
	ev.TCPFlags = uint16(st.Flags & 0x1ff)
	ev.ICMPType = st.IcmpType
	ev.ICMPCode = st.IcmpCode
	ev.FirstSeenNs = int64(st.FirstSeenNs) + monoToUnix
	// last_seen comes from the jiffies clock (the start of the current tick),
	// which may lag first_seen by up to a tick.
	ev.LastSeenNs = int64(max(st.LastSeenNs, st.FirstSeenNs)) + monoToUnix
	ev.BytesFwd, ev.BytesRev = st.Bytes[0], st.Bytes[1]
	ev.PacketsFwd, ev.PacketsRev = st.Packets[0], st.Packets[1]
	ev.HandshakeNs = st.HandshakeNs
	ev.Verdict, ev.DropReason = st.Verdict, st.DropReason
	if ev.Verdict == 0 {
		ev.Verdict = uint8(bpfVerdictVERDICT_FORWARDED)
	}
	ev.PolicyID, ev.PeerIdentity = st.PolicyId, st.PeerIdentity
	if ev.Continued {
		// A tail: the end event carried the handshake and these flags.
		ev.TCPFlags &^= uint16(st.Flags>>uint32(bpfFlowFlagFLOW_REPORTED_FLAGS_SHIFT)) & tcpEventFlags
		ev.HandshakeNs = 0
	}
}

// decodeEvent decodes a kernel ring buffer record into ev, without
// allocating, and returns the record viewed in place (valid while raw is).
// It returns nil for a record of the wrong size or kind.
func decodeEvent(raw []byte, ev *Event, monoToUnix int64) *bpfFlowEvent {
	if len(raw) != eventSize {
		return nil
	}
	ke := (*bpfFlowEvent)(unsafe.Pointer(&raw[0]))
	if ke.Type < uint8(EventFlowStart) || ke.Type > uint8(EventKernelDrop) {
		return nil
	}
	ev.fill(EventKind(ke.Type), &ke.Key, &ke.Stats, monoToUnix)
	if ke.Type != uint8(EventPacket) {
		ev.IsReply = ke.IsReply != 0
	}
	return ke
}
