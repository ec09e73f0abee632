package hubble

//lint:file-ignore SA1019 the tests check the deprecated fields Cilium still fills (DropReason, Reply).

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"reflect"
	"strconv"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/schemas"
)

// protoNormal is the one normalisation of the flow.Flow round trip:
// protobuf cannot tell an empty repeated field from an absent one, so empty
// string slices come back nil. Histograms round-trip exactly.
func protoNormal(f schemas.Flow) schemas.Flow {
	n := func(s []string) []string {
		if len(s) == 0 {
			return nil
		}
		return s
	}
	f.Src.Labels, f.Dst.Labels = n(f.Src.Labels), n(f.Dst.Labels)
	f.SrcNames, f.DstNames = n(f.SrcNames), n(f.DstNames)
	f.L7.HTTPHeaders = n(f.L7.HTTPHeaders)
	f.L7.DNSQTypes, f.L7.DNSRRTypes = n(f.L7.DNSQTypes), n(f.L7.DNSRRTypes)
	f.L7.DNSIPs, f.L7.DNSCNAMEs = n(f.L7.DNSIPs), n(f.L7.DNSCNAMEs)
	return f
}

// TestProtoRoundTrip: FromProto(ToProto(f)) == f for thousands of random
// flows, also after the proto passes through the wire (binary and JSON), as
// it does between an agent and the hubble CLI.
func TestProtoRoundTrip(t *testing.T) {
	g := flowtest.NewGen(2)
	for i := 0; i < 3000; i++ {
		f := g.Flow()
		want := protoNormal(f)
		p := ToProto(&f)
		wire, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back flowpb.Flow
		if err := proto.Unmarshal(wire, &back); err != nil {
			t.Fatal(err)
		}
		for name, pp := range map[string]*flowpb.Flow{"direct": p, "binary": &back} {
			got, err := FromProto(pp)
			if err != nil {
				t.Fatalf("flow %d (%s): FromProto: %v", i, name, err)
			}
			if !reflect.DeepEqual(got, want) {
				flowtest.DiffFlows(t, i, &got, &want)
				t.Fatalf("flow %d (%s) did not round-trip", i, name)
			}
		}
		if i%10 == 0 {
			js, err := protojson.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var fromJSON flowpb.Flow
			if err := protojson.Unmarshal(js, &fromJSON); err != nil {
				t.Fatalf("flow %d: protojson round trip: %v", i, err)
			}
			got, err := FromProto(&fromJSON)
			if err != nil {
				t.Fatalf("flow %d (json): %v", i, err)
			}
			if !reflect.DeepEqual(got, want) {
				flowtest.DiffFlows(t, i, &got, &want)
				t.Fatalf("flow %d (json) did not round-trip", i)
			}
		}
	}
}

func TestToProtoMapsFieldsAsHubble(t *testing.T) {
	f := schemas.Flow{
		TimeNs: 1_764_000_000_123_456_789, NodeName: "node-1", Verdict: flowpb.Verdict_DROPPED,
		DropReason: flowpb.DropReason_POLICY_DENIED, Direction: flowpb.TrafficDirection_EGRESS,
		EventType: 1, EventSubType: 133, IsReply: schemas.False, IPVersion: flowpb.IPVersion_IPv4,
		SrcIP: netip.MustParseAddr("10.0.4.11"), DstIP: netip.MustParseAddr("10.0.1.12"),
		SrcPort: 40000, DstPort: 8080, L4Protocol: 6, TCPFlags: schemas.FlagSYN | schemas.FlagNS,
		Src:      schemas.Endpoint{Identity: 20004, Namespace: "payments", PodName: "rewards-cron-1", Workload: "rewards-cron", WorkloadKind: "CronJob", Labels: []string{"k8s:app=rewards-cron"}},
		Dst:      schemas.Endpoint{Identity: 20001, Namespace: "payments", Workload: "ledger-svc", WorkloadKind: "Deployment"},
		BytesFwd: math.MaxUint64, Count: 3, LatencyNs: 1500, LatencyHist: schemas.Histogram{{Index: 17, Count: 3}},
		FirstSeenNs: 1_764_000_000_000_000_000,
	}
	p := ToProto(&f)
	if p.GetType() != flowpb.FlowType_L3_L4 || p.GetL7() != nil {
		t.Errorf("type = %v, l7 = %v; want L3_L4 without l7", p.GetType(), p.GetL7())
	}
	if p.GetDropReason() != 133 || p.GetDropReasonDesc() != flowpb.DropReason_POLICY_DENIED {
		t.Errorf("drop_reason = %d, drop_reason_desc = %v", p.GetDropReason(), p.GetDropReasonDesc())
	}
	if p.GetIsReply() == nil || p.GetIsReply().GetValue() || p.GetReply() {
		t.Errorf("is_reply = %v, reply = %v; want false, false", p.GetIsReply(), p.GetReply())
	}
	tcp := p.GetL4().GetTCP()
	if tcp.GetDestinationPort() != 8080 || !tcp.GetFlags().GetSYN() || !tcp.GetFlags().GetNS() || tcp.GetFlags().GetACK() {
		t.Errorf("l4 = %v", p.GetL4())
	}
	if w := p.GetSource().GetWorkloads(); len(w) != 1 || w[0].GetName() != "rewards-cron" || w[0].GetKind() != "CronJob" {
		t.Errorf("source workloads = %v", w)
	}
	if p.GetIP().GetSource() != "10.0.4.11" || p.GetEventType().GetSubType() != 133 {
		t.Errorf("ip = %v, event_type = %v", p.GetIP(), p.GetEventType())
	}
	if p.GetTime().GetSeconds() != 1_764_000_000 || p.GetTime().GetNanos() != 123_456_789 {
		t.Errorf("time = %v", p.GetTime())
	}
	var ext structpb.Struct
	if err := p.GetExtensions().UnmarshalTo(&ext); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		ExtBytesFwd:    "18446744073709551615",
		ExtCount:       "3",
		ExtLatencyNs:   "1500",
		ExtFirstSeen:   "2025-11-24T16:00:00Z",
		ExtLatencyHist: []any{map[string]any{"bucket": 17.0, "count": "3"}},
	}
	if got := ext.AsMap(); !reflect.DeepEqual(got, want) {
		t.Errorf("extensions = %v, want %v", got, want)
	}
}

