package relay

import (
	"context"
	"slices"
	"testing"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
)

// TestRelayGetFlowsStartsWithNodeStatusAsHubbleRelay: as Hubble Relay,
// GetFlows first sends one NODE_CONNECTED event naming the agents it
// reads, then one NODE_UNAVAILABLE naming those it cannot reach, both with
// the relay's node name, and only then flows; follow or not.
func TestRelayGetFlowsStartsWithNodeStatusAsHubbleRelay(t *testing.T) {
	_, port := threeAgents(t, 3)
	down := "127.0.0.4:" + port
	c := startRelay(t, Config{Agents: []string{"agents.flowbus.test:" + port, down}, LookupHost: lookup(port), NodeName: "relay-0"})
	for _, follow := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := c.GetFlows(ctx, &observerpb.GetFlowsRequest{Number: 3, Follow: follow})
		if err != nil {
			t.Fatal(err)
		}
		var got []*observerpb.GetFlowsResponse
		for len(got) < 2+9 {
			res, err := s.Recv()
			if err != nil {
				t.Fatalf("follow %v: after %d responses: %v", follow, len(got), err)
			}
			got = append(got, res)
		}
		cancel()
		type ev struct {
			state relaypb.NodeState
			names []string
			node  string
		}
		wantEvents := []ev{
			{relaypb.NodeState_NODE_CONNECTED, []string{"node-1", "node-2", "node-3"}, "relay-0"},
			{relaypb.NodeState_NODE_UNAVAILABLE, []string{down}, "relay-0"},
		}
		for i, w := range wantEvents {
			ns := got[i].GetNodeStatus()
			if ns == nil || ns.GetStateChange() != w.state || !slices.Equal(ns.GetNodeNames(), w.names) || got[i].GetNodeName() != w.node || got[i].GetTime() == nil {
				t.Errorf("follow %v: response %d is %v; want node status %v %v from %s", follow, i, got[i], w.state, w.names, w.node)
			}
		}
		var uuids []string
		for _, res := range got[2:] {
			if res.GetNodeStatus() != nil {
				t.Errorf("follow %v: node status %v among the flows", follow, res.GetNodeStatus())
			}
			uuids = append(uuids, res.GetFlow().GetUuid())
		}
		if w := want([]int{1, 2, 3}, 0, 3); !slices.Equal(uuids, w) {
			t.Errorf("follow %v: flows %v, want %v", follow, uuids, w)
		}
	}
}
