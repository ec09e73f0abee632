package hubble

// Cilium's and Hubble's vocabulary, declared once for all of flowbus: the
// numbers Cilium's datapath and agent put in a flow (monitor message types,
// trace observation points, drop reasons, reserved identities, policy match
// types) and the names Hubble gives them and other fields when it prints,
// summarises or counts a flow. Each table is a copy of cilium v1.20's (or of
// gopacket's, which Hubble uses for ICMP and DNS names), and a test in
// internal/observer checks every entry against that source.

import (
	"fmt"
	"strconv"

	flowpb "github.com/cilium/cilium/api/v1/flow"
)

// Cilium monitor message types (pkg/monitor/api): the type of a Hubble
// flow's CiliumEventType and the values of `hubble observe --type`.
const (
	MsgTypeDrop          = 1
	MsgTypeDebug         = 2
	MsgTypeCapture       = 3
	MsgTypeTrace         = 4
	MsgTypePolicyVerdict = 5
	MsgTypeTraceSock     = 7
	MsgTypeAccessLog     = 129 // L7 flows (a proxy access log record)
	MsgTypeAgent         = 130
)

var messageTypes = map[string]int32{
	"drop": MsgTypeDrop, "debug": MsgTypeDebug, "capture": MsgTypeCapture, "trace": MsgTypeTrace,
	"l7": MsgTypeAccessLog, "agent": MsgTypeAgent, "policy-verdict": MsgTypePolicyVerdict, "trace-sock": MsgTypeTraceSock,
}

// MessageType returns the message type `hubble observe --type` names name.
func MessageType(name string) (int32, bool) {
	t, ok := messageTypes[name]
	return t, ok
}

// Trace observation points (pkg/monitor/api): the sub-type of a trace event
// (MsgTypeTrace), where in the datapath the packet was seen.
const (
	TraceToLxc = iota
	TraceToProxy
	TraceToHost
	TraceToStack
	TraceToOverlay
	TraceFromLxc
	TraceFromProxy
	TraceFromHost
	TraceFromStack
	TraceFromOverlay
	TraceFromNetwork
	TraceToNetwork
	TraceFromCrypto
	TraceToCrypto
)

var traceObservationPoints = [...]string{
	TraceToLxc: "to-endpoint", TraceToProxy: "to-proxy", TraceToHost: "to-host", TraceToStack: "to-stack",
	TraceToOverlay: "to-overlay", TraceFromLxc: "from-endpoint", TraceFromProxy: "from-proxy",
	TraceFromHost: "from-host", TraceFromStack: "from-stack", TraceFromOverlay: "from-overlay",
	TraceFromNetwork: "from-network", TraceToNetwork: "to-network", TraceFromCrypto: "from-crypto",
	TraceToCrypto: "to-crypto",
}

// TraceObservationPoint returns the name of a trace sub-type ("to-endpoint")
// and whether it is known.
func TraceObservationPoint(sub int32) (string, bool) {
	if sub < 0 || int(sub) >= len(traceObservationPoints) {
		return "", false
	}
	return traceObservationPoints[sub], true
}

// TraceObservationPointName is the name of a trace sub-type as Hubble
// prints it (api.TraceObservationPoint): the name, or the number of its low
// byte.
func TraceObservationPointName(sub int32) string {
	if n, ok := TraceObservationPoint(int32(uint8(sub))); ok {
		return n
	}
	return strconv.Itoa(int(uint8(sub)))
}

// TraceObservationPointByName returns the trace sub-type named name
// ("from-endpoint" → TraceFromLxc).
func TraceObservationPointByName(name string) (int32, bool) {
	for i, n := range traceObservationPoints {
		if n == name {
			return int32(i), true
		}
	}
	return 0, false
}

// agentEventSubTypes are the sub-types of agent events (MsgTypeAgent) that
// `hubble observe --type agent:<name>` accepts.
var agentEventSubTypes = map[string]int32{
	"unspecified": 0, "message": 1, "agent-started": 2, "endpoint-regenerate-success": 3,
	"endpoint-regenerate-failure": 4, "policy-updated": 5, "policy-deleted": 6, "endpoint-created": 7,
	"endpoint-deleted": 8, "ipcache-upserted": 9, "ipcache-deleted": 10,
}

// AgentEventSubType returns the agent event sub-type `hubble observe --type
// agent:<name>` names name.
func AgentEventSubType(name string) (int32, bool) {
	t, ok := agentEventSubTypes[name]
	return t, ok
}

