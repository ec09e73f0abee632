package observe

import (
	"fmt"
	"strings"

	"github.com/flowbus/flowbus/schemas"

	flowpb "github.com/cilium/cilium/api/v1/flow"
)

// Summary is the human summary Hubble's parsers put in Flow.summary (a
// deprecated field that the hubble CLI still prints as the SUMMARY column),
// in Hubble's wording: "TCP Flags: SYN, ACK", "HTTP/1.1 503 12ms (GET url)",
// "DNS Query name. A", "DNS Answer "1.2.3.4" TTL: 30 (Proxy name. A)".
// schemas.ToProto does not fill it (it is derived, not carried), so the
// server does, and the relay passes it through.
func Summary(f *schemas.Flow) string {
	l7 := &f.L7
	switch l7.Protocol {
	case schemas.L7HTTP:
		req := l7.HTTPMethod + " " + l7.HTTPURL
		switch l7.Type {
		case flowpb.L7FlowType_REQUEST:
			return l7.HTTPProtocol + " " + req
		case flowpb.L7FlowType_RESPONSE:
			return fmt.Sprintf("%s %d %dms (%s)", l7.HTTPProtocol, l7.HTTPStatus, f.LatencyNs/1e6, req)
		}
		return ""
	case schemas.L7DNS:
		qtypes := strings.Join(l7.DNSQTypes, ",")
		switch l7.Type {
		case flowpb.L7FlowType_REQUEST:
			return fmt.Sprintf("DNS Query %s %s", l7.DNSQuery, qtypes)
		case flowpb.L7FlowType_RESPONSE:
			var answer string
			if l7.DNSRCode != 0 {
				answer = "RCode: " + dnsRCodeName(l7.DNSRCode)
			} else {
				var parts []string
				if len(l7.DNSIPs) > 0 {
					parts = append(parts, fmt.Sprintf("%q", strings.Join(l7.DNSIPs, ",")))
				}
				if len(l7.DNSCNAMEs) > 0 {
					parts = append(parts, fmt.Sprintf("CNAMEs: %q", strings.Join(l7.DNSCNAMEs, ",")))
				}
				answer = strings.Join(parts, " ")
			}
			source := "Query"
			if l7.DNSObservationSource == "proxy" {
				source = "Proxy"
			}
			return fmt.Sprintf("DNS Answer %s TTL: %d (%s %s %s)", answer, l7.DNSTTL, source, l7.DNSQuery, qtypes)
		}
		return ""
	case schemas.L7Kafka:
		return fmt.Sprintf("Kafka %s v%d topic %q client %q error %d", l7.KafkaAPIKey, l7.KafkaAPIVersion, l7.KafkaTopic, l7.KafkaClientID, l7.KafkaErrorCode)
	}
	switch f.L4Protocol {
	case 6:
		var fl []string
		for _, x := range []struct {
			flag schemas.TCPFlags
			name string
		}{{schemas.FlagSYN, "SYN"}, {schemas.FlagACK, "ACK"}, {schemas.FlagRST, "RST"}, {schemas.FlagFIN, "FIN"},
			{schemas.FlagPSH, "PSH"}, {schemas.FlagURG, "URG"}, {schemas.FlagECE, "ECE"}, {schemas.FlagCWR, "CWR"}, {schemas.FlagNS, "NS"}} {
			if f.TCPFlags&x.flag != 0 {
				fl = append(fl, x.name)
			}
		}
		return "TCP Flags: " + strings.Join(fl, ", ")
	case 17:
		return "UDP"
	case 132:
		return "SCTP"
	case 1:
		return "ICMPv4 " + icmpName(icmpv4Names, f.ICMPType, f.ICMPCode)
	case 58:
		return "ICMPv6 " + icmpName(icmpv6Names, f.ICMPType, f.ICMPCode)
	}
	return ""
}

var icmpv4Names = map[uint8]string{0: "EchoReply", 3: "DestinationUnreachable", 5: "Redirect", 8: "EchoRequest", 11: "TimeExceeded", 12: "ParameterProblem"}
var icmpv6Names = map[uint8]string{1: "DestinationUnreachable", 2: "PacketTooBig", 3: "TimeExceeded", 4: "ParameterProblem",
	128: "EchoRequest", 129: "EchoReply", 133: "RouterSolicitation", 134: "RouterAdvertisement", 135: "NeighborSolicitation", 136: "NeighborAdvertisement"}

// icmpName names an ICMP type as gopacket's TypeCode.String does for the
// common types ("EchoRequest"); others print as "Type(code)" numbers.
func icmpName(names map[uint8]string, typ, code uint8) string {
	n, ok := names[typ]
	if !ok {
		return fmt.Sprintf("%d(%d)", typ, code)
	}
	if code != 0 {
		return fmt.Sprintf("%s(%d)", n, code)
	}
	return n
}

var dnsRCodes = map[uint32]string{1: "Format Error", 2: "Server Failure", 3: "Non-Existent Domain", 4: "Not Implemented", 5: "Query Refused"}

func dnsRCodeName(rc uint32) string {
	if n, ok := dnsRCodes[rc]; ok {
		return n
	}
	return fmt.Sprintf("Unknown(%d)", rc)
}
