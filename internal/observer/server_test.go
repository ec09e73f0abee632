package observer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowbus/flowbus/internal/servetest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// startServer serves ring on a random local port and returns a client
// built from cilium's generated Go stubs.
func startServer(t testing.TB, ring *Ring) (observerpb.ObserverClient, *Server) {
	t.Helper()
	srv, err := NewServer(Config{NodeName: "node-a", Version: "test"}, ring, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	addr := servetest.Serve(t, srv.Serve)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return observerpb.NewObserverClient(conn), srv
}

func fixtureRing() *Ring {
	r := NewRing(64, nil)
	r.Observe(fixtureFlows())
	return r
}

// collect runs GetFlows to the end and returns flow UUIDs and lost events.
func collect(t *testing.T, c observerpb.ObserverClient, req *observerpb.GetFlowsRequest) ([]string, []*flowpb.LostEvent, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.GetFlows(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var uuids []string
	var lost []*flowpb.LostEvent
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return uuids, lost, nil
		}
		if err != nil {
			return uuids, lost, err
		}
		switch {
		case resp.GetFlow() != nil:
			uuids = append(uuids, resp.GetFlow().GetUuid())
			if !resp.GetTime().AsTime().Equal(resp.GetFlow().GetTime().AsTime()) || resp.GetNodeName() != resp.GetFlow().GetNodeName() {
				t.Errorf("response time/node %v/%q differ from the flow's", resp.GetTime(), resp.GetNodeName())
			}
		case resp.GetLostEvents() != nil:
			lost = append(lost, resp.GetLostEvents())
		}
	}
}

func TestGetFlowsFiltersOverGRPC(t *testing.T) {
	c, _ := startServer(t, fixtureRing())
	for _, tc := range filterCases() {
		t.Run(tc.Name, func(t *testing.T) {
			got, lost, err := collect(t, c, &observerpb.GetFlowsRequest{Number: 100, Whitelist: tc.White, Blacklist: tc.Black})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.Want) || len(lost) != 0 {
				t.Errorf("got %v (lost %v), want %v", got, lost, tc.Want)
			}
		})
	}
}

func TestGetFlowsRejectsWithInvalidArgument(t *testing.T) {
	c, _ := startServer(t, fixtureRing())
	cases := []struct {
		name string
		req  *observerpb.GetFlowsRequest
		text string
	}{
		{"an unsupported whitelist field", &observerpb.GetFlowsRequest{Whitelist: ff(&flowpb.FlowFilter{TraceId: []string{"x"}})}, "trace_id"},
		{"an unsupported blacklist field", &observerpb.GetFlowsRequest{Blacklist: ff(&flowpb.FlowFilter{IpTraceId: []uint64{1}})}, "ip_trace_id"},
		{"an unsupported field beside supported ones", &observerpb.GetFlowsRequest{Whitelist: ff(&flowpb.FlowFilter{SourcePod: []string{"a"}, NodeLabels: []string{"x"}})}, "node_labels"},
		{"first with follow", &observerpb.GetFlowsRequest{First: true, Follow: true}, "first cannot be specified with follow"},
		{"a malformed IP", &observerpb.GetFlowsRequest{Whitelist: ff(&flowpb.FlowFilter{SourceIp: []string{"nope"}})}, "source_ip"},
		{"an invalid since", &observerpb.GetFlowsRequest{Since: &timestamppb.Timestamp{Nanos: -1}}, "since"},
	}
	for _, tc := range cases {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			_, _, err := collect(t, c, tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.text) {
				t.Fatalf("err = %v, want InvalidArgument naming %q", err, tc.text)
			}
		})
	}
}

