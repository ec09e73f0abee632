package observer

import (
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
)

func TestSummaryUsesHubbleWording(t *testing.T) {
	fs := fixtureFlows()
	nxdomain := fs[4]
	nxdomain.L7.DNSRCode, nxdomain.L7.DNSIPs = 3, nil
	echoReply := fs[7]
	echoReply.ICMPType = 129
	unreach := schemas.Flow{L4Protocol: 1, ICMPType: 3, ICMPCode: 1}
	cases := []struct {
		name string
		flow schemas.Flow
		want string
	}{
		{"a TCP flow lists its flags", fs[1], "TCP Flags: SYN, ACK"},
		{"a DNS request", fs[3], "DNS Query api.example.com. A"},
		{"a DNS answer", fs[4], `DNS Answer "93.184.216.34" TTL: 30 (Proxy api.example.com. A)`},
		{"a DNS error answer", nxdomain, "DNS Answer RCode: Non-Existent Domain TTL: 30 (Proxy api.example.com. A)"},
		{"an HTTP request", fs[5], "HTTP/1.1 GET http://checkout-api.shop:8080/api/v1/cart?id=1"},
		{"an HTTP response with latency", fs[6], "HTTP/1.1 503 12ms (POST http://checkout-api.shop:8080/api/v1/pay)"},
		{"an ICMPv6 echo request", fs[7], "ICMPv6 EchoRequest"},
		{"an ICMPv6 echo reply", echoReply, "ICMPv6 EchoReply"},
		{"an ICMPv4 type with a code", unreach, "ICMPv4 DestinationUnreachable(Host)"},
		{"a Kafka request", fs[9], `Kafka produce v0 topic "orders" client "" error 0`},
		{"an ICMPv6 unknown code", schemas.Flow{L4Protocol: 58, ICMPType: 3, ICMPCode: 9}, "ICMPv6 TimeExceeded(Code: 9)"},
		{"an ICMP type gopacket does not know", schemas.Flow{L4Protocol: 1, ICMPType: 42, ICMPCode: 1}, "ICMPv4 42(1)"},
		{"a UDP flow", schemas.Flow{L4Protocol: 17}, "UDP"},
		{"an L7 flow of unknown type", schemas.Flow{L7: schemas.L7{Protocol: schemas.L7HTTP, Type: flowpb.L7FlowType_SAMPLE}}, ""},
	}
	for _, tc := range cases {
		t.Run("summarises "+tc.name, func(t *testing.T) {
			if got := Summary(&tc.flow); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