// dropReasons are Cilium's texts for the drop reason codes
// (pkg/monitor/api/drop.go), which Hubble prints as the type of a drop event.
// The codes are those of flowpb.DropReason, whose enum names are another
// vocabulary (POLICY_DENIED for "Policy denied").
var dropReasons = map[uint8]string{
	0: "Success", 2: "Invalid packet", 3: "Interface", 4: "Interface Decrypted",
	5: "LB, sock cgroup: No backend slot entry found", 6: "LB, sock cgroup: No backend entry found",
	7: "LB, sock cgroup: Reverse entry update failed", 8: "LB, sock cgroup: Reverse entry stale",
	9: "Fragmented packet", 10: "Fragmented packet entry update failed", 11: "Missed tail call to custom program",
	12: "Interface Decrypting", 13: "Interface Encrypting", 14: "LB: sock cgroup: Reverse entry delete succeeded",
	15: "MTU error message", 130: "Invalid source mac", 131: "Invalid destination mac", 132: "Invalid source ip",
	133: "Policy denied", 134: "Invalid packet", 135: "CT: Truncated or invalid header", 136: "Fragmentation needed",
	137: "CT: Unknown L4 protocol", 138: "CT: Can't create entry from packet", 139: "Unsupported L3 protocol",
	140: "Missed tail call", 141: "Error writing to packet", 142: "Unknown L4 protocol", 143: "Unknown ICMPv4 code",
	144: "Unknown ICMPv4 type", 145: "Unknown ICMPv6 code", 146: "Unknown ICMPv6 type",
	147: "Error retrieving tunnel key", 148: "Error retrieving tunnel options", 149: "Invalid Geneve option",
	150: "Unknown L3 target address", 151: "Stale or unroutable IP", 152: "No matching local container found",
	153: "Error while correcting L3 checksum", 154: "Error while correcting L4 checksum", 155: "CT: Map insertion failed",
	156: "Invalid IPv6 extension header", 157: "IP fragmentation not supported", 158: "Service backend not found",
	160: "No tunnel/encapsulation endpoint (datapath BUG!)", 161: "NAT 46/64 not enabled",
	162: "Reached EDT rate-limiting drop horizon", 163: "Unknown connection tracking state",
	164: "Local host is unreachable", 165: "No configuration available to perform policy decision",
	166: "Unsupported L2 protocol", 167: "No mapping for NAT masquerade", 168: "Unsupported protocol for NAT masquerade",
	169: "FIB lookup failed", 170: "Encapsulation traffic is prohibited", 171: "Invalid identity", 172: "Unknown sender",
	173: "NAT not needed", 174: "Is a ClusterIP", 175: "First logical datagram fragment not found",
	176: "Forbidden ICMPv6 message", 177: "Denied by LB src range check", 178: "Socket lookup failed",
	179: "Socket assign failed", 180: "Proxy redirection not supported for protocol", 181: "Policy denied by denylist",
	182: "VLAN traffic disallowed by VLAN filter", 183: "Incorrect VNI from VTEP", 184: "Failed to update or lookup TC buffer",
	185: "No SID was found for the IP address", 186: "SRv6 state was removed during tail call",
	187: "L3 translation from IPv4 to IPv6 failed (NAT46)", 188: "L3 translation from IPv6 to IPv4 failed (NAT64)",
	189: "Authentication required", 190: "No conntrack map found", 191: "No nat map found", 192: "Invalid ClusterID",
	193: "Unsupported packet protocol for DSR encapsulation", 194: "No egress gateway found", 195: "Traffic is unencrypted",
	196: "TTL exceeded", 197: "No node ID found", 198: "Rate limited", 199: "IGMP handled", 200: "IGMP subscribed",
	201: "Multicast handled", 202: "Host datapath not ready", 203: "Endpoint policy program not available",
	204: "No Egress IP configured", 205: "Punt to proxy", 206: "No device",
	207: "First logical datagram fragment not found from world",
}

// DropReasonText is Cilium's text for a drop reason code as Hubble prints
// it (api.DropReason): "Policy denied" for 133, "<code>, 0" for an unknown
// code.
func DropReasonText(code uint8) string {
	if s, ok := dropReasons[code]; ok {
		return s
	}
	return fmt.Sprintf("%d, 0", code)
}

// PolicyMatchTypeName names a policy verdict's match type as Hubble prints
// it (api.PolicyMatchType.String).
func PolicyMatchTypeName(m uint32) string {
	switch m {
	case 0:
		return "none"
	case 1:
		return "L3-Only"
	case 2:
		return "L3-L4"
	case 3:
		return "L4-Only"
	case 4:
		return "all"
	case 5:
		return "L3-Proto"
	case 6:
		return "Proto-Only"
	}
	return "unknown"
}

