package metrics

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flowbus/flowbus/internal/servetest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

var (
	frontend = schemas.Endpoint{Namespace: "shop", PodName: "frontend-7d9f", Workload: "frontend", WorkloadKind: "Deployment", Labels: []string{"k8s:app=frontend"}}
	checkout = schemas.Endpoint{Namespace: "shop", PodName: "checkout-api-5c8", Workload: "checkout-api", WorkloadKind: "Deployment", Labels: []string{"k8s:app=checkout-api"}}
	redis    = schemas.Endpoint{Namespace: "data", PodName: "redis-0", Workload: "redis", WorkloadKind: "StatefulSet", Labels: []string{"k8s:app=redis"}}
	coredns  = schemas.Endpoint{Namespace: "kube-system", PodName: "coredns-6f6b", Workload: "coredns", WorkloadKind: "Deployment", Labels: []string{"k8s:k8s-app=kube-dns"}}
)

func testFlows() []schemas.Flow {
	base := schemas.Flow{Verdict: flowpb.Verdict_FORWARDED, EventType: hubble.MsgTypeTrace, IPVersion: flowpb.IPVersion_IPv4, L4Protocol: 6,
		SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.1.5")}
	var fs []schemas.Flow
	f := base // SYN, to-endpoint
	f.Src, f.Dst, f.TCPFlags, f.Direction = frontend, checkout, schemas.FlagSYN, flowpb.TrafficDirection_EGRESS
	fs = append(fs, f)
	f = base // SYN-ACK reply, from-endpoint
	f.Src, f.Dst, f.TCPFlags, f.EventSubType, f.IsReply = checkout, frontend, schemas.FlagSYN|schemas.FlagACK, 5, schemas.True
	fs = append(fs, f)
	f = base // policy drop
	f.Src, f.Dst, f.TCPFlags, f.Verdict, f.DropReason, f.EventType, f.EventSubType = frontend, redis, schemas.FlagSYN, flowpb.Verdict_DROPPED, flowpb.DropReason_POLICY_DENIED, hubble.MsgTypeDrop, 133
	fs = append(fs, f)
	f = base // DNS request
	f.Src, f.Dst, f.L4Protocol, f.EventType, f.IsReply, f.Direction = frontend, coredns, 17, hubble.MsgTypeAccessLog, schemas.False, flowpb.TrafficDirection_EGRESS
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7DNS, DNSQuery: "api.example.com.", DNSQTypes: []string{"A"}}
	fs = append(fs, f)
	f = base // DNS response
	f.Src, f.Dst, f.L4Protocol, f.EventType, f.IsReply, f.Direction = coredns, frontend, 17, hubble.MsgTypeAccessLog, schemas.True, flowpb.TrafficDirection_EGRESS
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7DNS, DNSQuery: "api.example.com.", DNSQTypes: []string{"A"},
		DNSRRTypes: []string{"A"}, DNSIPs: []string{"93.184.216.34"}}
	fs = append(fs, f)
	f = base // HTTP request
	f.Src, f.Dst, f.EventType, f.Direction = frontend, checkout, hubble.MsgTypeAccessLog, flowpb.TrafficDirection_INGRESS
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7HTTP, HTTPMethod: "GET", HTTPProtocol: "HTTP/1.1", HTTPURL: "/cart"}
	fs = append(fs, f)
	f = base // HTTP response
	f.Src, f.Dst, f.EventType, f.Direction, f.LatencyNs = checkout, frontend, hubble.MsgTypeAccessLog, flowpb.TrafficDirection_INGRESS, 12_000_000
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP, HTTPMethod: "POST", HTTPProtocol: "HTTP/1.1", HTTPStatus: 503}
	fs = append(fs, f)
	f = base // three folded FIN flows
	f.Src, f.Dst, f.TCPFlags, f.Count = frontend, checkout, schemas.FlagFIN|schemas.FlagACK, 3
	fs = append(fs, f)
	return fs
}

