package observer

import "fmt"

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
	5:  {"Redirect", map[uint8]string{0: "Network", 1: "Host", 2: "TOS+Network", 3: "TOS+Host"}},
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
	130: {name: "MulticastListenerQuery"},
	131: {name: "MulticastListenerReport"},
	132: {name: "MulticastListenerDone"},
	133: {name: "RouterSolicitation"},
	134: {name: "RouterAdvertisement"},
	135: {name: "NeighborSolicitation"},
	136: {name: "NeighborAdvertisement"},
	137: {name: "Redirect"},
}
