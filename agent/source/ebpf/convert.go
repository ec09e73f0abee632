package ebpf

import (
	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/deploy/lab/endpoints"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// toFlow converts a kernel event into a flow record. eps may be nil.
//
// The programs sit on the host side of pod interfaces, so a flow whose
// initiator's packets pass tc ingress was opened by the pod behind the
// interface: it leaves the endpoint (Direction EGRESS, FROM_ENDPOINT);
// otherwise it enters it (INGRESS, TO_ENDPOINT).
func toFlow(ev *bpf.Event, node string, eps *endpoints.File, f *schemas.Flow) {
	*f = schemas.Flow{
		TimeNs:      ev.LastSeenNs,
		NodeName:    node,
		Verdict:     flowpb.Verdict_FORWARDED,
		EventType:   hubble.MsgTypeTrace,
		IsReply:     schemas.False,
		SrcIP:       ev.Src,
		DstIP:       ev.Dst,
		SrcPort:     ev.SrcPort,
		DstPort:     ev.DstPort,
		L4Protocol:  ev.Protocol,
		TCPFlags:    schemas.TCPFlags(ev.TCPFlags),
		BytesFwd:    ev.BytesFwd,
		BytesRev:    ev.BytesRev,
		PacketsFwd:  ev.PacketsFwd,
		PacketsRev:  ev.PacketsRev,
		FirstSeenNs: ev.FirstSeenNs,
		LastSeenNs:  ev.LastSeenNs,
		Count:       1,
		LatencyNs:   ev.HandshakeNs,
		IfIndex:     ev.IfIndex,
		IfName:      ev.IfName,
	}
	if ev.IsReply {
		f.IsReply = schemas.True
	}
	switch ev.IPVersion {
	case 4:
		f.IPVersion = flowpb.IPVersion_IPv4
	case 6:
		f.IPVersion = flowpb.IPVersion_IPv6
	}
	if ev.Protocol == 1 || ev.Protocol == 58 {
		// The kernel keys echo flows by identifier in the port fields;
		// a flow record carries ICMP type and code instead.
		f.SrcPort, f.DstPort = 0, 0
		f.ICMPType, f.ICMPCode = ev.ICMPType, ev.ICMPCode
	}
	if ev.Ingress {
		f.Direction = flowpb.TrafficDirection_EGRESS
		f.ObservationPoint, f.EventSubType = flowpb.TraceObservationPoint_FROM_ENDPOINT, hubble.TraceFromLxc
	} else {
		f.Direction = flowpb.TrafficDirection_INGRESS
		f.ObservationPoint, f.EventSubType = flowpb.TraceObservationPoint_TO_ENDPOINT, hubble.TraceToLxc
	}
	if eps == nil {
		return
	}
	if p, ok := eps.PodByIP(ev.Src); ok {
		f.Src = p.Endpoint()
	}
	if p, ok := eps.PodByIP(ev.Dst); ok {
		f.Dst = p.Endpoint()
	}
	// An address the file does not know (a NATed or secondary address) is
	// still the pod behind the interface on that pod's side of the flow.
	if p, ok := eps.PodByIfIndex(ev.IfIndex); ok {
		if ev.Ingress && f.Src.PodName == "" {
			f.Src = p.Endpoint()
		} else if !ev.Ingress && f.Dst.PodName == "" {
			f.Dst = p.Endpoint()
		}
	}
	var proto string
	switch ev.Protocol {
	case 6:
		proto = "TCP"
	case 17:
		proto = "UDP"
	}
	if proto != "" {
		if s, ok := eps.ServiceByBackend(ev.Dst, ev.DstPort, proto); ok {
			f.DstService = schemas.Service{Namespace: s.Namespace, Name: s.Name}
		}
	}
}