// TestFromProtoReadsHubbleOutput converts a flow as `hubble observe -o json`
// prints it (no flowbus extensions, deprecated fields only).
// hubbleOutput is a flow as `hubble observe -o jsonpb` prints it.
const hubbleOutput = `{"time":"2025-11-24T16:00:01.5Z","verdict":"FORWARDED","drop_reason":0,` +
	`"IP":{"source":"fd00::1","destination":"10.0.1.10","ipVersion":"IPv6"},` +
	`"l4":{"UDP":{"source_port":5353,"destination_port":53}},` +
	`"source":{"ID":12,"identity":20000,"namespace":"payments","labels":["k8s:app=checkout-api"],"pod_name":"checkout-api-1","workloads":[{"name":"checkout-api","kind":"Deployment"}]},` +
	`"destination":{"identity":20007,"namespace":"kube-system","pod_name":"coredns-1"},` +
	`"Type":"L7","node_name":"node-2","reply":true,"event_type":{"type":129},` +
	`"l7":{"type":"REQUEST","latency_ns":"42","dns":{"query":"ledger-svc.payments.svc.cluster.local.","qtypes":["A"]}},` +
	`"traffic_direction":"EGRESS","interface":{"index":7,"name":"lxc1"}}`

func TestFromProtoReadsHubbleOutput(t *testing.T) {
	var p flowpb.Flow
	if err := protojson.Unmarshal([]byte(hubbleOutput), &p); err != nil {
		t.Fatal(err)
	}
	got, err := FromProto(&p)
	if err != nil {
		t.Fatal(err)
	}
	want := schemas.Flow{
		TimeNs: 1_764_000_001_500_000_000, NodeName: "node-2", Verdict: flowpb.Verdict_FORWARDED,
		Direction: flowpb.TrafficDirection_EGRESS, EventType: 129, IsReply: schemas.True, IPVersion: flowpb.IPVersion_IPv6,
		SrcIP: netip.MustParseAddr("fd00::1"), DstIP: netip.MustParseAddr("10.0.1.10"),
		SrcPort: 5353, DstPort: 53, L4Protocol: 17,
		Src:       schemas.Endpoint{ID: 12, Identity: 20000, Namespace: "payments", PodName: "checkout-api-1", Workload: "checkout-api", WorkloadKind: "Deployment", Labels: []string{"k8s:app=checkout-api"}},
		Dst:       schemas.Endpoint{Identity: 20007, Namespace: "kube-system", PodName: "coredns-1"},
		LatencyNs: 42, IfIndex: 7, IfName: "lxc1",
		L7: schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7DNS, DNSQuery: "ledger-svc.payments.svc.cluster.local.", DNSQTypes: []string{"A"}},
	}
	if !reflect.DeepEqual(got, want) {
		flowtest.DiffFlows(t, 0, &got, &want)
	}
}