// SocketTranslationPointName names a trace-sock event's sub-type as Hubble
// prints it.
func SocketTranslationPointName(sub int32) string {
	switch flowpb.SocketTranslationPoint(sub) {
	case flowpb.SocketTranslationPoint_SOCK_XLATE_POINT_POST_DIRECTION_FWD:
		return "post-xlate-fwd"
	case flowpb.SocketTranslationPoint_SOCK_XLATE_POINT_POST_DIRECTION_REV:
		return "post-xlate-rev"
	case flowpb.SocketTranslationPoint_SOCK_XLATE_POINT_PRE_DIRECTION_FWD:
		return "pre-xlate-fwd"
	case flowpb.SocketTranslationPoint_SOCK_XLATE_POINT_PRE_DIRECTION_REV:
		return "pre-xlate-rev"
	}
	return flowpb.SocketTranslationPoint_SOCK_XLATE_POINT_UNKNOWN.String()
}

// Cilium's reserved security identities (pkg/identity).
const (
	IdentityUnknown              = 0
	IdentityHost                 = 1
	IdentityWorld                = 2
	IdentityUnmanaged            = 3
	IdentityHealth               = 4
	IdentityInit                 = 5
	IdentityRemoteNode           = 6
	IdentityKubeAPIServer        = 7
	IdentityIngress              = 8
	IdentityWorldIPv4            = 9
	IdentityWorldIPv6            = 10
	IdentityAggregateCluster     = 11
	IdentityAggregateClusterMesh = 12
	IdentityAggregateWorld       = 13
	IdentityAggregateRemoteNode  = 14
)

var reservedIdentities = [...]string{
	IdentityUnknown: "unknown", IdentityHost: "host", IdentityWorld: "world", IdentityUnmanaged: "unmanaged",
	IdentityHealth: "health", IdentityInit: "init", IdentityRemoteNode: "remote-node",
	IdentityKubeAPIServer: "kube-apiserver", IdentityIngress: "ingress", IdentityWorldIPv4: "world-ipv4",
	IdentityWorldIPv6: "world-ipv6", IdentityAggregateCluster: "aggregate-cluster",
	IdentityAggregateClusterMesh: "aggregate-cluster-mesh", IdentityAggregateWorld: "aggregate-world",
	IdentityAggregateRemoteNode: "aggregate-remote-node",
}

// ReservedIdentityName returns the name of a reserved identity ("world")
// and whether id is one.
func ReservedIdentityName(id uint32) (string, bool) {
	if id >= uint32(len(reservedIdentities)) {
		return "", false
	}
	return reservedIdentities[id], true
}

// ReservedIdentity returns the reserved identity named name, as `hubble
// observe --identity` resolves it ("unknown" is not a name it accepts).
func ReservedIdentity(name string) (uint32, bool) {
	for id, n := range reservedIdentities {
		if n == name && id != IdentityUnknown {
			return uint32(id), true
		}
	}
	return 0, false
}

// LabelReservedWorld is the label of the reserved world identity.
const LabelReservedWorld = "reserved:world"

// DefaultClusterName is Cilium's default cluster name, which Hubble's node
// name filter assumes for a node name without a cluster part.
const DefaultClusterName = "default"

// DNSObservationSourceProxy is the observation source of a DNS flow seen by
// Cilium's DNS proxy ("Proxy" in Hubble's summary, "Query" otherwise).
const DNSObservationSourceProxy = "proxy"

// dnsRCodes are gopacket's DNSResponseCode names, which Hubble's parser
// puts in a DNS response's summary ("RCode: Non-Existent Domain").
var dnsRCodes = map[uint8]string{
	0: "No Error", 1: "Format Error", 2: "Server Failure", 3: "Non-Existent Domain", 4: "Not Implemented",
	5: "Query Refused", 6: "Name Exists when it should not", 7: "RR Set Exists when it should not",
	8: "RR Set that should exist does not", 9: "Server Not Authoritative for zone", 10: "Name not contained in zone",
	16: "Bad OPT Version", 17: "Key not recognized", 18: "Signature out of time window", 19: "Bad TKEY Mode",
	20: "Duplicate key name", 21: "Algorithm not supported", 22: "Bad Truncation", 23: "Bad Cookie",
}

// DNSRCodeName names an rcode as Hubble's DNS summary does (gopacket's
// DNSResponseCode of its low byte; "Unknown" for a code it does not know).
func DNSRCodeName(rcode uint32) string {
	if s, ok := dnsRCodes[uint8(rcode)]; ok {
		return s
	}
	return "Unknown"
}