// scrape serves reg over HTTP, GETs /metrics and flattens every sample into
// "name{label="value",...}" → value (histograms as _count and _sum).
func scrape(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	addr := servetest.Serve(t, func(ctx context.Context, lis net.Listener) error { return Serve(ctx, lis, reg, nil) })
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			key := func(suffix string) string {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				sort.Strings(ls)
				return name + suffix + "{" + strings.Join(ls, ",") + "}"
			}
			switch fam.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key("_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key("_sum")] = m.GetHistogram().GetSampleSum()
			case dto.MetricType_GAUGE:
				out[key("")] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// hubbleOnly keeps the hubble_* and flowbus_* samples, but the
// hubble_lost_events_total series still at 0 (every Metrics has them:
// TestLostEventsSeriesOfEveryHubbleSource).
func hubbleOnly(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, "hubble_lost_events_total{") && v == 0 {
			continue
		}
		if strings.HasPrefix(k, "hubble_") || strings.HasPrefix(k, "flowbus_") {
			out[k] = v
		}
	}
	return out
}

// TestLostEventsSeriesOfEveryHubbleSource: hubble_lost_events_total has a
// series for every place Hubble loses events, with Hubble's label values,
// from the start (at 0), with no metric enabled.
func TestLostEventsSeriesOfEveryHubbleSource(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Lost(flowpb.LostEventSource_HUBBLE_RING_BUFFER, 7)
	got := scrape(t, reg)
	want := map[string]float64{
		`hubble_lost_events_total{source="perf_event_ring_buffer"}`: 0,
		`hubble_lost_events_total{source="observer_events_queue"}`:  0,
		`hubble_lost_events_total{source="hubble_ring_buffer"}`:     7,
	}
	for k := range got {
		if strings.HasPrefix(k, "hubble_lost_events_total") {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected series %s", k)
			}
		}
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

func TestMetricsEqualWhatTheFlowsImply(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{
		"flow:labelsContext=source_namespace,destination_workload",
		"drop:sourceContext=namespace;destinationContext=pod-name tcp",
		"http dns:query",
	}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "flowbus_stage_received_total", Help: "another stage's counter"})
	reg.MustRegister(other)
	other.Add(42)
	m.Observe(testFlows())
	m.Lost(flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, 5)

	want := map[string]float64{
		`hubble_flows_processed_total{destination_workload="checkout-api",protocol="TCP",source_namespace="shop",subtype="to-endpoint",type="Trace",verdict="FORWARDED"}`: 4,
		`hubble_flows_processed_total{destination_workload="frontend",protocol="TCP",source_namespace="shop",subtype="from-endpoint",type="Trace",verdict="FORWARDED"}`:   1,
		`hubble_flows_processed_total{destination_workload="redis",protocol="TCP",source_namespace="shop",subtype="",type="Drop",verdict="DROPPED"}`:                      1,
		`hubble_flows_processed_total{destination_workload="coredns",protocol="DNS",source_namespace="shop",subtype="DNS",type="L7",verdict="FORWARDED"}`:                 1,
		`hubble_flows_processed_total{destination_workload="frontend",protocol="DNS",source_namespace="kube-system",subtype="DNS",type="L7",verdict="FORWARDED"}`:         1,
		`hubble_flows_processed_total{destination_workload="checkout-api",protocol="HTTP",source_namespace="shop",subtype="HTTP",type="L7",verdict="FORWARDED"}`:          1,
		`hubble_flows_processed_total{destination_workload="frontend",protocol="HTTP",source_namespace="shop",subtype="HTTP",type="L7",verdict="FORWARDED"}`:              1,
		`hubble_drop_total{destination="redis-0",protocol="TCP",reason="POLICY_DENIED",source="shop"}`:                                                                    1,
		`hubble_tcp_flags_total{family="IPv4",flag="SYN"}`:                                                  1,
		`hubble_tcp_flags_total{family="IPv4",flag="SYN-ACK"}`:                                              1,
		`hubble_tcp_flags_total{family="IPv4",flag="FIN"}`:                                                  3,
		`hubble_http_requests_total{method="GET",protocol="HTTP/1.1",reporter="server"}`:                    1,
		`hubble_http_responses_total{method="POST",protocol="HTTP/1.1",reporter="server",status="503"}`:     1,
		`hubble_http_request_duration_seconds_count{method="POST",reporter="server"}`:                       1,
		`hubble_http_request_duration_seconds_sum{method="POST",reporter="server"}`:                         0.012,
		`hubble_dns_queries_total{ips_returned="0",qtypes="A",query="api.example.com.",rcode=""}`:           1,
		`hubble_dns_responses_total{ips_returned="1",qtypes="A",query="api.example.com.",rcode="No Error"}`: 1,
		`hubble_dns_response_types_total{qtypes="A",query="api.example.com.",type="A"}`:                     1,
		`hubble_lost_events_total{source="perf_event_ring_buffer"}`:                                         5,
		`flowbus_stage_received_total{}`:                                                                    42,
	}
	zeroOverflow(want, "hubble_flows_processed_total", "hubble_drop_total", "hubble_tcp_flags_total", "hubble_http_requests_total",
		"hubble_http_responses_total", "hubble_http_request_duration_seconds", "hubble_dns_queries_total", "hubble_dns_responses_total",
		"hubble_dns_response_types_total")
	got := hubbleOnly(scrape(t, reg))
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected sample %s = %v", k, got[k])
		}
	}
}

