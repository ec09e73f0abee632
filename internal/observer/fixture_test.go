package observer

import (
	"net/netip"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
)

// baseTime is the time of the first fixture flow; flow i is i seconds later.
var baseTime = time.Date(2026, 11, 25, 21, 47, 0, 0, time.UTC)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

var (
	frontend = schemas.Endpoint{Identity: 1001, Namespace: "shop", PodName: "frontend-7d9f", Workload: "frontend", WorkloadKind: "Deployment",
		Labels: []string{"k8s:app=frontend", "k8s:io.kubernetes.pod.namespace=shop", "k8s:tier=web"}}
	checkout = schemas.Endpoint{Identity: 1002, Namespace: "shop", PodName: "checkout-api-5c8", Workload: "checkout-api", WorkloadKind: "Deployment",
		Labels: []string{"k8s:app=checkout-api", "k8s:io.kubernetes.pod.namespace=shop", "k8s:tier=api"}}
	redis = schemas.Endpoint{Identity: 2001, Namespace: "data", PodName: "redis-0", Workload: "redis", WorkloadKind: "StatefulSet",
		Labels: []string{"k8s:app=redis", "k8s:io.kubernetes.pod.namespace=data"}}
	coredns = schemas.Endpoint{Identity: 102, Namespace: "kube-system", PodName: "coredns-6f6b", Workload: "coredns", WorkloadKind: "Deployment",
		Labels: []string{"k8s:io.kubernetes.pod.namespace=kube-system", "k8s:k8s-app=kube-dns"}}
	pinger = schemas.Endpoint{Identity: 3001, Namespace: "default", PodName: "pinger", Labels: []string{"k8s:app=pinger"}}
	pingee = schemas.Endpoint{Identity: 3002, Namespace: "default", PodName: "pingee", Labels: []string{"k8s:app=pingee"}}
	world  = schemas.Endpoint{Identity: 2, Labels: []string{"reserved:world"}}
	kafka  = schemas.Endpoint{Identity: 1003, Namespace: "shop", PodName: "kafka-0", Workload: "kafka", WorkloadKind: "StatefulSet",
		Labels: []string{"k8s:app=kafka", "k8s:io.kubernetes.pod.namespace=shop"}}
)

