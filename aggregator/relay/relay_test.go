package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flowbus/flowbus/internal/observer"
	"github.com/flowbus/flowbus/internal/servetest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

var base = time.Date(2026, 11, 25, 21, 47, 0, 0, time.UTC)

// agentFlows returns n flows of agent i, interleaved in time with the other
// agents': flow k of agent i is at base + (3k+i) ms.
func agentFlows(i, n, from int) []schemas.Flow {
	var fs []schemas.Flow
	for k := from; k < from+n; k++ {
		fs = append(fs, schemas.Flow{
			UUID: fmt.Sprintf("a%d-%03d", i, k), TimeNs: base.Add(time.Duration(3*k+i) * time.Millisecond).UnixNano(),
			NodeName: fmt.Sprintf("node-%d", i), Verdict: flowpb.Verdict_FORWARDED, EventType: hubble.MsgTypeTrace, IPVersion: flowpb.IPVersion_IPv4,
			L4Protocol: 6, SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"), SrcPort: 1000, DstPort: 80,
			TCPFlags: schemas.FlagSYN, Count: 1,
		})
	}
	return fs
}

type agent struct {
	ring   *observer.Ring
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func (a *agent) stop() {
	a.cancel()
	<-a.done
}

// startAgent serves a ring on addr ("127.0.0.x:port", port 0 for any).
func startAgent(t *testing.T, i int, addr string) *agent {
	t.Helper()
	ring := observer.NewRing(1024, nil)
	srv, err := observer.NewServer(observer.Config{NodeName: fmt.Sprintf("node-%d", i)}, ring, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{ring: ring, addr: lis.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-a.done:
		default:
		}
	})
	return a
}

func startRelay(t *testing.T, cfg Config) observerpb.ObserverClient {
	t.Helper()
	if cfg.SortWindow == 0 {
		cfg.SortWindow = 200 * time.Millisecond
	}
	cfg.RetryInterval = 100 * time.Millisecond
	r, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := servetest.Serve(t, r.Serve)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return observerpb.NewObserverClient(conn)
}

