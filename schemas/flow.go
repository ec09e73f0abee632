package schemas

import (
	"net/netip"
	"strconv"

	flowpb "github.com/cilium/cilium/api/v1/flow"
)

// SchemaVersion names the Arrow schema of Flow on the bus. It travels in the
// `flowbus-schema` header and in the Arrow schema metadata; a consumer that
// sees another value must refuse the message (ErrUnknownSchema).
const SchemaVersion = "flow.v1"

// Flow is one flow record: one observed flow, or, after aggregation, several
// flows with the same key folded into one (Count > 1). It is flat so that it
// maps column for column onto the Arrow schema flow.v1; every field has a
// column, documented in schemas/README.md.
//
// Enumerations reuse Hubble's protobuf enum types so their numbers and names
// are Hubble's own (DropReason 133 is POLICY_DENIED everywhere).
// Times are Unix nanoseconds (UTC); zero means unknown.
// A Flow is a value: copying it copies the slices' headers, not their
// contents, so producers must not modify slices after handing a Flow on.
type Flow struct {
	TimeNs   int64  // when the flow (or the last folded flow) was observed
	UUID     string // Hubble flow UUID; empty for aggregated records
	NodeName string // node that observed it

	Verdict          flowpb.Verdict
	DropReason       flowpb.DropReason // DROP_REASON_UNKNOWN unless Verdict is DROPPED
	Direction        flowpb.TrafficDirection
	ObservationPoint flowpb.TraceObservationPoint
	EventType        int32 // Hubble CiliumEventType.type (4 = trace, 1 = drop, 129 = L7)
	EventSubType     int32 // Hubble CiliumEventType.sub_type
	IsReply          Tristate
	// CountAs says what the record adds to sums of flows and traffic under
	// the count-once rule (CountFlow for a source that sees each flow once).
	CountAs CountAs

	IPVersion  flowpb.IPVersion
	SrcIP      netip.Addr
	DstIP      netip.Addr
	SrcPort    uint16
	DstPort    uint16
	L4Protocol uint8    // IANA protocol number: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP; 0 unknown
	TCPFlags   TCPFlags // OR of every flag seen
	ICMPType   uint8
	ICMPCode   uint8

	Src Endpoint
	Dst Endpoint

	SrcService Service
	DstService Service
	SrcNames   []string // DNS names the source IP was resolved from
	DstNames   []string // DNS names the destination IP was resolved from

	// Traffic counters. Fwd is source→destination, Rev is destination→source.
	BytesFwd   uint64
	BytesRev   uint64
	PacketsFwd uint64
	PacketsRev uint64

	FirstSeenNs int64  // first packet of the (folded) flow(s)
	LastSeenNs  int64  // last packet of the (folded) flow(s)
	Count       uint64 // flows folded into this record; 1 for a raw flow (0 is read as 1)

	// LatencyNs is the L7 request latency, or for L4 flows the TCP handshake
	// (SYN→SYN-ACK) latency; 0 means not measured. For aggregated records it
	// is the maximum; the distribution is in LatencyHist.
	LatencyNs   uint64
	LatencyHist Histogram

	IfIndex uint32
	IfName  string

	L7 L7
}

// Tristate is Hubble's google.protobuf.BoolValue: unset, false or true.
type Tristate uint8

const (
	Unknown Tristate = iota
	False
	True
)

// CountAs says what a record adds to everything that sums flows and traffic
// (rollups, reports, SIEM counts), so that each connection counts once
// although several observation points report it. The zero value, CountFlow,
// is right for a source that reports each flow once.
type CountAs uint8

const (
	// CountFlow: the record's Count flows and their bytes and packets count.
	CountFlow CountAs = iota
	// CountTraffic: only the bytes and packets count: the record continues
	// connections an earlier record counted (a long-lived connection's
	// periodic update, packets after its end, or its traffic after the
	// agent lost track of it).
	CountTraffic
	// CountNone: nothing counts: another observation point's record
	// carries these connections. The record is still published and served.
	CountNone
)

var countAsNames = [...]string{CountFlow: "flow", CountTraffic: "traffic", CountNone: "none"}

// String returns "flow", "traffic" or "none" (the column's values), or the
// number of an unknown value.
func (c CountAs) String() string {
	if int(c) < len(countAsNames) {
		return countAsNames[c]
	}
	return strconv.Itoa(int(c))
}

// Flows reports whether the record's flows count.
func (c CountAs) Flows() bool { return c == CountFlow }

// Traffic reports whether the record's bytes and packets count.
func (c CountAs) Traffic() bool { return c == CountFlow || c == CountTraffic }

// Endpoint is one side of a flow.
type Endpoint struct {
	ID           uint32 // Cilium endpoint ID, 0 if not local
	Identity     uint32 // security identity
	ClusterName  string
	Namespace    string
	PodName      string
	Workload     string   // owning workload name (Deployment, StatefulSet, ...)
	WorkloadKind string   // its kind
	Labels       []string // Hubble form "k8s:app=checkout-api", sorted
}

// Service is a Kubernetes service.
type Service struct {
	Namespace string
	Name      string
}

// L7 is the application-layer part of a flow; Protocol says which block is set.
type L7 struct {
	Type     flowpb.L7FlowType // REQUEST, RESPONSE, SAMPLE; UNKNOWN_L7_TYPE if no L7
	Protocol L7Protocol

	HTTPMethod   string
	HTTPURL      string
	HTTPStatus   uint32
	HTTPProtocol string   // "HTTP/1.1", "HTTP/2"
	HTTPHeaders  []string // "Key: value", in order

	DNSQuery             string
	DNSRCode             uint32
	DNSQTypes            []string
	DNSRRTypes           []string
	DNSIPs               []string
	DNSTTL               uint32
	DNSCNAMEs            []string
	DNSObservationSource string

	KafkaAPIKey        string
	KafkaAPIVersion    int32
	KafkaCorrelationID int32
	KafkaTopic         string
	KafkaErrorCode     int32
	KafkaClientID      string
}

// L7Protocol says which L7 block of a Flow is meaningful.
type L7Protocol uint8

const (
	L7None L7Protocol = iota
	L7HTTP
	L7DNS
	L7Kafka
)

func (p L7Protocol) String() string {
	switch p {
	case L7HTTP:
		return "http"
	case L7DNS:
		return "dns"
	case L7Kafka:
		return "kafka"
	}
	return ""
}

// TCPFlags is a bit set of the TCP flags seen, in header bit order.
type TCPFlags uint16

const (
	FlagFIN TCPFlags = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
	FlagECE
	FlagCWR
	FlagNS
)

// FlowCount returns Count, reading the zero value as one flow.
func (f *Flow) FlowCount() uint64 {
	if f.Count == 0 {
		return 1
	}
	return f.Count
}

// PartitionKey is the bus partition key of a flow: the destination workload
// as "namespace/name", the Kafka record key. Flows toward a destination that is
// not a known workload use the destination pod name, then the destination IP,
// so that every flow toward one endpoint still lands in one partition.
func (f *Flow) PartitionKey() string {
	switch {
	case f.Dst.Workload != "":
		return f.Dst.Namespace + "/" + f.Dst.Workload
	case f.Dst.PodName != "":
		return f.Dst.Namespace + "/" + f.Dst.PodName
	case f.DstIP.IsValid():
		return "ip/" + f.DstIP.String()
	}
	return "unknown"
}