// fixtureFlows returns the ten flows every filter test runs against, with
// UUIDs f01..f10 in time order.
func fixtureFlows() []schemas.Flow {
	at := func(i int) int64 { return baseTime.Add(time.Duration(i) * time.Second).UnixNano() }
	tcp := func(uuid string, i int, node string) schemas.Flow {
		return schemas.Flow{UUID: uuid, TimeNs: at(i), NodeName: node, Verdict: flowpb.Verdict_FORWARDED,
			EventType: msgTypeTrace, IPVersion: flowpb.IPVersion_IPv4, L4Protocol: 6, Count: 1}
	}
	var fs []schemas.Flow

	f := tcp("f01", 1, "node-a") // frontend → checkout SYN
	f.Direction, f.IsReply, f.ObservationPoint = flowpb.TrafficDirection_EGRESS, schemas.False, flowpb.TraceObservationPoint_TO_ENDPOINT
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags = ip("10.0.0.1"), ip("10.0.1.5"), 40000, 8080, schemas.FlagSYN
	f.Src, f.Dst, f.DstService = frontend, checkout, schemas.Service{Namespace: "shop", Name: "checkout"}
	f.IfIndex, f.IfName = 7, "lxc1"
	fs = append(fs, f)

	f = tcp("f02", 2, "node-a") // checkout → frontend SYN-ACK (reply)
	f.Direction, f.IsReply, f.EventSubType = flowpb.TrafficDirection_INGRESS, schemas.True, 5
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags = ip("10.0.1.5"), ip("10.0.0.1"), 8080, 40000, schemas.FlagSYN|schemas.FlagACK
	f.Src, f.Dst, f.SrcService = checkout, frontend, schemas.Service{Namespace: "shop", Name: "checkout"}
	f.IfIndex, f.IfName = 8, "lxc2"
	fs = append(fs, f)

	f = tcp("f03", 3, "node-b") // frontend → redis, dropped by policy
	f.Verdict, f.DropReason, f.EventType, f.EventSubType = flowpb.Verdict_DROPPED, flowpb.DropReason_POLICY_DENIED, msgTypeDrop, 133
	f.Direction = flowpb.TrafficDirection_EGRESS
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags = ip("10.0.0.1"), ip("10.0.2.9"), 40001, 6379, schemas.FlagSYN
	f.Src, f.Dst = frontend, redis
	fs = append(fs, f)

	f = tcp("f04", 4, "node-a") // DNS request
	f.L4Protocol, f.EventType, f.Direction, f.IsReply = 17, msgTypeAccessLog, flowpb.TrafficDirection_EGRESS, schemas.False
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = ip("10.0.0.1"), ip("10.0.3.10"), 53000, 53
	f.Src, f.Dst, f.DstService = frontend, coredns, schemas.Service{Namespace: "kube-system", Name: "kube-dns"}
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7DNS, DNSQuery: "api.example.com.", DNSQTypes: []string{"A"}, DNSObservationSource: "proxy"}
	fs = append(fs, f)

	f = tcp("f05", 5, "node-a") // DNS response
	f.L4Protocol, f.EventType, f.Direction, f.IsReply = 17, msgTypeAccessLog, flowpb.TrafficDirection_EGRESS, schemas.True
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = ip("10.0.3.10"), ip("10.0.0.1"), 53, 53000
	f.Src, f.Dst, f.SrcService = coredns, frontend, schemas.Service{Namespace: "kube-system", Name: "kube-dns"}
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7DNS, DNSQuery: "api.example.com.", DNSQTypes: []string{"A"},
		DNSRRTypes: []string{"A"}, DNSIPs: []string{"93.184.216.34"}, DNSTTL: 30, DNSObservationSource: "proxy"}
	fs = append(fs, f)

	f = tcp("f06", 6, "node-a") // HTTP request
	f.EventType, f.Direction, f.IsReply = msgTypeAccessLog, flowpb.TrafficDirection_INGRESS, schemas.False
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = ip("10.0.0.1"), ip("10.0.1.5"), 40002, 8080
	f.Src, f.Dst = frontend, checkout
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7HTTP, HTTPMethod: "GET",
		HTTPURL: "http://checkout-api.shop:8080/api/v1/cart?id=1", HTTPProtocol: "HTTP/1.1", HTTPHeaders: []string{"X-Request-Id: abc"}}
	fs = append(fs, f)

	f = tcp("f07", 7, "node-a") // HTTP response 503
	f.EventType, f.Direction, f.IsReply = msgTypeAccessLog, flowpb.TrafficDirection_INGRESS, schemas.True
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = ip("10.0.1.5"), ip("10.0.0.1"), 8080, 40003
	f.Src, f.Dst, f.LatencyNs = checkout, frontend, 12_000_000
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP, HTTPMethod: "POST", HTTPStatus: 503,
		HTTPURL: "http://checkout-api.shop:8080/api/v1/pay", HTTPProtocol: "HTTP/1.1"}
	fs = append(fs, f)

	f = tcp("f08", 8, "node-b") // ICMPv6 echo
	f.L4Protocol, f.IPVersion, f.ICMPType, f.Direction, f.IsReply = 58, flowpb.IPVersion_IPv6, 128, flowpb.TrafficDirection_EGRESS, schemas.False
	f.SrcIP, f.DstIP, f.Src, f.Dst = ip("fd00::1"), ip("fd00::2"), pinger, pingee
	fs = append(fs, f)

	f = tcp("f09", 9, "node-a") // to the world, FIN-ACK
	f.Direction, f.IsReply = flowpb.TrafficDirection_EGRESS, schemas.False
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags = ip("10.0.0.1"), ip("93.184.216.34"), 40004, 443, schemas.FlagFIN|schemas.FlagACK
	f.Src, f.Dst, f.DstNames = frontend, world, []string{"www.example.com"}
	fs = append(fs, f)

	f = tcp("f10", 10, "node-b") // Kafka produce
	f.EventType, f.Direction, f.IsReply = msgTypeAccessLog, flowpb.TrafficDirection_INGRESS, schemas.False
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = ip("10.0.1.5"), ip("10.0.4.2"), 40005, 9092
	f.Src, f.Dst = checkout, kafka
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7Kafka, KafkaAPIKey: "produce", KafkaTopic: "orders"}
	fs = append(fs, f)
	return fs
}

