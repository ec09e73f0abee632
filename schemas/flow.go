package schemas

import (
	"net/netip"
	"strconv"

	flowpb "github.com/cilium/cilium/api/v1/flow"
)

// SchemaVersion names the Arrow schema of Flow on the bus. It travels in the
// `flowbus-schema` header and in the Arrow schema metadata; a consumer that
// sees another value must refuse the message (flowcodec.ErrUnknownSchema).
const SchemaVersion = "flow.v1"

//go:generate go run ../internal/gencols

// Flow is one flow record: one observed flow, or, after aggregation, several
// flows with the same key folded into one (Count > 1).
//
// Flow is also the one declaration of the columns of flow.v1: every field
// is one column, in field order, named by its flowv1 tag ("name,kind";
// the fields of Endpoint, Service and L7 become columns named with their
// field's prefix). The hubble tag names the Hubble flow.Flow field that
// carries it, and the field's comment is the column's documentation.
// `go generate ./schemas` (internal/gencols) writes from it the Arrow
// columns and the codec's per-column code (internal/flowcodec), FlowRow
// and the column table of schemas/README.md. Adding a column is adding a
// field here and its mapping in schemas/hubble, then go generate.
//
// Kinds: ts (int64 Unix ns, null when 0), utf8, dict16 and dict32
// (dictionary strings with int16 or int32 indices), enum8 and enum16 (an
// enumeration stored as dictionary strings of its names), int32, uint8,
// uint16, uint32, uint64, bool (a Tristate, null when Unknown), ip (16
// bytes, null when invalid), list16 and list32 (lists of dictionary
// strings, null when nil), hist (a Histogram). Option pqdict makes a
// dict32 column dictionary-encoded in Parquet too; a struct field's
// option cached makes the encoder look its strings up together.
//
// Enumerations reuse Hubble's protobuf enum types so their numbers and names
// are Hubble's own (DropReason 133 is POLICY_DENIED everywhere).
// Times are Unix nanoseconds (UTC); zero means unknown.
// A Flow is a value: copying it copies the slices' headers, not their
// contents, so producers must not modify slices after handing a Flow on.
type Flow struct {
	TimeNs   int64  `flowv1:"time,ts" hubble:"time"`               // when the flow (the last folded flow) was observed
	UUID     string `flowv1:"uuid,utf8" hubble:"uuid"`             // Hubble flow UUID; empty for aggregated records
	NodeName string `flowv1:"node_name,dict16" hubble:"node_name"` // node that observed it

	Verdict          flowpb.Verdict               `flowv1:"verdict,enum8" hubble:"verdict"`                                 // datapath verdict: FORWARDED, DROPPED, ERROR, AUDIT, …
	DropReason       flowpb.DropReason            `flowv1:"drop_reason,enum16" hubble:"drop_reason_desc,drop_reason"`       // why it was dropped (POLICY_DENIED, CT_…); DROP_REASON_UNKNOWN unless Verdict is DROPPED
	Direction        flowpb.TrafficDirection      `flowv1:"traffic_direction,enum8" hubble:"traffic_direction"`             // INGRESS, EGRESS or TRAFFIC_DIRECTION_UNKNOWN
	ObservationPoint flowpb.TraceObservationPoint `flowv1:"trace_observation_point,enum8" hubble:"trace_observation_point"` // TO_ENDPOINT, FROM_ENDPOINT, …
	EventType        int32                        `flowv1:"event_type,int32" hubble:"event_type.type"`                      // Cilium monitor event type: 1 drop, 4 trace, 129 L7, …
	EventSubType     int32                        `flowv1:"event_sub_type,int32" hubble:"event_type.sub_type"`              // Cilium monitor event sub-type
	IsReply          Tristate                     `flowv1:"is_reply,bool" hubble:"is_reply,reply"`                          // reply direction of the connection

	IPVersion  flowpb.IPVersion `flowv1:"ip_version,enum8" hubble:"IP.ipVersion"`                                                            // IPv4, IPv6 or IP_NOT_USED
	SrcIP      netip.Addr       `flowv1:"src_ip,ip" hubble:"IP.source"`                                                                      // source address; IPv4 as ::ffff:a.b.c.d on the bus
	DstIP      netip.Addr       `flowv1:"dst_ip,ip" hubble:"IP.destination"`                                                                 // destination address; IPv4 as ::ffff:a.b.c.d on the bus
	SrcPort    uint16           `flowv1:"src_port,uint16" hubble:"l4.TCP.source_port,l4.UDP.source_port,l4.SCTP.source_port"`                // source port (TCP, UDP, SCTP)
	DstPort    uint16           `flowv1:"dst_port,uint16" hubble:"l4.TCP.destination_port,l4.UDP.destination_port,l4.SCTP.destination_port"` // destination port (TCP, UDP, SCTP)
	L4Protocol uint8            `flowv1:"l4_protocol,uint8" hubble:"l4,ext:flowbus.l4_protocol"`                                             // IANA protocol number: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP; 0 unknown; Hubble: which l4 member is set
	TCPFlags   TCPFlags         `flowv1:"tcp_flags,uint16" hubble:"l4.TCP.flags"`                                                            // OR of every TCP flag seen: FIN 1, SYN 2, RST 4, PSH 8, ACK 16, URG 32, ECE 64, CWR 128, NS 256
	ICMPType   uint8            `flowv1:"icmp_type,uint8" hubble:"l4.ICMPv4.type,l4.ICMPv6.type"`                                            // ICMP or ICMPv6 type
	ICMPCode   uint8            `flowv1:"icmp_code,uint8" hubble:"l4.ICMPv4.code,l4.ICMPv6.code"`                                            // ICMP or ICMPv6 code

	Src Endpoint `flowv1:"src_,cached" hubble:"source"`      // source endpoint
	Dst Endpoint `flowv1:"dst_,cached" hubble:"destination"` // destination endpoint

	SrcService Service  `flowv1:"src_service_" hubble:"source_service"`        // source service
	DstService Service  `flowv1:"dst_service_" hubble:"destination_service"`   // destination service
	SrcNames   []string `flowv1:"src_names,list32" hubble:"source_names"`      // DNS names the source IP was resolved from
	DstNames   []string `flowv1:"dst_names,list32" hubble:"destination_names"` // DNS names the destination IP was resolved from

	// Traffic counters. Fwd is source→destination, Rev is destination→source.
	BytesFwd   uint64 `flowv1:"bytes_fwd,uint64" hubble:"ext:flowbus.bytes_fwd"`     // bytes source→destination
	BytesRev   uint64 `flowv1:"bytes_rev,uint64" hubble:"ext:flowbus.bytes_rev"`     // bytes destination→source
	PacketsFwd uint64 `flowv1:"packets_fwd,uint64" hubble:"ext:flowbus.packets_fwd"` // packets source→destination
	PacketsRev uint64 `flowv1:"packets_rev,uint64" hubble:"ext:flowbus.packets_rev"` // packets destination→source

	FirstSeenNs int64  `flowv1:"first_seen,ts" hubble:"ext:flowbus.first_seen"` // first packet of the (folded) flow(s)
	LastSeenNs  int64  `flowv1:"last_seen,ts" hubble:"ext:flowbus.last_seen"`   // last packet of the (folded) flow(s)
	Count       uint64 `flowv1:"count,uint64" hubble:"ext:flowbus.count"`       // flows folded into this record; 1 for a raw flow (0 is read as 1)

	// The L7 request latency, or for L4 flows the TCP handshake
	// (SYN→SYN-ACK) latency, in ns; 0 means not measured. For aggregated
	// records the maximum; the distribution is in LatencyHist.
	LatencyNs   uint64    `flowv1:"latency_ns,uint64" hubble:"l7.latency_ns,ext:flowbus.latency_ns"`
	LatencyHist Histogram `flowv1:"latency_hist,hist" hubble:"ext:flowbus.latency_hist"` // latency distribution of the folded flows (histogram.go)

	IfIndex uint32 `flowv1:"if_index,uint32" hubble:"interface.index"` // interface index
	IfName  string `flowv1:"if_name,dict16" hubble:"interface.name"`   // interface name

	L7 L7 `flowv1:"l7_" hubble:"l7"`

	// What the record adds to sums of flows and traffic under the
	// count-once rule: flow (its Count flows and their traffic; right for a
	// source that sees each flow once), traffic (only bytes and packets: a
	// connection counted earlier), none (nothing: another observation
	// point's record carries the connection)
	CountAs CountAs `flowv1:"count_as,enum8" hubble:"ext:flowbus.count_as"`

	// The policies that decided the verdict, each "Kind:namespace/name"
	// (the namespace empty for a clusterwide policy), e.g.
	// "NetworkPolicy:payments/allow-checkout": those that allowed the flow
	// at the destination's ingress and the source's egress, and those whose
	// default deny (they select the endpoint and none allows) or deny rule
	// dropped it.
	IngressAllowedBy []string `flowv1:"ingress_allowed_by,list16" hubble:"ingress_allowed_by"` // policies that allowed it at the destination's ingress
	EgressAllowedBy  []string `flowv1:"egress_allowed_by,list16" hubble:"egress_allowed_by"`   // policies that allowed it at the source's egress
	IngressDeniedBy  []string `flowv1:"ingress_denied_by,list16" hubble:"ingress_denied_by"`   // policies that denied it at the destination's ingress
	EgressDeniedBy   []string `flowv1:"egress_denied_by,list16" hubble:"egress_denied_by"`     // policies that denied it at the source's egress

	// PolicyMatchType is what kind of rule decided a policy verdict event
	// (EventType 5), in Cilium's numbering (monitor api.PolicyMatchType):
	// 0 none (no rule: a default deny), 1 L3-Only (a peer, any port), 2
	// L3-L4, 3 L4-Only (a port, any peer), 4 all, 5 L3-Proto, 6 Proto-Only.
	PolicyMatchType uint8 `flowv1:"policy_match_type,uint8" hubble:"policy_match_type"` // the rule kind behind a policy verdict event
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

// CountAsNames are the names of the CountAs values: the values of the
// count_as column and of the flowbus.count_as extension. Read only.
var CountAsNames = namesOf[CountAs](countAsNames[:])

// String returns "flow", "traffic" or "none" (the column's values), or the
// number of an unknown value.
func (c CountAs) String() string {
	if int(c) < len(countAsNames) {
		return countAsNames[c]
	}
	return strconv.Itoa(int(c))
}

// ParseCountAs returns the CountAs named s ("flow", "traffic" or "none").
func ParseCountAs(s string) (CountAs, bool) {
	for c, name := range countAsNames {
		if name == s {
			return CountAs(c), true
		}
	}
	return 0, false
}

// Flows reports whether the record's flows count.
func (c CountAs) Flows() bool { return c == CountFlow }

// Traffic reports whether the record's bytes and packets count.
func (c CountAs) Traffic() bool { return c == CountFlow || c == CountTraffic }

// Endpoint is one side of a flow (columns src_… and dst_…).
type Endpoint struct {
	ID           uint32   `flowv1:"id,uint32" hubble:".ID"`                           // Cilium endpoint ID, 0 if not local
	Identity     uint32   `flowv1:"identity,uint32" hubble:".identity"`               // security identity
	ClusterName  string   `flowv1:"cluster_name,dict16" hubble:".cluster_name"`       // cluster
	Namespace    string   `flowv1:"namespace,dict16" hubble:".namespace"`             // Kubernetes namespace
	PodName      string   `flowv1:"pod_name,dict32" hubble:".pod_name"`               // pod
	Workload     string   `flowv1:"workload,dict16" hubble:".workloads[0].name"`      // owning workload name (Deployment, StatefulSet, ...)
	WorkloadKind string   `flowv1:"workload_kind,dict16" hubble:".workloads[0].kind"` // its kind
	Labels       []string `flowv1:"labels,list32" hubble:".labels"`                   // identity labels, Hubble form "k8s:app=checkout-api", sorted
}

// Service is a Kubernetes service (columns src_service_… and dst_service_…).
type Service struct {
	Namespace string `flowv1:"namespace,dict16" hubble:".namespace"` // namespace
	Name      string `flowv1:"name,dict16" hubble:".name"`           // name
}

// L7 is the application-layer part of a flow (columns l7_…); Protocol says
// which block is set.
type L7 struct {
	Type     flowpb.L7FlowType `flowv1:"type,enum8" hubble:".type"`       // L7 record type: REQUEST, RESPONSE, SAMPLE; UNKNOWN_L7_TYPE if no L7
	Protocol L7Protocol        `flowv1:"protocol,enum8" hubble:"l7,Type"` // which L7 block is set: "", http, dns, kafka (Hubble: the l7 member set; Type L7 if any, else L3_L4)

	HTTPMethod   string   `flowv1:"http_method,dict16" hubble:".http.method"`     // HTTP method
	HTTPURL      string   `flowv1:"http_url,dict32" hubble:".http.url"`           // HTTP URL
	HTTPStatus   uint32   `flowv1:"http_status,uint32" hubble:".http.code"`       // HTTP status code
	HTTPProtocol string   `flowv1:"http_protocol,dict16" hubble:".http.protocol"` // "HTTP/1.1", "HTTP/2"
	HTTPHeaders  []string `flowv1:"http_headers,list32" hubble:".http.headers"`   // "Key: value", in order (Hubble: key and value split at the first ": ")

	DNSQuery             string   `flowv1:"dns_query,dict32,pqdict" hubble:".dns.query"`                    // DNS query name
	DNSRCode             uint32   `flowv1:"dns_rcode,uint32" hubble:".dns.rcode"`                           // DNS response code
	DNSQTypes            []string `flowv1:"dns_qtypes,list16" hubble:".dns.qtypes"`                         // query types: A, AAAA, …
	DNSRRTypes           []string `flowv1:"dns_rrtypes,list16" hubble:".dns.rrtypes"`                       // answer record types
	DNSIPs               []string `flowv1:"dns_ips,list32" hubble:".dns.ips"`                               // answer IPs
	DNSTTL               uint32   `flowv1:"dns_ttl,uint32" hubble:".dns.ttl"`                               // answer TTL, s
	DNSCNAMEs            []string `flowv1:"dns_cnames,list32" hubble:".dns.cnames"`                         // answer CNAMEs
	DNSObservationSource string   `flowv1:"dns_observation_source,dict16" hubble:".dns.observation_source"` // who observed the DNS message

	KafkaAPIKey        string `flowv1:"kafka_api_key,dict16" hubble:".kafka.api_key"`                // Kafka API key
	KafkaAPIVersion    int32  `flowv1:"kafka_api_version,int32" hubble:".kafka.api_version"`         // Kafka API version
	KafkaCorrelationID int32  `flowv1:"kafka_correlation_id,int32" hubble:".kafka.correlation_id"`   // Kafka correlation ID
	KafkaTopic         string `flowv1:"kafka_topic,dict32,pqdict" hubble:".kafka.topic"`             // Kafka topic
	KafkaErrorCode     int32  `flowv1:"kafka_error_code,int32" hubble:".kafka.error_code"`           // Kafka error code
	KafkaClientID      string `flowv1:"kafka_client_id,dict32" hubble:"ext:flowbus.kafka_client_id"` // Kafka client ID
}

// L7Protocol says which L7 block of a Flow is meaningful.
type L7Protocol uint8

const (
	L7None L7Protocol = iota
	L7HTTP
	L7DNS
	L7Kafka
)

var l7ProtocolNames = [...]string{L7None: "", L7HTTP: "http", L7DNS: "dns", L7Kafka: "kafka"}

// L7ProtocolNames are the names of the L7Protocol values: the values of
// the l7_protocol column. Read only.
var L7ProtocolNames = namesOf[L7Protocol](l7ProtocolNames[:])

// String returns "", "http", "dns" or "kafka"; "" for an unknown value.
func (p L7Protocol) String() string {
	if int(p) < len(l7ProtocolNames) {
		return l7ProtocolNames[p]
	}
	return ""
}

// namesOf returns the names of an enumeration numbered from 0 as a map.
func namesOf[T ~uint8](names []string) map[T]string {
	m := make(map[T]string, len(names))
	for v, s := range names {
		m[T(v)] = s
	}
	return m
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
