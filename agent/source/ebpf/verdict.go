//go:build linux

package ebpf

import (
	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// policyVerdict returns the policy verdict event (Hubble's event type 5) of
// a connection's first record f at an endpoint whose policy decided it (ev
// carries a policy id: a rule allowed or denied it, or the endpoint's
// default deny dropped it), as Cilium sends one for the packet that opens a
// connection at each end whose policy applies: the verdict, the direction
// (EGRESS at the sender's interface, INGRESS at the receiver's), the
// policies that allowed or denied it and the kind of rule that matched
// (PolicyMatchType, from the policy id's top bits: datapath.go). It carries
// the opening packet's time and flags and no counts, and counts nothing
// (CountNone): the drop and trace records beside it carry the traffic. It
// comes with the record it repeats: at once for a drop, at the
// connection's end or first active timeout for a forwarded connection (the
// eBPF source reports flows then). Later records of the connection
// (Continued), mid-stream ones and single packets have none.
func policyVerdict(f *schemas.Flow, ev *bpf.Event) (schemas.Flow, bool) {
	if ev.PolicyID == 0 || ev.Continued || ev.Midstream {
		return schemas.Flow{}, false
	}
	switch ev.Kind {
	case bpf.EventPacket, bpf.EventInsertFailed, bpf.EventKernelDrop, bpf.EventFlowStart:
		return schemas.Flow{}, false
	}
	pv := *f
	pv.EventType, pv.EventSubType = hubble.MsgTypePolicyVerdict, 0
	pv.ObservationPoint = flowpb.TraceObservationPoint_UNKNOWN_POINT
	pv.PolicyMatchType = policyMatch(ev.PolicyID)
	pv.CountAs = schemas.CountNone
	pv.IsReply = schemas.False
	pv.TimeNs, pv.LastSeenNs = f.FirstSeenNs, f.FirstSeenNs
	pv.BytesFwd, pv.BytesRev, pv.PacketsFwd, pv.PacketsRev = 0, 0, 0, 0
	pv.LatencyNs = 0
	if f.L4Protocol == 6 {
		pv.TCPFlags = f.TCPFlags & schemas.FlagSYN // the packet that opened it
	}
	return pv, true
}
