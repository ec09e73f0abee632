//go:build linux

package ebpf

import (
	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// ephemeralPortMin is the start of Linux's default ephemeral port range
// (net.ipv4.ip_local_port_range): a port below it facing one at or above it
// is most likely the server's, when nothing better is known.
const ephemeralPortMin = 32768

// toFlow converts a kernel event into a flow record. v is the view of the
// cluster (nil: none yet, nothing is enriched) and names the policies
// behind a policy id (nil: none).
//
// The programs sit on the host side of pod interfaces, so a flow whose
// initiator's packets pass tc ingress was opened by the pod behind the
// interface: the record is that endpoint's, as the sender (Direction
// EGRESS, FROM_ENDPOINT); otherwise it is the receiver's (INGRESS,
// TO_ENDPOINT). Records are oriented from the initiator: IsReply is false,
// or unknown when the initiator is only a guess (countAs and doc.go give the
// rules).
func toFlow(ev *bpf.Event, node string, v *view, names func(uint32) []string, f *schemas.Flow) {
	e := *ev
	known := orient(&e, v)
	*f = schemas.Flow{
		TimeNs:      e.LastSeenNs,
		NodeName:    node,
		Verdict:     flowpb.Verdict_FORWARDED,
		EventType:   hubble.MsgTypeTrace,
		IsReply:     schemas.False,
		SrcIP:       e.Src,
		DstIP:       e.Dst,
		SrcPort:     e.SrcPort,
		DstPort:     e.DstPort,
		L4Protocol:  e.Protocol,
		TCPFlags:    schemas.TCPFlags(e.TCPFlags),
		BytesFwd:    e.BytesFwd,
		BytesRev:    e.BytesRev,
		PacketsFwd:  e.PacketsFwd,
		PacketsRev:  e.PacketsRev,
		FirstSeenNs: e.FirstSeenNs,
		LastSeenNs:  e.LastSeenNs,
		Count:       1,
		LatencyNs:   e.HandshakeNs,
		IfIndex:     e.IfIndex,
		IfName:      e.IfName,
	}
	switch {
	case e.Kind == bpf.EventPacket || e.Kind == bpf.EventInsertFailed || e.Kind == bpf.EventKernelDrop:
		// One packet, not a connection: its own reply flag.
		if e.IsReply {
			f.IsReply = schemas.True
		}
	case !known:
		f.IsReply = schemas.Unknown
	}
	switch e.IPVersion {
	case 4:
		f.IPVersion = flowpb.IPVersion_IPv4
	case 6:
		f.IPVersion = flowpb.IPVersion_IPv6
	}
	if e.Protocol == 1 || e.Protocol == 58 {
		// The kernel keys echo flows by identifier in the port fields;
		// a flow record carries ICMP type and code instead.
		f.SrcPort, f.DstPort = 0, 0
		f.ICMPType, f.ICMPCode = e.ICMPType, e.ICMPCode
	}
	if e.Ingress {
		f.Direction = flowpb.TrafficDirection_EGRESS
		f.ObservationPoint, f.EventSubType = flowpb.TraceObservationPoint_FROM_ENDPOINT, hubble.TraceFromLxc
	} else {
		f.Direction = flowpb.TrafficDirection_INGRESS
		f.ObservationPoint, f.EventSubType = flowpb.TraceObservationPoint_TO_ENDPOINT, hubble.TraceToLxc
	}
	if e.Verdict == bpf.VerdictDropped {
		// A drop is Hubble's drop event: type 1, its sub-type the drop
		// reason, which the hubble CLI prints ("Policy denied").
		f.Verdict = flowpb.Verdict_DROPPED
		f.DropReason = flowpb.DropReason(e.DropReason)
		f.EventType, f.EventSubType = hubble.MsgTypeDrop, int32(e.DropReason)
	}
	f.CountAs = countAs(&e, f.Verdict, v)
	if names != nil {
		if pols := names(e.PolicyID); len(pols) > 0 {
			switch {
			case e.Ingress && f.Verdict == flowpb.Verdict_DROPPED:
				f.EgressDeniedBy = pols
			case e.Ingress:
				f.EgressAllowedBy = pols
			case f.Verdict == flowpb.Verdict_DROPPED:
				f.IngressDeniedBy = pols
			default:
				f.IngressAllowedBy = pols
			}
		}
	}
	if v == nil {
		return
	}
	if p, ok := v.pod(e.Src); ok {
		f.Src = *p
	}
	if p, ok := v.pod(e.Dst); ok {
		f.Dst = *p
	}
	// An address the view does not know (a NATed or secondary address) is
	// still the pod behind the interface on that pod's side of the flow;
	// the other side, if no pod, is what the kernel's ipcache said.
	if p, ok := v.podBehind(e.IfIndex); ok {
		if e.Ingress && f.Src.PodName == "" {
			f.Src = *p
		} else if !e.Ingress && f.Dst.PodName == "" {
			f.Dst = *p
		}
	}
	if e.Ingress && f.Dst.PodName == "" {
		f.Dst = v.peer(e.PeerIdentity)
	} else if !e.Ingress && f.Src.PodName == "" {
		f.Src = v.peer(e.PeerIdentity)
	}
	if s, ok := v.service(e.Dst, e.DstPort, e.Protocol); ok && (e.Protocol == 6 || e.Protocol == 17 || e.Protocol == 132) {
		f.DstService = s
	}
}

// countAs applies the count-once rule (doc.go) to one record of a
// connection observed at a pod's interface:
//   - a drop counts where it happened;
//   - the sender's record does not count when the receiver is an endpoint
//     (a pod of the cluster view, on any node): the receiver's own
//     record carries the connection, with what actually arrived;
//   - otherwise the record counts: as flows, or as traffic only when an
//     earlier record of the connection was counted (Continued), when the
//     interface did not see the connection open (Midstream: the agent
//     started, or lost track of an idle connection, after it opened), or
//     when it is a packet alone (a full map, naive mode).
func countAs(e *bpf.Event, verdict flowpb.Verdict, v *view) schemas.CountAs {
	if e.Kind == bpf.EventKernelDrop {
		// A packet the kernel dropped after the tcx programs counted it in
		// its flow's record on this interface: the record says what became
		// of it, and counts nothing again (bpf/doc.go, "Kernel drops").
		return schemas.CountNone
	}
	if verdict != flowpb.Verdict_DROPPED && e.Ingress && v != nil {
		if _, endpoint := v.pod(e.Dst); endpoint {
			return schemas.CountNone
		}
	}
	if e.Continued || e.Midstream || e.Kind == bpf.EventPacket || e.Kind == bpf.EventInsertFailed {
		return schemas.CountTraffic
	}
	return schemas.CountFlow
}

// orient turns a mid-stream TCP flow around when its first packet came from
// the server, and reports whether the initiator is known. The server side
// of a mid-stream flow is the (address, port) that is a service backend in
// the cluster view; failing that, a port below the ephemeral range facing
// one in it (a guess: the initiator is then reported as unknown).
func orient(e *bpf.Event, v *view) (known bool) {
	if !e.Midstream {
		return true
	}
	flip := false
	_, srcSrv := v.service(e.Src, e.SrcPort, e.Protocol)
	_, dstSrv := v.service(e.Dst, e.DstPort, e.Protocol)
	switch {
	case srcSrv != dstSrv:
		known, flip = true, srcSrv
	default:
		flip = e.SrcPort < ephemeralPortMin && e.DstPort >= ephemeralPortMin
	}
	if flip {
		e.Src, e.Dst = e.Dst, e.Src
		e.SrcPort, e.DstPort = e.DstPort, e.SrcPort
		e.BytesFwd, e.BytesRev = e.BytesRev, e.BytesFwd
		e.PacketsFwd, e.PacketsRev = e.PacketsRev, e.PacketsFwd
		e.Ingress = !e.Ingress
	}
	return known
}