// threeAgents starts three agents on 127.0.0.1-3 sharing one port, so that
// one DNS name can resolve to all of them as a headless Service does.
func threeAgents(t *testing.T, flowsEach int) ([]*agent, string) {
	t.Helper()
	first := startAgent(t, 1, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(first.addr)
	agents := []*agent{first, startAgent(t, 2, "127.0.0.2:"+port), startAgent(t, 3, "127.0.0.3:"+port)}
	for i, a := range agents {
		a.ring.Observe(agentFlows(i+1, flowsEach, 0))
	}
	return agents, port
}

func lookup(port string) func(context.Context, string) ([]string, error) {
	return func(_ context.Context, host string) ([]string, error) {
		if host != "agents.flowbus.test" {
			return nil, fmt.Errorf("no such host %s", host)
		}
		return []string{"127.0.0.3", "127.0.0.1", "127.0.0.2"}, nil
	}
}

func readAll(t *testing.T, c observerpb.ObserverClient, req *observerpb.GetFlowsRequest) ([]string, []*relaypb.NodeStatusEvent, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.GetFlows(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var uuids []string
	var statuses []*relaypb.NodeStatusEvent
	var last time.Time
	for {
		res, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return uuids, statuses, nil
		}
		if err != nil {
			return uuids, statuses, err
		}
		if ns := res.GetNodeStatus(); ns != nil {
			statuses = append(statuses, ns)
			continue
		}
		ts := res.GetTime().AsTime()
		if ts.Before(last) {
			t.Errorf("flow %s at %v after one at %v: not time-ordered", res.GetFlow().GetUuid(), ts, last)
		}
		last = ts
		uuids = append(uuids, res.GetFlow().GetUuid())
	}
}

// want lists the fixture UUIDs of agents in time order.
func want(agents []int, from, n int) []string {
	var out []string
	for k := from; k < from+n; k++ {
		for _, i := range agents {
			out = append(out, fmt.Sprintf("a%d-%03d", i, k))
		}
	}
	return out
}

func TestRelayMergesThreeAgentsCompleteAndInTimeOrder(t *testing.T) {
	_, port := threeAgents(t, 200)
	cases := []struct {
		name   string
		agents []string
	}{
		{"from a static list", []string{"127.0.0.1:" + port, "127.0.0.2:" + port, "127.0.0.3:" + port}},
		{"from one DNS name resolving to every agent", []string{"agents.flowbus.test:" + port}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := startRelay(t, Config{Agents: tc.agents, LookupHost: lookup(port)})
			got, statuses, err := readAll(t, c, &observerpb.GetFlowsRequest{Number: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if w := want([]int{1, 2, 3}, 0, 200); !slices.Equal(got, w) {
				t.Errorf("got %d flows, want %d in order; first got %v", len(got), len(w), got[:min(6, len(got))])
			}
			if len(statuses) != 1 || statuses[0].GetStateChange() != relaypb.NodeState_NODE_CONNECTED ||
				!slices.Equal(statuses[0].GetNodeNames(), []string{"node-1", "node-2", "node-3"}) {
				t.Errorf("node status events %v, want one NODE_CONNECTED for node-1, node-2, node-3", statuses)
			}
			last, _, err := readAll(t, c, &observerpb.GetFlowsRequest{Number: 2})
			if err != nil {
				t.Fatal(err)
			}
			if w := want([]int{1, 2, 3}, 198, 2); !slices.Equal(last, w) {
				t.Errorf("number 2 gave %v, want %v (two per node)", last, w)
			}
		})
	}
}

func TestRelayRefusesWhatAgentsRefuse(t *testing.T) {
	_, port := threeAgents(t, 1)
	c := startRelay(t, Config{Agents: []string{"agents.flowbus.test:" + port}, LookupHost: lookup(port)})
	_, _, err := readAll(t, c, &observerpb.GetFlowsRequest{Whitelist: []*flowpb.FlowFilter{{NodeLabels: []string{"a=b"}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "node_labels") {
		t.Errorf("err = %v, want InvalidArgument naming node_labels", err)
	}
}

func TestRelayStreamSurvivesAnAgentStoppingMidStream(t *testing.T) {
	agents, port := threeAgents(t, 5)
	c := startRelay(t, Config{Agents: []string{"agents.flowbus.test:" + port, "127.0.0.4:" + port}, LookupHost: lookup(port)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := c.GetFlows(ctx, &observerpb.GetFlowsRequest{Follow: true, Number: 5})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var statuses []*relaypb.NodeStatusEvent
	recvUntil := func(uuid string) {
		t.Helper()
		for {
			res, err := s.Recv()
			if err != nil {
				t.Fatalf("stream ended: %v (got %v)", err, got)
			}
			if ns := res.GetNodeStatus(); ns != nil {
				statuses = append(statuses, ns)
				continue
			}
			got = append(got, res.GetFlow().GetUuid())
			if res.GetFlow().GetUuid() == uuid {
				return
			}
		}
	}
	recvUntil("a3-004")
	if w := want([]int{1, 2, 3}, 0, 5); !slices.Equal(got, w) {
		t.Errorf("history: got %v, want %v", got, w)
	}
	// The three agents are announced; 127.0.0.4 has no agent: reported
	// unavailable once.
	if len(statuses) != 2 || statuses[0].GetStateChange() != relaypb.NodeState_NODE_CONNECTED || len(statuses[0].GetNodeNames()) != 3 ||
		statuses[1].GetStateChange() != relaypb.NodeState_NODE_UNAVAILABLE || !slices.Equal(statuses[1].GetNodeNames(), []string{"127.0.0.4:" + port}) {
		t.Errorf("statuses %v, want NODE_CONNECTED for the three agents, then one NODE_UNAVAILABLE for 127.0.0.4", statuses)
	}
	agents[1].stop() // node-2 goes away mid-stream
	got, statuses = nil, nil
	for _, i := range []int{0, 2} {
		agents[i].ring.Observe(agentFlows(i+1, 3, 5))
	}
	recvUntil("a3-007")
	for len(got) < 6 {
		recvUntil("a1-007")
	}
	slices.Sort(got)
	if w := []string{"a1-005", "a1-006", "a1-007", "a3-005", "a3-006", "a3-007"}; !slices.Equal(got, w) {
		t.Errorf("after the stop: got %v, want %v", got, w)
	}
	found := false
	for _, st := range statuses {
		found = found || (st.GetStateChange() == relaypb.NodeState_NODE_ERROR && slices.Equal(st.GetNodeNames(), []string{"node-2"}))
	}
	if !found {
		t.Errorf("statuses %v, want a NODE_ERROR for node-2", statuses)
	}

	nodes, err := c.GetNodes(ctx, &observerpb.GetNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, n := range nodes.GetNodes() {
		states = append(states, n.GetName()+"="+n.GetState().String())
	}
	if w := []string{"127.0.0.4:" + port + "=NODE_UNAVAILABLE", "node-1=NODE_CONNECTED", "node-2=NODE_UNAVAILABLE", "node-3=NODE_CONNECTED"}; !slices.Equal(states, w) {
		t.Errorf("nodes %v, want %v", states, w)
	}
	st, err := c.ServerStatus(ctx, &observerpb.ServerStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetNumConnectedNodes().GetValue() != 2 || st.GetNumUnavailableNodes().GetValue() != 2 || st.GetNumFlows() != 16 || st.GetMaxFlows() != 2048 {
		t.Errorf("status %v", st)
	}
}

func TestRelayFollowsTheDNSNameAsAgentsComeAndGo(t *testing.T) {
	_, port := threeAgents(t, 1)
	var mu sync.Mutex
	ips := []string{"127.0.0.1", "127.0.0.2"}
	look := func(_ context.Context, host string) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(ips), nil
	}
	c := startRelay(t, Config{Agents: []string{"agents.flowbus.test:" + port}, LookupHost: look, ResolveInterval: 50 * time.Millisecond})
	names := func() []string {
		res, err := c.GetNodes(context.Background(), &observerpb.GetNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range res.GetNodes() {
			out = append(out, n.GetName())
		}
		return out
	}
	waitFor := func(want []string) {
		t.Helper()
		var got []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got = names(); slices.Equal(got, want) {
				return
			}
		}
		t.Errorf("nodes %v, want %v", got, want)
	}
	waitFor([]string{"node-1", "node-2"})
	mu.Lock()
	ips = []string{"127.0.0.2", "127.0.0.3"} // a pod replaced: node-1 gone, node-3 new
	mu.Unlock()
	waitFor([]string{"node-2", "node-3"})
	got, _, err := readAll(t, c, &observerpb.GetFlowsRequest{Number: 10})
	if err != nil {
		t.Fatal(err)
	}
	if w := []string{"a2-000", "a3-000"}; !slices.Equal(got, w) {
		t.Errorf("flows %v, want %v", got, w)
	}
}