func TestFromProtoRejectsMalformedValues(t *testing.T) {
	ext := func(k string, v *structpb.Value) *anypb.Any {
		a, err := anypb.New(&structpb.Struct{Fields: map[string]*structpb.Value{k: v}})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, tc := range []struct {
		name string
		p    *flowpb.Flow
	}{
		{"a nil flow", nil},
		{"a malformed source IP", &flowpb.Flow{IP: &flowpb.IP{Source: "10.0.0.300"}}},
		{"a malformed destination IP", &flowpb.Flow{IP: &flowpb.IP{Destination: "fe80::zz"}}},
		{"a byte counter that is a number, not a decimal string", &flowpb.Flow{Extensions: ext(ExtBytesFwd, structpb.NewNumberValue(1))}},
		{"a byte counter out of uint64 range", &flowpb.Flow{Extensions: ext(ExtBytesFwd, structpb.NewStringValue("18446744073709551616"))}},
		{"a first-seen that is not RFC 3339", &flowpb.Flow{Extensions: ext(ExtFirstSeen, structpb.NewStringValue("yesterday"))}},
		{"a histogram bucket out of range", &flowpb.Flow{Extensions: ext(ExtLatencyHist, structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
			structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"bucket": structpb.NewNumberValue(5000), "count": structpb.NewStringValue("1")}})}}))}},
		{"a histogram that is not a list", &flowpb.Flow{Extensions: ext(ExtLatencyHist, structpb.NewStringValue("p99=3ms"))}},
		{"an L4 protocol beyond 255", &flowpb.Flow{Extensions: ext(ExtL4Protocol, structpb.NewNumberValue(300))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := FromProto(tc.p); !errors.Is(err, ErrBadProto) {
				t.Fatalf("err = %v, want ErrBadProto", err)
			}
		})
	}
	// Another producer's extension (not a Struct) is ignored, not an error.
	other, _ := anypb.New(wrapperspb.String("x"))
	if _, err := FromProto(&flowpb.Flow{Extensions: other}); err != nil {
		t.Fatalf("foreign extension: %v", err)
	}
}

// slowExtensions builds the extension Struct with structpb, the obvious way.
func slowExtensions(f *schemas.Flow, hasL7 bool) *structpb.Struct {
	ext := map[string]*structpb.Value{}
	u := func(k string, v uint64) {
		if v != 0 {
			ext[k] = structpb.NewStringValue(strconv.FormatUint(v, 10))
		}
	}
	u(ExtBytesFwd, f.BytesFwd)
	u(ExtBytesRev, f.BytesRev)
	u(ExtPacketsFwd, f.PacketsFwd)
	u(ExtPacketsRev, f.PacketsRev)
	u(ExtCount, f.Count)
	if !hasL7 {
		u(ExtLatencyNs, f.LatencyNs)
	}
	if f.FirstSeenNs != 0 {
		ext[ExtFirstSeen] = structpb.NewStringValue(formatNs(f.FirstSeenNs))
	}
	if f.LastSeenNs != 0 {
		ext[ExtLastSeen] = structpb.NewStringValue(formatNs(f.LastSeenNs))
	}
	switch f.L4Protocol {
	case 0, 1, 6, 17, 58, 132:
	default:
		ext[ExtL4Protocol] = structpb.NewNumberValue(float64(f.L4Protocol))
	}
	if f.L7.Protocol == schemas.L7Kafka && f.L7.KafkaClientID != "" {
		ext[ExtKafkaClientID] = structpb.NewStringValue(f.L7.KafkaClientID)
	}
	if f.CountAs != schemas.CountFlow {
		ext[ExtCountAs] = structpb.NewStringValue(f.CountAs.String())
	}
	if f.LatencyHist != nil {
		l := &structpb.ListValue{Values: []*structpb.Value{}}
		for _, b := range f.LatencyHist {
			l.Values = append(l.Values, structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
				"bucket": structpb.NewNumberValue(float64(b.Index)),
				"count":  structpb.NewStringValue(strconv.FormatInt(b.Count, 10)),
			}}))
		}
		ext[ExtLatencyHist] = structpb.NewListValue(l)
	}
	if len(ext) == 0 {
		return nil
	}
	return &structpb.Struct{Fields: ext}
}

// TestExtensionWireMatchesProtobuf: the hand-marshalled extension equals
// deterministic protobuf marshalling of the same structpb.Struct, byte for
// byte, for random flows.
func TestExtensionWireMatchesProtobuf(t *testing.T) {
	g := flowtest.NewGen(8)
	for i := range 2000 {
		f := g.Flow()
		hasL7 := f.L7.Protocol != schemas.L7None || f.L7.Type != 0
		got := extensions(&f, hasL7)
		slow := slowExtensions(&f, hasL7)
		if slow == nil {
			if got != nil {
				t.Fatalf("flow %d: extension %v, want none", i, got)
			}
			continue
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(slow)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil || got.GetTypeUrl() != "type.googleapis.com/google.protobuf.Struct" || !bytes.Equal(got.GetValue(), want) {
			t.Fatalf("flow %d: extension bytes differ from protobuf's\n got %x\nwant %x", i, got.GetValue(), want)
		}
	}
}
