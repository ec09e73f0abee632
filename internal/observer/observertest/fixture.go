// Package observertest holds the flows and filter cases that the tests of the
// observer packages share: ten flows covering every field the filters read,
// and the FlowFilters each must select. Tests only.
package observertest

import (
	"net/netip"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// BaseTime is the time of the first fixture flow; flow i is i seconds later.
var BaseTime = time.Date(2026, 11, 25, 21, 47, 0, 0, time.UTC)

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
	world  = schemas.Endpoint{Identity: hubble.IdentityWorld, Labels: []string{hubble.LabelReservedWorld}}
	kafka  = schemas.Endpoint{Identity: 1003, Namespace: "shop", PodName: "kafka-0", Workload: "kafka", WorkloadKind: "StatefulSet",
		Labels: []string{"k8s:app=kafka", "k8s:io.kubernetes.pod.namespace=shop"}}
)

// Flows returns the ten flows every filter test runs against, with
// UUIDs f01..f10 in time order.
func Flows() []schemas.Flow {
	at := func(i int) int64 { return BaseTime.Add(time.Duration(i) * time.Second).UnixNano() }
	tcp := func(uuid string, i int, node string) schemas.Flow {
		return schemas.Flow{UUID: uuid, TimeNs: at(i), NodeName: node, Verdict: flowpb.Verdict_FORWARDED,
			EventType: hubble.MsgTypeTrace, IPVersion: flowpb.IPVersion_IPv4, L4Protocol: 6, Count: 1}
	}
	var fs []schemas.Flow

	f := tcp("f01", 1, "node-a") // frontend → checkout SYN
	f.Direction, f.IsReply, f.ObservationPoint = flowpb.TrafficDirection_EGRESS, schemas.False, flowpb.TraceObservationPoint_TO_ENDPOINT
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags = ip("10.0.0.1"), ip("10.0.1.5"), 40000, 8080, schemas.FlagSYN
	f.Src, f.Dst, f.DstService = frontend, checkout, schemas.Service{Namespace: "shop", Name: "checkout"}
	f.IfIndex, f.IfName = 7, "lxc1"
	fs = append(fs, f)

	f = tcp("f02", 2, "node-a") // checkout → frontend SYN-ACK (reply)
	f.Direction, f.IsReply, f.EventSubType = flowpb.TrafficDirection_INGRESS, schemas.True, hubble.TraceFromLxc
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags = ip("10.0.1.5"), ip("10.0.0.1"), 8080, 40000, schemas.FlagSYN|schemas.FlagACK
	f.Src, f.Dst, f.SrcService = checkout, frontend, schemas.Service{Namespace: "shop", Name: "checkout"}
	f.IfIndex, f.IfName = 8, "lxc2"
	fs = append(fs, f)

	f = tcp("f03", 3, "node-b") // frontend → redis, dropped by policy
	f.Verdict, f.DropReason, f.EventType, f.EventSubType = flowpb.Verdict_DROPPED, flowpb.DropReason_POLICY_DENIED, hubble.MsgTypeDrop, 133
	f.Direction = flowpb.TrafficDirection_EGRESS
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags = ip("10.0.0.1"), ip("10.0.2.9"), 40001, 6379, schemas.FlagSYN
	f.Src, f.Dst = frontend, redis
	fs = append(fs, f)

	f = tcp("f04", 4, "node-a") // DNS request
	f.L4Protocol, f.EventType, f.Direction, f.IsReply = 17, hubble.MsgTypeAccessLog, flowpb.TrafficDirection_EGRESS, schemas.False
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = ip("10.0.0.1"), ip("10.0.3.10"), 53000, 53
	f.Src, f.Dst, f.DstService = frontend, coredns, schemas.Service{Namespace: "kube-system", Name: "kube-dns"}
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7DNS, DNSQuery: "api.example.com.", DNSQTypes: []string{"A"}, DNSObservationSource: hubble.DNSObservationSourceProxy}
	fs = append(fs, f)

	f = tcp("f05", 5, "node-a") // DNS response
	f.L4Protocol, f.EventType, f.Direction, f.IsReply = 17, hubble.MsgTypeAccessLog, flowpb.TrafficDirection_EGRESS, schemas.True
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = ip("10.0.3.10"), ip("10.0.0.1"), 53, 53000
	f.Src, f.Dst, f.SrcService = coredns, frontend, schemas.Service{Namespace: "kube-system", Name: "kube-dns"}
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7DNS, DNSQuery: "api.example.com.", DNSQTypes: []string{"A"},
		DNSRRTypes: []string{"A"}, DNSIPs: []string{"93.184.216.34"}, DNSTTL: 30, DNSObservationSource: hubble.DNSObservationSourceProxy}
	fs = append(fs, f)

	f = tcp("f06", 6, "node-a") // HTTP request
	f.EventType, f.Direction, f.IsReply = hubble.MsgTypeAccessLog, flowpb.TrafficDirection_INGRESS, schemas.False
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = ip("10.0.0.1"), ip("10.0.1.5"), 40002, 8080
	f.Src, f.Dst = frontend, checkout
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7HTTP, HTTPMethod: "GET",
		HTTPURL: "http://checkout-api.shop:8080/api/v1/cart?id=1", HTTPProtocol: "HTTP/1.1", HTTPHeaders: []string{"X-Request-Id: abc"}}
	fs = append(fs, f)

	f = tcp("f07", 7, "node-a") // HTTP response 503
	f.EventType, f.Direction, f.IsReply = hubble.MsgTypeAccessLog, flowpb.TrafficDirection_INGRESS, schemas.True
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
	f.EventType, f.Direction, f.IsReply = hubble.MsgTypeAccessLog, flowpb.TrafficDirection_INGRESS, schemas.False
	f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = ip("10.0.1.5"), ip("10.0.4.2"), 40005, 9092
	f.Src, f.Dst = checkout, kafka
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7Kafka, KafkaAPIKey: "produce", KafkaTopic: "orders"}
	fs = append(fs, f)
	return fs
}

