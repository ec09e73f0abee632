package observer

import (
	"fmt"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Summary is the human summary Hubble's parsers put in Flow.summary (a
// deprecated field that the hubble CLI still prints as the SUMMARY column),
// in Hubble's wording: "TCP Flags: SYN, ACK", "HTTP/1.1 503 12ms (GET url)",
// "DNS Query name. A", "DNS Answer "1.2.3.4" TTL: 30 (Proxy name. A)".
// hubble.ToProto does not fill it (it is derived, not carried), so the
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
				answer = "RCode: " + hubble.DNSRCodeName(l7.DNSRCode)
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
			if l7.DNSObservationSource == hubble.DNSObservationSourceProxy {
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
		return "ICMPv4 " + hubble.ICMPTypeName(false, f.ICMPType, f.ICMPCode)
	case 58:
		return "ICMPv6 " + hubble.ICMPTypeName(true, f.ICMPType, f.ICMPCode)
	}
	return ""
}
