package stdout

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

func testFlows() []schemas.Flow {
	return []schemas.Flow{
		{
			TimeNs: 1_764_000_000_250_000_000, NodeName: "node-01", Verdict: flowpb.Verdict_FORWARDED,
			Direction: flowpb.TrafficDirection_EGRESS, ObservationPoint: flowpb.TraceObservationPoint_TO_ENDPOINT,
			EventType: 129, IsReply: schemas.False, IPVersion: flowpb.IPVersion_IPv4,
			SrcIP: netip.MustParseAddr("10.0.0.10"), DstIP: netip.MustParseAddr("10.0.1.11"),
			SrcPort: 41000, DstPort: 8080, L4Protocol: 6, TCPFlags: schemas.FlagSYN | schemas.FlagACK,
			Src:        schemas.Endpoint{Identity: 20000, Namespace: "payments", PodName: "checkout-api-1", Workload: "checkout-api", WorkloadKind: "Deployment", Labels: []string{"k8s:app=checkout-api"}},
			Dst:        schemas.Endpoint{Identity: 20001, Namespace: "payments", PodName: "ledger-svc-1", Workload: "ledger-svc", WorkloadKind: "Deployment", Labels: []string{"k8s:app=ledger-svc"}},
			DstService: schemas.Service{Namespace: "payments", Name: "ledger-svc"},
			BytesFwd:   1200, PacketsFwd: 4, Count: 2, LatencyNs: 4_000_000,
			L7: schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP, HTTPMethod: "POST", HTTPURL: "http://ledger-svc:8080/v1/ledger/entries?a=1&b=<2>", HTTPStatus: 201, HTTPProtocol: "HTTP/1.1"},
		},
		{
			TimeNs: 1_764_000_000_500_000_000, NodeName: "node-02", Verdict: flowpb.Verdict_DROPPED,
			DropReason: flowpb.DropReason_POLICY_DENIED, EventType: 1, EventSubType: 133, IPVersion: flowpb.IPVersion_IPv4,
			SrcIP: netip.MustParseAddr("10.0.4.10"), DstIP: netip.MustParseAddr("10.0.1.11"), SrcPort: 50000, DstPort: 8080, L4Protocol: 6,
			TCPFlags: schemas.FlagSYN,
		},
	}
}

// wantLines is what `hubble observe -o json` prints for testFlows: the
// GetFlowsResponse shape (flow, node_name, time), proto field names,
// encoding/json's compaction and HTML escaping (\u0026, \u003c).
var wantLines = []string{
	`{"flow":{"time":"2025-11-24T16:00:00.250Z","verdict":"FORWARDED","IP":{"source":"10.0.0.10","destination":"10.0.1.11","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":41000,"destination_port":8080,"flags":{"SYN":true,"ACK":true}}},"source":{"identity":20000,"namespace":"payments","labels":["k8s:app=checkout-api"],"pod_name":"checkout-api-1","workloads":[{"name":"checkout-api","kind":"Deployment"}]},"destination":{"identity":20001,"namespace":"payments","labels":["k8s:app=ledger-svc"],"pod_name":"ledger-svc-1","workloads":[{"name":"ledger-svc","kind":"Deployment"}]},"Type":"L7","node_name":"node-01","l7":{"type":"RESPONSE","latency_ns":"4000000","http":{"code":201,"method":"POST","url":"http://ledger-svc:8080/v1/ledger/entries?a=1\u0026b=\u003c2\u003e","protocol":"HTTP/1.1"}},"event_type":{"type":129},"destination_service":{"name":"ledger-svc","namespace":"payments"},"traffic_direction":"EGRESS","trace_observation_point":"TO_ENDPOINT","is_reply":false,"extensions":{"@type":"type.googleapis.com/google.protobuf.Struct","value":{"flowbus.bytes_fwd":"1200","flowbus.count":"2","flowbus.packets_fwd":"4"}}},"node_name":"node-01","time":"2025-11-24T16:00:00.250Z"}`,
	`{"flow":{"time":"2025-11-24T16:00:00.500Z","verdict":"DROPPED","drop_reason":133,"IP":{"source":"10.0.4.10","destination":"10.0.1.11","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":50000,"destination_port":8080,"flags":{"SYN":true}}},"Type":"L3_L4","node_name":"node-02","event_type":{"type":1,"sub_type":133},"drop_reason_desc":"POLICY_DENIED"},"node_name":"node-02","time":"2025-11-24T16:00:00.500Z"}`,
}

func TestWritePrintsHubbleJSONLines(t *testing.T) {
	var out bytes.Buffer
	w := New(&out, nil, nil)
	if err := w.Write(testFlows()); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != len(wantLines) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(wantLines), out.String())
	}
	for i := range got {
		if got[i] != wantLines[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], wantLines[i])
		}
	}
}