type filterCase struct {
	name  string
	white []*flowpb.FlowFilter
	black []*flowpb.FlowFilter
	want  []string
}

func ff(f *flowpb.FlowFilter) []*flowpb.FlowFilter { return []*flowpb.FlowFilter{f} }

var all = []string{"f01", "f02", "f03", "f04", "f05", "f06", "f07", "f08", "f09", "f10"}

// without returns all fixture UUIDs except the given ones.
func without(ex ...string) []string {
	var out []string
	for _, u := range all {
		skip := false
		for _, e := range ex {
			skip = skip || u == e
		}
		if !skip {
			out = append(out, u)
		}
	}
	return out
}

// filterCases lists each supported FlowFilter field alone, some combined,
// and as blacklist, with the UUIDs the fixture must yield.
func filterCases() []filterCase {
	return []filterCase{
		{name: "no filter returns every flow", want: all},
		{name: "uuid selects one flow", white: ff(&flowpb.FlowFilter{Uuid: []string{"f07"}}), want: []string{"f07"}},
		{name: "source ip exact", white: ff(&flowpb.FlowFilter{SourceIp: []string{"10.0.1.5"}}), want: []string{"f02", "f07", "f10"}},
		{name: "destination ip CIDR", white: ff(&flowpb.FlowFilter{DestinationIp: []string{"10.0.0.0/16"}}), want: []string{"f01", "f02", "f03", "f04", "f05", "f06", "f07", "f10"}},
		{name: "ipv6 CIDR", white: ff(&flowpb.FlowFilter{SourceIp: []string{"fd00::/64"}}), want: []string{"f08"}},
		{name: "source pod with namespace prefix", white: ff(&flowpb.FlowFilter{SourcePod: []string{"shop/check"}}), want: []string{"f02", "f07", "f10"}},
		{name: "destination pod namespace only", white: ff(&flowpb.FlowFilter{DestinationPod: []string{"kube-system/"}}), want: []string{"f04"}},
		{name: "pod without namespace means default", white: ff(&flowpb.FlowFilter{SourcePod: []string{"ping"}}), want: []string{"f08"}},
		{name: "pod without namespace does not match other namespaces", white: ff(&flowpb.FlowFilter{SourcePod: []string{"frontend"}}), want: nil},
		{name: "source label equality", white: ff(&flowpb.FlowFilter{SourceLabel: []string{"app=checkout-api"}}), want: []string{"f02", "f07", "f10"}},
		{name: "destination label with source prefix and set", white: ff(&flowpb.FlowFilter{DestinationLabel: []string{"k8s:app in (redis, kafka)"}}), want: []string{"f03", "f10"}},
		{name: "label requirements are ANDed", white: ff(&flowpb.FlowFilter{SourceLabel: []string{"app=frontend,tier=web"}}), want: []string{"f01", "f03", "f04", "f06", "f09"}},
		{name: "label negation", white: ff(&flowpb.FlowFilter{DestinationLabel: []string{"!app"}}), want: []string{"f04", "f09"}},
		{name: "reserved label", white: ff(&flowpb.FlowFilter{DestinationLabel: []string{"reserved:world"}}), want: []string{"f09"}},
		{name: "wrong label source does not match", white: ff(&flowpb.FlowFilter{DestinationLabel: []string{"reserved:app"}}), want: nil},
		{name: "destination fqdn wildcard", white: ff(&flowpb.FlowFilter{DestinationFqdn: []string{"*.example.com"}}), want: []string{"f09"}},
		{name: "source identity", white: ff(&flowpb.FlowFilter{SourceIdentity: []uint32{102, 3001}}), want: []string{"f05", "f08"}},
		{name: "destination identity", white: ff(&flowpb.FlowFilter{DestinationIdentity: []uint32{2}}), want: []string{"f09"}},
		{name: "source service", white: ff(&flowpb.FlowFilter{SourceService: []string{"kube-system/kube-dns"}}), want: []string{"f05"}},
		{name: "destination service prefix", white: ff(&flowpb.FlowFilter{DestinationService: []string{"shop/check"}}), want: []string{"f01"}},
		{name: "source workload by name", white: ff(&flowpb.FlowFilter{SourceWorkload: []*flowpb.Workload{{Name: "checkout-api"}}}), want: []string{"f02", "f07", "f10"}},
		{name: "destination workload by kind", white: ff(&flowpb.FlowFilter{DestinationWorkload: []*flowpb.Workload{{Kind: "StatefulSet"}}}), want: []string{"f03", "f10"}},
		{name: "destination port", white: ff(&flowpb.FlowFilter{DestinationPort: []string{"8080"}}), want: []string{"f01", "f06"}},
		{name: "source port", white: ff(&flowpb.FlowFilter{SourcePort: []string{"53"}}), want: []string{"f05"}},
		{name: "protocol tcp includes L7 over TCP", white: ff(&flowpb.FlowFilter{Protocol: []string{"tcp"}}), want: []string{"f01", "f02", "f03", "f06", "f07", "f09", "f10"}},
		{name: "protocol udp", white: ff(&flowpb.FlowFilter{Protocol: []string{"UDP"}}), want: []string{"f04", "f05"}},
		{name: "protocol icmp matches icmpv6", white: ff(&flowpb.FlowFilter{Protocol: []string{"icmp"}}), want: []string{"f08"}},
		{name: "protocol icmpv4 does not match icmpv6", white: ff(&flowpb.FlowFilter{Protocol: []string{"icmpv4"}}), want: nil},
		{name: "protocol http", white: ff(&flowpb.FlowFilter{Protocol: []string{"http"}}), want: []string{"f06", "f07"}},
		{name: "protocol dns or kafka", white: ff(&flowpb.FlowFilter{Protocol: []string{"dns", "kafka"}}), want: []string{"f04", "f05", "f10"}},
		{name: "verdict dropped", white: ff(&flowpb.FlowFilter{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}), want: []string{"f03"}},
		{name: "drop reason", white: ff(&flowpb.FlowFilter{DropReasonDesc: []flowpb.DropReason{flowpb.DropReason_POLICY_DENIED}}), want: []string{"f03"}},
		{name: "other drop reason", white: ff(&flowpb.FlowFilter{DropReasonDesc: []flowpb.DropReason{flowpb.DropReason_CT_MAP_INSERTION_FAILED}}), want: nil},
		{name: "tcp flags SYN matches SYN and SYN-ACK", white: ff(&flowpb.FlowFilter{TcpFlags: []*flowpb.TCPFlags{{SYN: true}}}), want: []string{"f01", "f02", "f03"}},
		{name: "tcp flags need all flags of one entry", white: ff(&flowpb.FlowFilter{TcpFlags: []*flowpb.TCPFlags{{SYN: true, ACK: true}, {FIN: true}}}), want: []string{"f02", "f09"}},
		{name: "http method case-insensitive", white: ff(&flowpb.FlowFilter{HttpMethod: []string{"get"}}), want: []string{"f06"}},
		{name: "http path regexp", white: ff(&flowpb.FlowFilter{HttpPath: []string{`^/api/v1/(cart|pay)$`}}), want: []string{"f06", "f07"}},
		{name: "http status prefix", white: ff(&flowpb.FlowFilter{HttpStatusCode: []string{"5+"}}), want: []string{"f07"}},
		{name: "http status exact miss", white: ff(&flowpb.FlowFilter{HttpStatusCode: []string{"200"}}), want: nil},
		{name: "http url regexp", white: ff(&flowpb.FlowFilter{HttpUrl: []string{`cart\?id=1`}}), want: []string{"f06"}},
		{name: "http header", white: ff(&flowpb.FlowFilter{HttpHeader: []*flowpb.HTTPHeader{{Key: "X-Request-Id", Value: "abc"}}}), want: []string{"f06"}},
		{name: "dns query regexp", white: ff(&flowpb.FlowFilter{DnsQuery: []string{`example\.com\.$`}}), want: []string{"f04", "f05"}},
		{name: "node name wildcard", white: ff(&flowpb.FlowFilter{NodeName: []string{"*-b"}}), want: []string{"f03", "f08", "f10"}},
		{name: "node name with cluster", white: ff(&flowpb.FlowFilter{NodeName: []string{"default/node-a"}}), want: []string{"f01", "f02", "f04", "f05", "f06", "f07", "f09"}},
		{name: "traffic direction ingress", white: ff(&flowpb.FlowFilter{TrafficDirection: []flowpb.TrafficDirection{flowpb.TrafficDirection_INGRESS}}), want: []string{"f02", "f06", "f07", "f10"}},
		{name: "reply true", white: ff(&flowpb.FlowFilter{Reply: []bool{true}}), want: []string{"f02", "f05", "f07"}},
		{name: "reply false counts an unknown dropped flow", white: ff(&flowpb.FlowFilter{Reply: []bool{false}}), want: []string{"f01", "f03", "f04", "f06", "f08", "f09", "f10"}},
		{name: "ip version 6", white: ff(&flowpb.FlowFilter{IpVersion: []flowpb.IPVersion{flowpb.IPVersion_IPv6}}), want: []string{"f08"}},
		{name: "event type drop", white: ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypeDrop}}}), want: []string{"f03"}},
		{name: "event type with sub type", white: ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypeTrace, MatchSubType: true, SubType: 5}}}), want: []string{"f02"}},
		{name: "interface by name", white: ff(&flowpb.FlowFilter{Interface: []*flowpb.NetworkInterface{{Name: "lxc2"}}}), want: []string{"f02"}},
		{name: "fields in one filter are ANDed", white: ff(&flowpb.FlowFilter{SourcePod: []string{"shop/frontend"}, Protocol: []string{"udp"}}), want: []string{"f04"}},
		{name: "filters are ORed", white: []*flowpb.FlowFilter{{Uuid: []string{"f01"}}, {Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}}, want: []string{"f01", "f03"}},
		{name: "hubble to-pod and verdict", white: ff(&flowpb.FlowFilter{DestinationPod: []string{"data/redis"}, Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}), want: []string{"f03"}},
		{name: "blacklist excludes", black: ff(&flowpb.FlowFilter{SourceIp: []string{"10.0.0.1"}}), want: []string{"f02", "f05", "f07", "f08", "f10"}},
		{name: "blacklist of two filters excludes either", black: []*flowpb.FlowFilter{{Protocol: []string{"tcp"}}, {Protocol: []string{"udp"}}}, want: []string{"f08"}},
		{name: "whitelist and blacklist together", white: ff(&flowpb.FlowFilter{SourcePod: []string{"shop/"}}), black: ff(&flowpb.FlowFilter{Protocol: []string{"http", "dns"}}), want: []string{"f01", "f02", "f03", "f09", "f10"}},
		{name: "blacklist of verdict", black: ff(&flowpb.FlowFilter{Verdict: []flowpb.Verdict{flowpb.Verdict_FORWARDED}}), want: []string{"f03"}},
		{name: "blacklist of a label", black: ff(&flowpb.FlowFilter{SourceLabel: []string{"k8s:app=frontend"}}), want: without("f01", "f03", "f04", "f06", "f09")},
	}
}
