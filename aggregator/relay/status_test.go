package relay

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"

	"github.com/flowbus/flowbus/internal/servetest"
)

// statusAgent is an Observer server that answers ServerStatus and GetNodes
// with fixed values.
type statusAgent struct {
	observerpb.UnimplementedObserverServer
	name string
	st   *observerpb.ServerStatusResponse
}

func (a *statusAgent) ServerStatus(context.Context, *observerpb.ServerStatusRequest) (*observerpb.ServerStatusResponse, error) {
	return a.st, nil
}

func (a *statusAgent) GetNodes(context.Context, *observerpb.GetNodesRequest) (*observerpb.GetNodesResponse, error) {
	return &observerpb.GetNodesResponse{Nodes: []*observerpb.Node{{Name: a.name}}}, nil
}

func serveStatusAgent(t *testing.T, a *statusAgent) string {
	t.Helper()
	return servetest.Serve(t, func(ctx context.Context, lis net.Listener) error {
		s := grpc.NewServer()
		observerpb.RegisterObserverServer(s, a)
		go func() { <-ctx.Done(); s.Stop() }()
		return s.Serve(lis)
	})
}

// TestRelayServerStatusAggregatesAsHubbleRelay: as Hubble Relay, the
// relay's ServerStatus sums num_flows, max_flows, seen_flows and
// flows_rate over the agents that answer, reports the oldest agent's
// uptime (not the relay's own), counts connected and unavailable agents
// and names at most 10 unavailable ones.
func TestRelayServerStatusAggregatesAsHubbleRelay(t *testing.T) {
	agents := []string{
		serveStatusAgent(t, &statusAgent{name: "node-1", st: &observerpb.ServerStatusResponse{
			NumFlows: 10, MaxFlows: 1024, SeenFlows: 100, UptimeNs: 5_000_000_000, FlowsRate: 1.5}}),
		serveStatusAgent(t, &statusAgent{name: "node-2", st: &observerpb.ServerStatusResponse{
			NumFlows: 20, MaxFlows: 2048, SeenFlows: 200, UptimeNs: 7_000_000_000, FlowsRate: 2.5}}),
		serveStatusAgent(t, &statusAgent{name: "node-3", st: &observerpb.ServerStatusResponse{
			NumFlows: 30, MaxFlows: 4096, SeenFlows: 300, UptimeNs: 6_000_000_000, FlowsRate: 3}}),
	}
	var down []string
	for i := range 12 { // nothing listens on 127.0.0.1:1
		down = append(down, fmt.Sprintf("127.0.1.%d:1", i+1))
	}
	c := startRelay(t, Config{Agents: append(slices.Clone(agents), down...), Version: "relay-test"})
	st, err := c.ServerStatus(context.Background(), &observerpb.ServerStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetNumFlows() != 60 || st.GetMaxFlows() != 7168 || st.GetSeenFlows() != 600 || st.GetFlowsRate() != 7 {
		t.Errorf("num_flows %d max_flows %d seen_flows %d flows_rate %v; want 60, 7168, 600, 7",
			st.GetNumFlows(), st.GetMaxFlows(), st.GetSeenFlows(), st.GetFlowsRate())
	}
	if st.GetUptimeNs() != 7_000_000_000 {
		t.Errorf("uptime_ns %d, want 7000000000 (the oldest agent's)", st.GetUptimeNs())
	}
	if st.GetVersion() != "relay-test" {
		t.Errorf("version %q", st.GetVersion())
	}
	if st.GetNumConnectedNodes().GetValue() != 3 || st.GetNumUnavailableNodes().GetValue() != 12 {
		t.Errorf("connected %v unavailable %v; want 3 and 12", st.GetNumConnectedNodes(), st.GetNumUnavailableNodes())
	}
	if n := len(st.GetUnavailableNodes()); n != 10 {
		t.Errorf("unavailable_nodes names %d agents (%v), want 10 (Hubble Relay's cap)", n, st.GetUnavailableNodes())
	}
	for _, name := range st.GetUnavailableNodes() {
		if !slices.Contains(down, name) {
			t.Errorf("unavailable node %q is not one of the agents down", name)
		}
	}
}
