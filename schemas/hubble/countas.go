package hubble

import (
	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flowbus/flowbus/schemas"
)

// Hubble reports a connection at every point its packets cross: a same-node
// connection at the sender's from-endpoint and at the receiver's
// to-endpoint, a cross-node one also at to-stack/to-overlay and
// from-overlay, a denied one as a policy verdict and as a drop, and each
// direction of it, replies included, as events of their own (with Cilium's
// monitor aggregation, at least the packets that open and close it). Summed
// as they come, Hubble's events would count each connection several times.
// CountAs applies flowbus's count-once rule to them (ARCHITECTURE.md,
// "Counting each connection once"), deciding from the event alone, so that
// every agent and every restart decides alike.

// CountAs returns what a Hubble event read by FromProto or DecodeFlow adds
// to sums; servedByFlowbus says whether it carried flowbus's extension
// (ServedByFlowbus; DecodeFlow reports it):
//
//   - an event served by a flowbus agent or relay keeps the count_as its
//     agent gave it (the extension carried it; f.CountAs holds it);
//   - an event with no event type (hand-written or exported without one)
//     counts as a flow, as each record of a source that sees each flow once;
//   - a drop event (type drop) counts as a flow where the drop happened;
//   - an L7 event counts when it is the response (it holds the request's
//     method and URL, the status and the latency); the request counts nothing;
//   - a trace event that is a reply counts nothing;
//   - a trace event at to-endpoint (the receiving pod's interface) counts;
//     one at from-endpoint (the sending pod's) counts only when the
//     destination is not a cluster endpoint (the host, the world, a remote
//     node, CIDR identities: there is no to-endpoint event), since
//     otherwise the receiver's event carries the connection; a counting TCP
//     event counts as a flow when it opens the connection (SYN without ACK)
//     and as traffic otherwise (later packets of a connection counted when
//     it opened);
//   - every other event (trace events at other points, policy verdicts,
//     socket traces, captures, debug and agent events) counts nothing.
func CountAs(f *schemas.Flow, servedByFlowbus bool) schemas.CountAs {
	if servedByFlowbus {
		return f.CountAs
	}
	switch f.EventType {
	case 0:
		return schemas.CountFlow
	case MsgTypeDrop:
		return schemas.CountFlow
	case MsgTypeAccessLog:
		if f.L7.Type == flowpb.L7FlowType_RESPONSE {
			return schemas.CountFlow
		}
		return schemas.CountNone
	case MsgTypeTrace:
	default:
		return schemas.CountNone
	}
	if f.IsReply == schemas.True {
		return schemas.CountNone
	}
	switch observationPoint(f) {
	case flowpb.TraceObservationPoint_TO_ENDPOINT:
	case flowpb.TraceObservationPoint_FROM_ENDPOINT:
		if IsClusterEndpoint(f.Dst.Identity) {
			return schemas.CountNone
		}
	default:
		return schemas.CountNone
	}
	if f.L4Protocol == 6 && (f.TCPFlags&schemas.FlagSYN == 0 || f.TCPFlags&schemas.FlagACK != 0) {
		return schemas.CountTraffic
	}
	return schemas.CountFlow
}

// ServedByFlowbus reports whether p carries flowbus's extension (a
// google.protobuf.Struct in Flow.extensions): a flowbus agent or relay
// served it, and its count_as was decided there.
func ServedByFlowbus(p *flowpb.Flow) bool {
	x := p.GetExtensions()
	return x != nil && x.MessageIs((*structpb.Struct)(nil))
}

// observationPoint is the event's trace observation point, from its trace
// sub-type when Hubble did not fill trace_observation_point (before Cilium 1.11).
func observationPoint(f *schemas.Flow) flowpb.TraceObservationPoint {
	if f.ObservationPoint != flowpb.TraceObservationPoint_UNKNOWN_POINT {
		return f.ObservationPoint
	}
	switch f.EventSubType {
	case TraceToLxc:
		return flowpb.TraceObservationPoint_TO_ENDPOINT
	case TraceFromLxc:
		return flowpb.TraceObservationPoint_FROM_ENDPOINT
	}
	return flowpb.TraceObservationPoint_UNKNOWN_POINT
}

// Cilium's identity ranges (pkg/identity): reserved identities below 100,
// well-known identities of cluster components (kube-dns, CoreDNS, the
// operator; 100–115), cluster-scoped identities of label sets from 256 (the
// cluster ID in bits 16–23 under Cluster Mesh), node-local identities
// (CIDR, FQDN selectors) from 2^24.
const (
	MinWellKnownIdentity = 100
	EndWellKnownIdentity = 116 // first identity after the well-known ones
	MinClusterIdentity   = 256
	MinLocalIdentity     = 1 << 24
)

// IsClusterEndpoint reports whether an identity is that of a Cilium
// endpoint, which has its own to-endpoint observation point: a pod's
// (cluster-scoped or well-known), cilium-health's, or an endpoint still
// being initialised. The host, remote nodes, the world, unmanaged pods, the
// API server, Cilium's ingress and node-local (CIDR) identities are not.
func IsClusterEndpoint(id uint32) bool {
	return id == IdentityHealth || id == IdentityInit || (id >= MinWellKnownIdentity && id < EndWellKnownIdentity) ||
		(id >= MinClusterIdentity && id < MinLocalIdentity)
}