func TestGetFlowsSelectors(t *testing.T) {
	c, _ := startServer(t, fixtureRing())
	ts := func(i int) *timestamppb.Timestamp {
		return timestamppb.New(baseTime.Add(time.Duration(i) * time.Second))
	}
	forwarded := ff(&flowpb.FlowFilter{Verdict: []flowpb.Verdict{flowpb.Verdict_FORWARDED}})
	cases := []struct {
		name string
		req  *observerpb.GetFlowsRequest
		want []string
	}{
		{"number returns the last N", &observerpb.GetFlowsRequest{Number: 3}, []string{"f08", "f09", "f10"}},
		{"number counts only matching flows", &observerpb.GetFlowsRequest{Number: 2, Blacklist: ff(&flowpb.FlowFilter{Uuid: []string{"f09"}})}, []string{"f08", "f10"}},
		{"first returns the first N", &observerpb.GetFlowsRequest{Number: 2, First: true}, []string{"f01", "f02"}},
		{"first with a filter", &observerpb.GetFlowsRequest{Number: 1, First: true, Whitelist: ff(&flowpb.FlowFilter{Protocol: []string{"udp"}})}, []string{"f04"}},
		{"since and until bound the range", &observerpb.GetFlowsRequest{Since: ts(5), Until: ts(7)}, []string{"f05", "f06", "f07"}},
		{"since alone reads to the end", &observerpb.GetFlowsRequest{Since: ts(9)}, []string{"f09", "f10"}},
		{"until alone with number", &observerpb.GetFlowsRequest{Number: 2, First: true, Until: ts(1)}, []string{"f01"}},
		{"number larger than the ring returns all", &observerpb.GetFlowsRequest{Number: 1000, Whitelist: forwarded}, without("f03")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := collect(t, c, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLostEventsAppearInTheStream(t *testing.T) {
	r := NewRing(64, nil)
	flows := fixtureFlows()
	r.Observe(flows[:2])
	r.Lost(flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, 7)
	r.Observe(flows[2:4])
	c, _ := startServer(t, r)
	got, lost, err := collect(t, c, &observerpb.GetFlowsRequest{Number: 3, Whitelist: ff(&flowpb.FlowFilter{Uuid: []string{"f01", "f02", "f03", "f04"}})})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"f02", "f03", "f04"}) {
		t.Errorf("flows %v, want f02 f03 f04 (lost events do not count towards number)", got)
	}
	if len(lost) != 1 || lost[0].GetSource() != flowpb.LostEventSource_PERF_EVENT_RING_BUFFER || lost[0].GetNumEventsLost() != 7 {
		t.Errorf("lost events %v, want one PERF_EVENT_RING_BUFFER of 7", lost)
	}
}

func TestFollowerReceivesNewFlows(t *testing.T) {
	r := NewRing(64, nil)
	flows := fixtureFlows()
	r.Observe(flows[:3])
	c, _ := startServer(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.GetFlows(ctx, &observerpb.GetFlowsRequest{Number: 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 4 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.GetFlow().GetUuid())
		if len(got) == 1 {
			r.Observe(flows[3:6])
		}
	}
	if want := []string{"f03", "f04", "f05", "f06"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestStalledFollowerDoesNotBlockThePipeline stalls a follower (it does not
// read) while the pipeline writes far more than the ring and the gRPC
// windows hold: Observe keeps returning, and once the follower reads again
// every written flow is either received or counted as lost, exactly.
func TestStalledFollowerDoesNotBlockThePipeline(t *testing.T) {
	r := NewRing(64, nil)
	r.Observe(fixtureFlows()[:1])
	c, srv := startServer(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := c.GetFlows(ctx, &observerpb.GetFlowsRequest{Follow: true, Number: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The first flow arriving proves the stream is in place before the writes.
	if resp, err := stream.Recv(); err != nil || resp.GetFlow().GetUuid() != "f01" {
		t.Fatalf("first response %v, %v", resp, err)
	}
	const total = 20000
	batch := make([]schemas.Flow, 100)
	big := strings.Repeat("x", 2000) // large flows fill the transport windows quickly
	for n := 0; n < total; n += len(batch) {
		for i := range batch {
			f := fixtureFlows()[0]
			f.UUID = fmt.Sprintf("s%05d", n+i)
			f.L7.HTTPURL = big
			batch[i] = f
		}
		r.Observe(batch) // must return although nobody reads
	}
	var received, lost uint64
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if le := resp.GetLostEvents(); le != nil {
			if le.GetSource() != flowpb.LostEventSource_HUBBLE_RING_BUFFER {
				t.Fatalf("lost event source %v", le.GetSource())
			}
			lost += le.GetNumEventsLost()
			continue
		}
		received++
		if resp.GetFlow().GetUuid() == fmt.Sprintf("s%05d", total-1) {
			break
		}
	}
	if received+lost != total || lost == 0 {
		t.Errorf("received %d + lost %d, want %d with some lost", received, lost, total)
	}
	if got := uint64(testutil.ToFloat64(srv.ReaderLost())); got != lost {
		t.Errorf("flowbus_observer_reader_lost_total = %d, want %d", got, lost)
	}
}

func TestServerStatusNodesAndNamespaces(t *testing.T) {
	now := baseTime.Add(30 * time.Second)
	r := NewRing(8, func() time.Time { return now })
	r.Observe(fixtureFlows()) // 10 flows into 8 slots
	r.Lost(flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, 3)
	c, _ := startServer(t, r)
	ctx := context.Background()
	st, err := c.ServerStatus(ctx, &observerpb.ServerStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The ring holds f04..f10 and the lost record: 7 flows. They cover
	// f04 (t=4 s) to now (t=30 s), so the rate is 7 / 26 s.
	if st.GetNumFlows() != 7 || st.GetMaxFlows() != 8 || st.GetSeenFlows() != 10 || st.GetVersion() != "test" {
		t.Errorf("status %v", st)
	}
	if want := 7.0 / 26.0; st.GetFlowsRate() != want {
		t.Errorf("flows rate %v, want %v", st.GetFlowsRate(), want)
	}
	nodes, err := c.GetNodes(ctx, &observerpb.GetNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.GetNodes()) != 1 || nodes.GetNodes()[0].GetName() != "node-a" || nodes.GetNodes()[0].GetState() != relaypb.NodeState_NODE_CONNECTED ||
		nodes.GetNodes()[0].GetNumFlows() != 7 || nodes.GetNodes()[0].GetSeenFlows() != 10 {
		t.Errorf("nodes %v", nodes)
	}
	ns, err := c.GetNamespaces(ctx, &observerpb.GetNamespacesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range ns.GetNamespaces() {
		names = append(names, n.GetNamespace())
	}
	if want := []string{"default", "kube-system", "shop"}; !slices.Equal(names, want) {
		t.Errorf("namespaces %v, want %v", names, want)
	}
	_, err = c.GetAgentEvents(ctx, &observerpb.GetAgentEventsRequest{})
	if err == nil {
		var s grpc.ServerStreamingClient[observerpb.GetAgentEventsResponse]
		s, err = c.GetAgentEvents(ctx, &observerpb.GetAgentEventsRequest{})
		if err == nil {
			_, err = s.Recv()
		}
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("GetAgentEvents err = %v, want Unimplemented", err)
	}
}

// An agent whose ring holds the flows of other nodes (a Hubble source over
// Hubble Relay) reports those nodes, as Hubble Relay does: connected and
// unavailable ones counted, the unavailable ones named.
func TestServerStatusReportsTheUpstreamNodes(t *testing.T) {
	nodes := []*observerpb.Node{
		{Name: "node-2", State: relaypb.NodeState_NODE_UNAVAILABLE},
		{Name: "node-0", State: relaypb.NodeState_NODE_CONNECTED, SeenFlows: 5},
		{Name: "node-1", State: relaypb.NodeState_NODE_ERROR},
	}
	srv, err := NewServer(Config{NodeName: "flowbus-a", Nodes: func() []*observerpb.Node { return slices.Clone(nodes) }}, fixtureRing(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := srv.ServerStatus(context.Background(), &observerpb.ServerStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetNumConnectedNodes().GetValue() != 1 || st.GetNumUnavailableNodes().GetValue() != 2 ||
		!slices.Equal(st.GetUnavailableNodes(), []string{"node-1", "node-2"}) || st.GetSeenFlows() != 10 {
		t.Errorf("status: %d connected, %d unavailable %v, %d seen; want 1, 2 [node-1 node-2], 10",
			st.GetNumConnectedNodes().GetValue(), st.GetNumUnavailableNodes().GetValue(), st.GetUnavailableNodes(), st.GetSeenFlows())
	}
	res, err := srv.GetNodes(context.Background(), &observerpb.GetNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range res.GetNodes() {
		got = append(got, n.GetName()+"="+n.GetState().String())
	}
	if want := []string{"node-0=NODE_CONNECTED", "node-1=NODE_ERROR", "node-2=NODE_UNAVAILABLE"}; !slices.Equal(got, want) {
		t.Errorf("nodes %v, want %v", got, want)
	}
}

func TestFieldMaskSelectsFields(t *testing.T) {
	c, _ := startServer(t, fixtureRing())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.GetFlows(ctx, &observerpb.GetFlowsRequest{Number: 1, Whitelist: ff(&flowpb.FlowFilter{Uuid: []string{"f03"}}),
		FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"verdict", "source.pod_name", "source", "destination.namespace", "l4.TCP.destination_port"}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	want := &flowpb.Flow{
		Verdict:     flowpb.Verdict_DROPPED,
		Source:      hubble.ToProto(&fixtureFlows()[2]).GetSource(),
		Destination: &flowpb.Endpoint{Namespace: "data"},
		L4:          &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{DestinationPort: 6379}}},
	}
	if !proto.Equal(res.GetFlow(), want) {
		t.Errorf("got %v\nwant %v", res.GetFlow(), want)
	}
	_, _, err = collect(t, c, &observerpb.GetFlowsRequest{FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"source.galaxy"}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "field_mask") {
		t.Errorf("bad mask: err = %v, want InvalidArgument naming field_mask", err)
	}
}

func TestRingCapacity(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, DefaultRingSize}, {1, 2}, {3, 4}, {4096, 4096}, {5000, 8192}} {
		t.Run(fmt.Sprintf("capacity %d holds %d events", tc.in, tc.want), func(t *testing.T) {
			if got := NewRing(tc.in, nil).Cap(); got != uint64(tc.want) {
				t.Errorf("cap %d, want %d", got, tc.want)
			}
		})
	}
}