// dnsRCodeLabels are the rcode label values of Hubble's DNS metrics
// (pkg/hubble/metrics/dns/rcode.go), a table of its own.
var dnsRCodeLabels = map[uint32]string{
	0: "No Error", 1: "Format Error", 2: "Server Failure", 3: "Non-Existent Domain", 4: "Not Implemented",
	5: "Query Refused", 6: "Name Exists when it should not", 7: "RR Set Exists when it should not",
	8: "RR Set that should exist does not", 9: "Not Authorized", 10: "Name not contained in zone",
	11: "DSO-TYPE Not Implemented", 16: "Bad OPT Version", 17: "Key not recognized",
	18: "Signature out of time window", 19: "Bad TKEY Mode", 20: "Duplicate key name",
	21: "Algorithm not supported", 22: "Bad Truncation", 23: "Bad/missing Server Cookie",
}

// DNSRCodeLabelPolicyDenied is the rcode label value of Hubble's DNS
// metrics for a dropped DNS flow.
const DNSRCodeLabelPolicyDenied = "Policy denied"

// DNSRCodeLabel is the rcode label value of Hubble's DNS metrics ("" for a
// code Hubble does not name).
func DNSRCodeLabel(rcode uint32) string { return dnsRCodeLabels[rcode] }

// ICMPTypeName names an ICMP type and code as gopacket's
// ICMPv4TypeCode/ICMPv6TypeCode String methods do, which Hubble uses in
// summaries ("ICMPv4 EchoRequest") and in hubble_icmp_total{type}:
// "EchoRequest", "DestinationUnreachable(Port)", "TimeExceeded(Code: 9)",
// and "type(code)" numbers for types gopacket does not know.
func ICMPTypeName(v6 bool, typ, code uint8) string {
	table := icmpv4Types
	if v6 {
		table = icmpv6Types
	}
	info, ok := table[typ]
	if !ok {
		return fmt.Sprintf("%d(%d)", typ, code)
	}
	if info.codes == nil {
		if code == 0 {
			return info.name
		}
		return fmt.Sprintf("%s(Code: %d)", info.name, code)
	}
	c, ok := info.codes[code]
	if !ok {
		return fmt.Sprintf("%s(Code: %d)", info.name, code)
	}
	return info.name + "(" + c + ")"
}

type icmpType struct {
	name  string
	codes map[uint8]string
}

var icmpv4Types = map[uint8]icmpType{
	0: {name: "EchoReply"},
	3: {"DestinationUnreachable", map[uint8]string{0: "Net", 1: "Host", 2: "Protocol", 3: "Port", 4: "FragmentationNeeded",
		5: "SourceRoutingFailed", 6: "NetUnknown", 7: "HostUnknown", 8: "SourceIsolated", 9: "NetAdminProhibited",
		10: "HostAdminProhibited", 11: "NetTOS", 12: "HostTOS", 13: "CommAdminProhibited", 14: "HostPrecedence", 15: "PrecedenceCutoff"}},
	4:  {name: "SourceQuench"},
	5:  {"Redirect", map[uint8]string{0: "Net", 1: "Host", 2: "TOS+Net", 3: "TOS+Host"}},
	8:  {name: "EchoRequest"},
	9:  {name: "RouterAdvertisement"},
	10: {name: "RouterSolicitation"},
	11: {"TimeExceeded", map[uint8]string{0: "TTLExceeded", 1: "FragmentReassemblyTimeExceeded"}},
	12: {"ParameterProblem", map[uint8]string{0: "PointerIndicatesError", 1: "MissingOption", 2: "BadLength"}},
	13: {name: "TimestampRequest"},
	14: {name: "TimestampReply"},
	15: {name: "InfoRequest"},
	16: {name: "InfoReply"},
	17: {name: "AddressMaskRequest"},
	18: {name: "AddressMaskReply"},
}

var icmpv6Types = map[uint8]icmpType{
	1: {"DestinationUnreachable", map[uint8]string{0: "NoRouteToDst", 1: "AdminProhibited", 2: "BeyondScopeOfSrc",
		3: "AddressUnreachable", 4: "PortUnreachable", 5: "SrcAddressFailedPolicy", 6: "RejectRouteToDst"}},
	2:   {name: "PacketTooBig"},
	3:   {"TimeExceeded", map[uint8]string{0: "HopLimitExceeded", 1: "FragmentReassemblyTimeExceeded"}},
	4:   {"ParameterProblem", map[uint8]string{0: "ErroneousHeaderField", 1: "UnrecognizedNextHeader", 2: "UnrecognizedIPv6Option"}},
	128: {name: "EchoRequest"},
	129: {name: "EchoReply"},
	133: {name: "RouterSolicitation"},
	134: {name: "RouterAdvertisement"},
	135: {name: "NeighborSolicitation"},
	136: {name: "NeighborAdvertisement"},
	137: {name: "Redirect"},
}