// Case is a whitelist and blacklist with the UUIDs of Flows they select.
type Case struct {
	Name  string
	White []*flowpb.FlowFilter
	Black []*flowpb.FlowFilter
	Want  []string
}

// FF makes a filter list of one filter.
func FF(f *flowpb.FlowFilter) []*flowpb.FlowFilter { return []*flowpb.FlowFilter{f} }

// All is the UUIDs of every fixture flow.
var All = []string{"f01", "f02", "f03", "f04", "f05", "f06", "f07", "f08", "f09", "f10"}

// Without returns all fixture UUIDs except the given ones.
func Without(ex ...string) []string {
	var out []string
	for _, u := range All {
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

// Cases lists each supported FlowFilter field alone, some combined,
// and as blacklist, with the UUIDs the fixture must yield.
func Cases() []Case {
	return []Case{
		{Name: "no filter returns every flow", Want: All},
		{Name: "uuid selects one flow", White: FF(&flowpb.FlowFilter{Uuid: []string{"f07"}}), Want: []string{"f07"}},
		{Name: "source ip exact", White: FF(&flowpb.FlowFilter{SourceIp: []string{"10.0.1.5"}}), Want: []string{"f02", "f07", "f10"}},
		{Name: "destination ip CIDR", White: FF(&flowpb.FlowFilter{DestinationIp: []string{"10.0.0.0/16"}}), Want: []string{"f01", "f02", "f03", "f04", "f05", "f06", "f07", "f10"}},
		{Name: "ipv6 CIDR", White: FF(&flowpb.FlowFilter{SourceIp: []string{"fd00::/64"}}), Want: []string{"f08"}},
		{Name: "source pod with namespace prefix", White: FF(&flowpb.FlowFilter{SourcePod: []string{"shop/check"}}), Want: []string{"f02", "f07", "f10"}},
		{Name: "destination pod namespace only", White: FF(&flowpb.FlowFilter{DestinationPod: []string{"kube-system/"}}), Want: []string{"f04"}},
		{Name: "pod without namespace means default", White: FF(&flowpb.FlowFilter{SourcePod: []string{"ping"}}), Want: []string{"f08"}},
		{Name: "pod without namespace does not match other namespaces", White: FF(&flowpb.FlowFilter{SourcePod: []string{"frontend"}}), Want: nil},
		{Name: "source label equality", White: FF(&flowpb.FlowFilter{SourceLabel: []string{"app=checkout-api"}}), Want: []string{"f02", "f07", "f10"}},
		{Name: "destination label with source prefix and set", White: FF(&flowpb.FlowFilter{DestinationLabel: []string{"k8s:app in (redis, kafka)"}}), Want: []string{"f03", "f10"}},
		{Name: "label requirements are ANDed", White: FF(&flowpb.FlowFilter{SourceLabel: []string{"app=frontend,tier=web"}}), Want: []string{"f01", "f03", "f04", "f06", "f09"}},
		{Name: "label negation", White: FF(&flowpb.FlowFilter{DestinationLabel: []string{"!app"}}), Want: []string{"f04", "f09"}},
		{Name: "reserved label", White: FF(&flowpb.FlowFilter{DestinationLabel: []string{"reserved:world"}}), Want: []string{"f09"}},
		{Name: "wrong label source does not match", White: FF(&flowpb.FlowFilter{DestinationLabel: []string{"reserved:app"}}), Want: nil},
		{Name: "destination fqdn wildcard", White: FF(&flowpb.FlowFilter{DestinationFqdn: []string{"*.example.com"}}), Want: []string{"f09"}},
		{Name: "source identity", White: FF(&flowpb.FlowFilter{SourceIdentity: []uint32{102, 3001}}), Want: []string{"f05", "f08"}},
		{Name: "destination identity", White: FF(&flowpb.FlowFilter{DestinationIdentity: []uint32{2}}), Want: []string{"f09"}},
		{Name: "source service", White: FF(&flowpb.FlowFilter{SourceService: []string{"kube-system/kube-dns"}}), Want: []string{"f05"}},
		{Name: "destination service prefix", White: FF(&flowpb.FlowFilter{DestinationService: []string{"shop/check"}}), Want: []string{"f01"}},
		{Name: "source workload by name", White: FF(&flowpb.FlowFilter{SourceWorkload: []*flowpb.Workload{{Name: "checkout-api"}}}), Want: []string{"f02", "f07", "f10"}},
		{Name: "destination workload by kind", White: FF(&flowpb.FlowFilter{DestinationWorkload: []*flowpb.Workload{{Kind: "StatefulSet"}}}), Want: []string{"f03", "f10"}},
		{Name: "destination port", White: FF(&flowpb.FlowFilter{DestinationPort: []string{"8080"}}), Want: []string{"f01", "f06"}},
		{Name: "source port", White: FF(&flowpb.FlowFilter{SourcePort: []string{"53"}}), Want: []string{"f05"}},
		{Name: "protocol tcp includes L7 over TCP", White: FF(&flowpb.FlowFilter{Protocol: []string{"tcp"}}), Want: []string{"f01", "f02", "f03", "f06", "f07", "f09", "f10"}},
		{Name: "protocol udp", White: FF(&flowpb.FlowFilter{Protocol: []string{"UDP"}}), Want: []string{"f04", "f05"}},
		{Name: "protocol icmp matches icmpv6", White: FF(&flowpb.FlowFilter{Protocol: []string{"icmp"}}), Want: []string{"f08"}},
		{Name: "protocol icmpv4 does not match icmpv6", White: FF(&flowpb.FlowFilter{Protocol: []string{"icmpv4"}}), Want: nil},
		{Name: "protocol http", White: FF(&flowpb.FlowFilter{Protocol: []string{"http"}}), Want: []string{"f06", "f07"}},
		{Name: "protocol dns or kafka", White: FF(&flowpb.FlowFilter{Protocol: []string{"dns", "kafka"}}), Want: []string{"f04", "f05", "f10"}},
		{Name: "verdict dropped", White: FF(&flowpb.FlowFilter{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}), Want: []string{"f03"}},
		{Name: "drop reason", White: FF(&flowpb.FlowFilter{DropReasonDesc: []flowpb.DropReason{flowpb.DropReason_POLICY_DENIED}}), Want: []string{"f03"}},
		{Name: "other drop reason", White: FF(&flowpb.FlowFilter{DropReasonDesc: []flowpb.DropReason{flowpb.DropReason_CT_MAP_INSERTION_FAILED}}), Want: nil},
		{Name: "tcp flags SYN matches SYN and SYN-ACK", White: FF(&flowpb.FlowFilter{TcpFlags: []*flowpb.TCPFlags{{SYN: true}}}), Want: []string{"f01", "f02", "f03"}},
		{Name: "tcp flags need all flags of one entry", White: FF(&flowpb.FlowFilter{TcpFlags: []*flowpb.TCPFlags{{SYN: true, ACK: true}, {FIN: true}}}), Want: []string{"f02", "f09"}},
		{Name: "http method case-insensitive", White: FF(&flowpb.FlowFilter{HttpMethod: []string{"get"}}), Want: []string{"f06"}},
		{Name: "http path regexp", White: FF(&flowpb.FlowFilter{HttpPath: []string{`^/api/v1/(cart|pay)$`}}), Want: []string{"f06", "f07"}},
		{Name: "http status prefix", White: FF(&flowpb.FlowFilter{HttpStatusCode: []string{"5+"}}), Want: []string{"f07"}},
		{Name: "http status exact miss", White: FF(&flowpb.FlowFilter{HttpStatusCode: []string{"200"}}), Want: nil},
		{Name: "http url regexp", White: FF(&flowpb.FlowFilter{HttpUrl: []string{`cart\?id=1`}}), Want: []string{"f06"}},
		{Name: "http header", White: FF(&flowpb.FlowFilter{HttpHeader: []*flowpb.HTTPHeader{{Key: "X-Request-Id", Value: "abc"}}}), Want: []string{"f06"}},
		{Name: "dns query regexp", White: FF(&flowpb.FlowFilter{DnsQuery: []string{`example\.com\.$`}}), Want: []string{"f04", "f05"}},
		{Name: "node name wildcard", White: FF(&flowpb.FlowFilter{NodeName: []string{"*-b"}}), Want: []string{"f03", "f08", "f10"}},
		{Name: "node name with cluster", White: FF(&flowpb.FlowFilter{NodeName: []string{"default/node-a"}}), Want: []string{"f01", "f02", "f04", "f05", "f06", "f07", "f09"}},
		{Name: "traffic direction ingress", White: FF(&flowpb.FlowFilter{TrafficDirection: []flowpb.TrafficDirection{flowpb.TrafficDirection_INGRESS}}), Want: []string{"f02", "f06", "f07", "f10"}},
		{Name: "reply true", White: FF(&flowpb.FlowFilter{Reply: []bool{true}}), Want: []string{"f02", "f05", "f07"}},
		{Name: "reply false counts an unknown dropped flow", White: FF(&flowpb.FlowFilter{Reply: []bool{false}}), Want: []string{"f01", "f03", "f04", "f06", "f08", "f09", "f10"}},
		{Name: "ip version 6", White: FF(&flowpb.FlowFilter{IpVersion: []flowpb.IPVersion{flowpb.IPVersion_IPv6}}), Want: []string{"f08"}},
		{Name: "event type drop", White: FF(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: hubble.MsgTypeDrop}}}), Want: []string{"f03"}},
		{Name: "event type with sub type", White: FF(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: hubble.MsgTypeTrace, MatchSubType: true, SubType: hubble.TraceFromLxc}}}), Want: []string{"f02"}},
		{Name: "interface by name", White: FF(&flowpb.FlowFilter{Interface: []*flowpb.NetworkInterface{{Name: "lxc2"}}}), Want: []string{"f02"}},
		{Name: "fields in one filter are ANDed", White: FF(&flowpb.FlowFilter{SourcePod: []string{"shop/frontend"}, Protocol: []string{"udp"}}), Want: []string{"f04"}},
		{Name: "filters are ORed", White: []*flowpb.FlowFilter{{Uuid: []string{"f01"}}, {Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}}, Want: []string{"f01", "f03"}},
		{Name: "hubble to-pod and verdict", White: FF(&flowpb.FlowFilter{DestinationPod: []string{"data/redis"}, Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}), Want: []string{"f03"}},
		{Name: "blacklist excludes", Black: FF(&flowpb.FlowFilter{SourceIp: []string{"10.0.0.1"}}), Want: []string{"f02", "f05", "f07", "f08", "f10"}},
		{Name: "blacklist of two filters excludes either", Black: []*flowpb.FlowFilter{{Protocol: []string{"tcp"}}, {Protocol: []string{"udp"}}}, Want: []string{"f08"}},
		{Name: "whitelist and blacklist together", White: FF(&flowpb.FlowFilter{SourcePod: []string{"shop/"}}), Black: FF(&flowpb.FlowFilter{Protocol: []string{"http", "dns"}}), Want: []string{"f01", "f02", "f03", "f09", "f10"}},
		{Name: "blacklist of verdict", Black: FF(&flowpb.FlowFilter{Verdict: []flowpb.Verdict{flowpb.Verdict_FORWARDED}}), Want: []string{"f03"}},
		{Name: "blacklist of a label", Black: FF(&flowpb.FlowFilter{SourceLabel: []string{"k8s:app=frontend"}}), Want: Without("f01", "f03", "f04", "f06", "f09")},
	}
}