func TestHTTPV2ReportsFromTheRequesterSide(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"httpV2:sourceContext=workload-name;destinationContext=workload-name"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(testFlows())
	got := hubbleOnly(scrape(t, reg))
	want := map[string]float64{
		// The response flows checkout → frontend; httpV2 swaps source and destination.
		`hubble_http_requests_total{destination="checkout-api",method="POST",protocol="HTTP/1.1",reporter="server",source="frontend",status="503"}`: 1,
		`hubble_http_request_duration_seconds_count{destination="checkout-api",method="POST",reporter="server",source="frontend"}`:                  1,
		`hubble_http_request_duration_seconds_sum{destination="checkout-api",method="POST",reporter="server",source="frontend"}`:                    0.012,
	}
	zeroOverflow(want, "hubble_http_requests_total", "hubble_http_request_duration_seconds")
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

// zeroOverflow adds the zero overflow counter every enabled metric exports.
func zeroOverflow(want map[string]float64, metrics ...string) {
	for _, m := range metrics {
		want[`flowbus_metrics_label_overflow_total{metric="`+m+`"}`] = 0
	}
}

func TestLabelCardinalityIsCappedAndOverflowCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"drop:destinationContext=pod"}, MaxLabelSets: 1}, reg)
	if err != nil {
		t.Fatal(err)
	}
	drop := testFlows()[2]
	other := drop
	other.Dst.PodName = "redis-1"
	m.Observe([]schemas.Flow{drop, other, other, drop})
	got := hubbleOnly(scrape(t, reg))
	want := map[string]float64{
		`hubble_drop_total{destination="data/redis-0",protocol="TCP",reason="POLICY_DENIED"}`: 2,
		`flowbus_metrics_label_overflow_total{metric="hubble_drop_total"}`:                    2,
	}
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestBadMetricsOptionsAreRejected(t *testing.T) {
	cases := []struct{ name, spec, text string }{
		{"an unknown metric", "flows", `unknown metric "flows"`},
		{"an unknown context", "drop:sourceContext=galaxy", `unknown context "galaxy"`},
		{"an unknown labelsContext label", "flow:labelsContext=source_galaxy", `invalid labelsContext value "source_galaxy"`},
		{"an unknown option", "tcp:query", `unknown option "query"`},
		{"a dns option to policy", "policy:ignoreAAAA", `unknown option "ignoreaaaa"`},
		{"http enabled twice", "http httpV2", "enabled twice"},
	}
	for _, tc := range cases {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			_, err := New(Config{Metrics: []string{tc.spec}}, prometheus.NewRegistry())
			if err == nil || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err = %v, want one containing %q", err, tc.text)
			}
		})
	}
}

