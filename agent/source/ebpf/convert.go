//go:build linux

package ebpf

import (
	"net/netip"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/endpoints"
	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// ephemeralPortMin is the start of Linux's default ephemeral port range
// (net.ipv4.ip_local_port_range): a port below it facing one at or above it
// is most likely the server's, when nothing better is known.
const ephemeralPortMin = 32768

// toFlow converts a kernel event into a flow record. eps may be nil.
//
// The programs sit on the host side of pod interfaces, so a flow whose
// initiator's packets pass tc ingress was opened by the pod behind the
// interface: the record is that endpoint's, as the sender (Direction
// EGRESS, FROM_ENDPOINT); otherwise it is the receiver's (INGRESS,
// TO_ENDPOINT). Records are oriented from the initiator: IsReply is false,
// or unknown when the initiator is only a guess (countAs and doc.go give the
// rules).
func toFlow(ev *bpf.Event, node string, eps *endpoints.File, f *schemas.Flow) {
	e := *ev
	known := orient(&e, eps)
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
	case e.Kind == bpf.EventPacket || e.Kind == bpf.EventInsertFailed:
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
	f.CountAs = countAs(&e, f.Verdict, eps)
	if eps == nil {
		return
	}
	if p, ok := eps.PodByIP(e.Src); ok {
		f.Src = p.Endpoint()
	}
	if p, ok := eps.PodByIP(e.Dst); ok {
		f.Dst = p.Endpoint()
	}
	// An address the file does not know (a NATed or secondary address) is
	// still the pod behind the interface on that pod's side of the flow.
	if p, ok := eps.PodByIfIndex(e.IfIndex); ok {
		if e.Ingress && f.Src.PodName == "" {
			f.Src = p.Endpoint()
		} else if !e.Ingress && f.Dst.PodName == "" {
			f.Dst = p.Endpoint()
		}
	}
	if proto := protoName(e.Protocol); proto != "" {
		if s, ok := eps.ServiceByBackend(e.Dst, e.DstPort, proto); ok {
			f.DstService = schemas.Service{Namespace: s.Namespace, Name: s.Name}
		}
	}
}

// countAs applies the count-once rule (doc.go) to one record of a
// connection observed at a pod's interface:
//   - a drop counts where it happened;
//   - the sender's record does not count when the receiver is an endpoint
//     (a pod of the endpoints file, on any node): the receiver's own
//     record carries the connection, with what actually arrived;
//   - otherwise the record counts: as flows, or as traffic only when an
//     earlier record of the connection was counted (Continued), when the
//     interface did not see the connection open (Midstream: the agent
//     started, or lost track of an idle connection, after it opened), or
//     when it is a packet alone (a full map, naive mode).
func countAs(e *bpf.Event, verdict flowpb.Verdict, eps *endpoints.File) schemas.CountAs {
	if verdict != flowpb.Verdict_DROPPED && e.Ingress && eps != nil {
		if _, endpoint := eps.PodByIP(e.Dst); endpoint {
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
// the endpoints file; failing that, a port below the ephemeral range facing
// one in it (a guess: the initiator is then reported as unknown).
func orient(e *bpf.Event, eps *endpoints.File) (known bool) {
	if !e.Midstream {
		return true
	}
	flip := false
	srcSrv, dstSrv := isBackend(eps, e.Src, e.SrcPort, e.Protocol), isBackend(eps, e.Dst, e.DstPort, e.Protocol)
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

func isBackend(eps *endpoints.File, ip netip.Addr, port uint16, proto uint8) bool {
	if eps == nil {
		return false
	}
	_, ok := eps.ServiceByBackend(ip, port, protoName(proto))
	return ok
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	}
	return ""
}