// TestLinesParseBackToTheSameFlows: what the sink prints is what a Hubble
// JSON consumer reads, and converting it back gives the flows printed.
func TestLinesParseBackToTheSameFlows(t *testing.T) {
	var out bytes.Buffer
	w := New(&out, nil, nil)
	flows := testFlows()
	if err := w.Write(flows); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	for i := 0; sc.Scan(); i++ {
		var resp observerpb.GetFlowsResponse
		if err := protojson.Unmarshal(sc.Bytes(), &resp); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		got, err := hubble.FromProto(resp.GetFlow())
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, flows[i]) {
			t.Errorf("line %d parsed back to %+v, want %+v", i, got, flows[i])
		}
	}
}

func TestPublishPrintsGoodMessagesAndSkipsBadOnes(t *testing.T) {
	flows := testFlows()
	enc := flowcodec.NewEncoder()
	m1, err := enc.Encode(nil, flows[:1])
	if err != nil {
		t.Fatal(err)
	}
	m2, err := enc.Encode(nil, flows[1:])
	if err != nil {
		t.Fatal(err)
	}
	msgs := []schemas.Message{
		{Node: "node-01", Run: "r", Seq: 1, Rows: 1, Value: m1},
		{Node: "node-01", Run: "r", Seq: 2, Rows: 1, Value: []byte("garbage")},
		{Node: "node-01", Run: "r", Seq: 3, Rows: 1, Value: m2[:len(m2)-20]},
		{Node: "node-01", Run: "r", Seq: 4, Rows: 1, Value: m2},
	}
	var out, logs bytes.Buffer
	w := New(&out, slog.New(slog.NewTextHandler(&logs, nil)), flowcodec.NewDecoder())
	if err := w.Publish(context.Background(), msgs); err != nil {
		t.Fatalf("Publish: %v (bad messages must be skipped, not retried)", err)
	}
	if w.Skipped() != 2 {
		t.Errorf("Skipped = %d, want 2", w.Skipped())
	}
	for _, want := range []string{"id=node-01/r/2", "not an Arrow IPC stream", "id=node-01/r/3", "truncated Arrow IPC stream"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not contain %q:\n%s", want, logs.String())
		}
	}
	if got, want := out.String(), wantLines[0]+"\n"+wantLines[1]+"\n"; got != want {
		t.Errorf("printed:\n%s\nwant:\n%s", got, want)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(flows); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: err = %v, want ErrClosed", err)
	}
}

func TestPublishStopsOnCancelledContext(t *testing.T) {
	m, err := flowcodec.NewEncoder().Encode(nil, testFlows())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	if err := New(&out, nil, flowcodec.NewDecoder()).Publish(ctx, []schemas.Message{{Value: m}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if out.Len() != 0 {
		t.Fatalf("printed %q after cancellation", out.String())
	}
}

func TestPublishWithoutDecoderFails(t *testing.T) {
	var out bytes.Buffer
	if err := New(&out, nil, nil).Publish(context.Background(), []schemas.Message{{Value: []byte("x")}}); !errors.Is(err, ErrNoDecoder) {
		t.Fatalf("err = %v, want ErrNoDecoder", err)
	}
}

// TestLinesAreWhatTheObserverStubsPrint: for random flows, each line is
// byte for byte what encoding/json prints for the observer.GetFlowsResponse
// of the flow (the hubble CLI's JSON output), although the sink does not
// link the Observer API's stubs.
func TestLinesAreWhatTheObserverStubsPrint(t *testing.T) {
	g := flowtest.NewGen(3)
	flows := append(testFlows(), schemas.Flow{})
	for range 500 {
		flows = append(flows, g.Flow())
	}
	var out bytes.Buffer
	if err := New(&out, nil, nil).Write(flows); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	for i := range flows {
		p := hubble.ToProto(&flows[i])
		resp := &observerpb.GetFlowsResponse{
			ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: p},
			NodeName:      p.GetNodeName(),
			Time:          p.GetTime(),
		}
		if err := enc.Encode(resp); err != nil {
			t.Fatal(err)
		}
	}
	got, wantLines := strings.Split(out.String(), "\n"), strings.Split(want.String(), "\n")
	if len(got) != len(wantLines) {
		t.Fatalf("%d lines, want %d", len(got), len(wantLines))
	}
	for i := range got {
		if got[i] != wantLines[i] {
			t.Fatalf("line %d:\n got %s\nwant %s", i, got[i], wantLines[i])
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteReportsOutputErrors(t *testing.T) {
	err := New(failingWriter{}, nil, nil).Write(testFlows())
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the output error", err)
	}
}
