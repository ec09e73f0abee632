package hubblegrpc

import (
	"sort"
	"sync"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// nodeTable is what the source knows of the upstream's nodes: their state
// as the server reports it (GetNodes, node status events of Hubble Relay),
// or connected once their flows arrive. Safe for concurrent use.
type nodeTable struct {
	mu        sync.Mutex
	server    string
	connected bool // the source's stream to the server is up
	nodes     map[string]*observerpb.Node
	gauge     *prometheus.GaugeVec // flowbus_source_upstream_nodes{state}
}

func newNodeTable(server string, gauge *prometheus.GaugeVec) *nodeTable {
	return &nodeTable{server: server, nodes: map[string]*observerpb.Node{}, gauge: gauge}
}

// set records a node's state; it reports whether the state changed.
func (t *nodeTable) set(name string, state relaypb.NodeState, from *observerpb.Node) bool {
	if name == "" {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[name]
	if n == nil {
		n = &observerpb.Node{Name: name}
		t.nodes[name] = n
	}
	changed := n.GetState() != state
	if from != nil {
		n.Version, n.Address, n.Tls, n.UptimeNs = from.GetVersion(), from.GetAddress(), from.GetTls(), from.GetUptimeNs()
		n.NumFlows, n.MaxFlows, n.SeenFlows = from.GetNumFlows(), from.GetMaxFlows(), from.GetSeenFlows()
	}
	n.State = state
	t.updateGauge()
	return changed
}

// seen marks a node whose flow arrived as connected, unless it already is.
func (t *nodeTable) seen(name string) bool {
	t.mu.Lock()
	n := t.nodes[name]
	known := n != nil && n.GetState() == relaypb.NodeState_NODE_CONNECTED
	t.mu.Unlock()
	if known {
		return false
	}
	return t.set(name, relaypb.NodeState_NODE_CONNECTED, nil)
}

// setConnected records whether the stream to the server is up.
func (t *nodeTable) setConnected(up bool) {
	t.mu.Lock()
	t.connected = up
	t.updateGauge()
	t.mu.Unlock()
}

// list returns the nodes with their state (copies). While the source cannot
// reach the server every node is reported unavailable (the server itself,
// by its address, when no node is known yet): their flows cannot arrive.
func (t *nodeTable) list() []*observerpb.Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*observerpb.Node, 0, max(1, len(t.nodes)))
	for _, n := range t.nodes {
		c := &observerpb.Node{Name: n.GetName(), Version: n.GetVersion(), Address: n.GetAddress(), State: n.GetState(), Tls: n.GetTls(),
			UptimeNs: n.GetUptimeNs(), NumFlows: n.GetNumFlows(), MaxFlows: n.GetMaxFlows(), SeenFlows: n.GetSeenFlows()}
		if !t.connected {
			c.State = relaypb.NodeState_NODE_UNAVAILABLE
		}
		out = append(out, c)
	}
	if len(out) == 0 && !t.connected {
		out = append(out, &observerpb.Node{Name: t.server, Address: t.server, State: relaypb.NodeState_NODE_UNAVAILABLE})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// updateGauge sets flowbus_source_upstream_nodes{state}. Called with mu held.
func (t *nodeTable) updateGauge() {
	if t.gauge == nil {
		return
	}
	counts := map[string]float64{}
	for name := range relaypb.NodeState_value {
		counts[name] = 0
	}
	for _, n := range t.nodes {
		st := n.GetState()
		if !t.connected {
			st = relaypb.NodeState_NODE_UNAVAILABLE
		}
		counts[st.String()]++
	}
	for st, v := range counts {
		t.gauge.WithLabelValues(st).Set(v)
	}
}