func TestICMPAndPortDistribution(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"icmp port-distribution:destinationContext=namespace"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	echo := schemas.Flow{Verdict: flowpb.Verdict_FORWARDED, EventType: hubble.MsgTypeTrace, IPVersion: flowpb.IPVersion_IPv6, L4Protocol: 58,
		ICMPType: 128, IsReply: schemas.False, Dst: redis}
	unreach := schemas.Flow{Verdict: flowpb.Verdict_FORWARDED, EventType: hubble.MsgTypeTrace, IPVersion: flowpb.IPVersion_IPv4, L4Protocol: 1,
		ICMPType: 3, ICMPCode: 3, IsReply: schemas.True}
	syn := testFlows()[0]
	syn.IsReply, syn.DstPort = schemas.False, 8080
	m.Observe(append(testFlows(), echo, unreach, syn, syn))
	got := hubbleOnly(scrape(t, reg))
	want := map[string]float64{
		`hubble_icmp_total{family="IPv6",type="EchoRequest"}`:                               1,
		`hubble_icmp_total{family="IPv4",type="DestinationUnreachable(Port)"}`:              1,
		`hubble_port_distribution_total{destination="data",port="0",protocol="ICMPv6"}`:     1,
		`hubble_port_distribution_total{destination="kube-system",port="0",protocol="UDP"}`: 1,
		`hubble_port_distribution_total{destination="shop",port="8080",protocol="TCP"}`:     2,
	}
	zeroOverflow(want, "hubble_icmp_total", "hubble_port_distribution_total")
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestDropCountsDroppedPacketsByReasonAndProtocol(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"drop"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	drop := func(eventType int32, proto uint8, reason flowpb.DropReason) schemas.Flow {
		return schemas.Flow{Verdict: flowpb.Verdict_DROPPED, DropReason: reason, EventType: eventType, L4Protocol: proto}
	}
	// The eBPF source's record of a denied flow: its first packet, then the
	// four it dropped until its next record.
	first := drop(hubble.MsgTypeDrop, 6, flowpb.DropReason_POLICY_DENIED)
	first.PacketsFwd = 1
	later := first
	later.PacketsFwd, later.PacketsRev = 3, 1
	// From a Hubble source: one event per record, no packet counts.
	hubbleEvent := drop(hubble.MsgTypeDrop, 17, flowpb.DropReason_POLICY_DENIED)
	folded := hubbleEvent
	folded.Count = 3
	noReason := drop(hubble.MsgTypeDrop, 17, flowpb.DropReason_DROP_REASON_UNKNOWN)
	unknownReason := drop(hubble.MsgTypeDrop, 6, flowpb.DropReason(250))
	noL4 := drop(hubble.MsgTypeDrop, 0, flowpb.DropReason_CT_MAP_INSERTION_FAILED)
	noEventType := drop(0, 6, flowpb.DropReason_POLICY_DENIED)
	// Hubble counts any DROPPED flow, a policy verdict event too.
	verdictEvent := drop(hubble.MsgTypePolicyVerdict, 1, flowpb.DropReason_POLICY_DENIED)
	l7 := drop(hubble.MsgTypeAccessLog, 17, flowpb.DropReason_DROP_REASON_UNKNOWN)
	l7.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7DNS, DNSQuery: "blocked.example.com."}
	forwarded := first
	forwarded.Verdict, forwarded.DropReason = flowpb.Verdict_FORWARDED, 0
	m.Observe([]schemas.Flow{first, later, hubbleEvent, folded, noReason, unknownReason, noL4, noEventType, verdictEvent, l7, forwarded, {}})

	got := hubbleOnly(scrape(t, reg))
	want := map[string]float64{
		`hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"}`:                  5,
		`hubble_drop_total{protocol="UDP",reason="POLICY_DENIED"}`:                  4,
		`hubble_drop_total{protocol="UDP",reason="DROP_REASON_UNKNOWN"}`:            1,
		`hubble_drop_total{protocol="TCP",reason="250"}`:                            1,
		`hubble_drop_total{protocol="Unknown L4",reason="CT_MAP_INSERTION_FAILED"}`: 1,
		`hubble_drop_total{protocol="Unknown flow",reason="POLICY_DENIED"}`:         1,
		`hubble_drop_total{protocol="ICMPv4",reason="POLICY_DENIED"}`:               1,
		`hubble_drop_total{protocol="DNS",reason="DROP_REASON_UNKNOWN"}`:            1,
	}
	zeroOverflow(want, "hubble_drop_total")
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

// TestDropDoesNotCountTheEBPFSourcesPolicyVerdictsTwice: a denied
// connection's first packet is one drop record and, beside it, a policy
// verdict event that counts nothing (CountNone): hubble_drop_total adds the
// drop record's packets only, hubble_policy_verdicts_total the verdict. A
// policy verdict event from a Hubble source (it counts) adds to both, as in
// Hubble.
func TestDropDoesNotCountTheEBPFSourcesPolicyVerdictsTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"drop", "policy"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	drop := schemas.Flow{EventType: hubble.MsgTypeDrop, Verdict: flowpb.Verdict_DROPPED, DropReason: flowpb.DropReason_POLICY_DENIED,
		Direction: flowpb.TrafficDirection_INGRESS, L4Protocol: 6, IPVersion: flowpb.IPVersion_IPv4, PacketsFwd: 3, Count: 1}
	pv := drop
	pv.EventType, pv.PacketsFwd, pv.CountAs, pv.PolicyMatchType = hubble.MsgTypePolicyVerdict, 0, schemas.CountNone, 0
	fromHubble := pv
	fromHubble.CountAs = schemas.CountFlow
	m.Observe([]schemas.Flow{drop, pv, fromHubble})
	got := hubbleOnly(scrape(t, reg))
	want := map[string]float64{
		`hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"}`:                        4,
		`hubble_policy_verdicts_total{action="dropped",direction="ingress",match="none"}`: 2,
	}
	zeroOverflow(want, "hubble_drop_total", "hubble_policy_verdicts_total")
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

// TestDropAsInHubblesOwnTest replays cilium's TestDropHandler
// (pkg/hubble/metrics/drop/handler_test.go): a forwarded flow adds nothing,
// a policy-denied one adds one per event with context labels first.
func TestDropAsInHubblesOwnTest(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"drop:sourceContext=namespace;destinationContext=namespace"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	f := schemas.Flow{EventType: hubble.MsgTypePolicyVerdict, L4Protocol: 6, Verdict: flowpb.Verdict_FORWARDED,
		Src: schemas.Endpoint{Namespace: "foo"}, Dst: schemas.Endpoint{Namespace: "bar"}}
	m.Observe([]schemas.Flow{f})
	if got := hubbleOnly(scrape(t, reg)); len(got) != 1 { // the overflow counter only
		t.Fatalf("a forwarded flow: %v", got)
	}
	f.Verdict, f.DropReason = flowpb.Verdict_DROPPED, flowpb.DropReason_POLICY_DENIED
	m.Observe([]schemas.Flow{f, f})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fam := range fams {
		if fam.GetName() != "hubble_drop_total" {
			continue
		}
		if len(fam.GetMetric()) != 1 || fam.GetMetric()[0].GetCounter().GetValue() != 2 {
			t.Fatalf("hubble_drop_total = %v", fam.GetMetric())
		}
		for _, l := range fam.GetMetric()[0].GetLabel() {
			names = append(names, l.GetName()+"="+l.GetValue())
		}
	}
	if want := []string{"destination=bar", "protocol=TCP", "reason=POLICY_DENIED", "source=foo"}; !slices.Equal(names, want) {
		t.Errorf("labels %v, want %v", names, want)
	}
}

func TestPolicyVerdictsCountPolicyVerdictAndL7Events(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"policy:sourceContext=namespace;labelsContext=destination_workload"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	verdict := schemas.Flow{EventType: hubble.MsgTypePolicyVerdict, Verdict: flowpb.Verdict_FORWARDED, Direction: flowpb.TrafficDirection_INGRESS,
		L4Protocol: 6, Src: frontend, Dst: checkout, IngressAllowedBy: []string{"NetworkPolicy:shop/allow-frontend"}}
	folded := verdict
	folded.Count = 3
	denied := verdict
	denied.Verdict, denied.Direction, denied.Dst = flowpb.Verdict_DROPPED, flowpb.TrafficDirection_EGRESS, redis
	denied.PolicyMatchType = 2 // L3-L4
	fromHost := verdict
	fromHost.Src = schemas.Endpoint{Identity: hubble.IdentityHost, Labels: []string{"reserved:host"}}
	odd := schemas.Flow{EventType: hubble.MsgTypePolicyVerdict} // no direction, verdict, L4 or endpoints
	dns := schemas.Flow{EventType: hubble.MsgTypeAccessLog, Verdict: flowpb.Verdict_FORWARDED, Direction: flowpb.TrafficDirection_EGRESS, Src: frontend, Dst: coredns,
		L7: schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7DNS, DNSQuery: "api.example.com."}}
	httpDenied := schemas.Flow{EventType: hubble.MsgTypeAccessLog, Verdict: flowpb.Verdict_DROPPED, Direction: flowpb.TrafficDirection_INGRESS, Src: frontend, Dst: checkout,
		L7: schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7HTTP, HTTPMethod: "DELETE"}}
	kafka := schemas.Flow{EventType: hubble.MsgTypeAccessLog, Verdict: flowpb.Verdict_FORWARDED, Direction: flowpb.TrafficDirection_INGRESS, Src: frontend, Dst: redis,
		L7: schemas.L7{Protocol: schemas.L7Kafka}}
	noL7 := schemas.Flow{EventType: hubble.MsgTypeAccessLog, Verdict: flowpb.Verdict_FORWARDED}
	// What the eBPF source emits: drop and trace events, which are not
	// policy verdict events, whatever policies they name.
	ebpfDrop := testFlows()[2]
	ebpfDrop.IngressDeniedBy, ebpfDrop.PacketsFwd = []string{"NetworkPolicy:data/default-deny"}, 1
	ebpfTrace := testFlows()[0]
	ebpfTrace.EgressAllowedBy = []string{"CiliumNetworkPolicy:shop/frontend-egress"}
	m.Observe(append(testFlows(), verdict, folded, denied, fromHost, odd, dns, httpDenied, kafka, noL7, ebpfDrop, ebpfTrace))

	got := hubbleOnly(scrape(t, reg))
	want := map[string]float64{
		`hubble_policy_verdicts_total{action="forwarded",destination_workload="checkout-api",direction="ingress",match="none",source="shop"}`:         4,
		`hubble_policy_verdicts_total{action="dropped",destination_workload="redis",direction="egress",match="l3-l4",source="shop"}`:                  1,
		`hubble_policy_verdicts_total{action="verdict_unknown",destination_workload="",direction="traffic_direction_unknown",match="none",source=""}`: 1,
		// testFlows' DNS request and response, and HTTP request and response.
		`hubble_policy_verdicts_total{action="forwarded",destination_workload="coredns",direction="egress",match="l7/dns",source="shop"}`:         2,
		`hubble_policy_verdicts_total{action="forwarded",destination_workload="frontend",direction="egress",match="l7/dns",source="kube-system"}`: 1,
		`hubble_policy_verdicts_total{action="forwarded",destination_workload="checkout-api",direction="ingress",match="l7/http",source="shop"}`:  1,
		`hubble_policy_verdicts_total{action="forwarded",destination_workload="frontend",direction="ingress",match="l7/http",source="shop"}`:      1,
		`hubble_policy_verdicts_total{action="dropped",destination_workload="checkout-api",direction="ingress",match="l7/http",source="shop"}`:    1,
		`hubble_policy_verdicts_total{action="forwarded",destination_workload="redis",direction="ingress",match="l7/",source="shop"}`:             1,
		`hubble_policy_verdicts_total{action="forwarded",destination_workload="",direction="traffic_direction_unknown",match="l7/",source=""}`:    1,
	}
	zeroOverflow(want, "hubble_policy_verdicts_total")
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

// TestPolicyVerdictsAsInHubblesOwnTest replays cilium's TestPolicyHandler
// (pkg/hubble/metrics/policy/handler_test.go): the first two are labelled
// match="none" and "l3-l4" from the flow's policy_match_type.
func TestPolicyVerdictsAsInHubblesOwnTest(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"policy"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	f := schemas.Flow{EventType: hubble.MsgTypePolicyVerdict, Direction: flowpb.TrafficDirection_EGRESS, Verdict: flowpb.Verdict_DROPPED}
	m.Observe([]schemas.Flow{f})
	f.Direction, f.Verdict, f.PolicyMatchType = flowpb.TrafficDirection_INGRESS, flowpb.Verdict_REDIRECTED, 2
	m.Observe([]schemas.Flow{f})
	f.Src = schemas.Endpoint{Identity: hubble.IdentityHost} // not counted
	m.Observe([]schemas.Flow{f})
	f.EventType, f.Verdict = hubble.MsgTypeAccessLog, flowpb.Verdict_DROPPED
	f.L7 = schemas.L7{Protocol: schemas.L7HTTP, HTTPMethod: "POST", HTTPURL: "http://myhost/some/path", HTTPProtocol: "http/1.1"}
	m.Observe([]schemas.Flow{f})

	got := hubbleOnly(scrape(t, reg))
	want := map[string]float64{
		`hubble_policy_verdicts_total{action="dropped",direction="egress",match="none"}`:      1,
		`hubble_policy_verdicts_total{action="redirected",direction="ingress",match="l3-l4"}`: 1,
		`hubble_policy_verdicts_total{action="dropped",direction="ingress",match="l7/http"}`:  1,
	}
	zeroOverflow(want, "hubble_policy_verdicts_total")
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}
