package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/flowbus/flowbus/internal/observer"
	"github.com/flowbus/flowbus/internal/observer/relayclient"
)

// Defaults of Config.
const (
	DefaultListenAddress   = ":4245" // Hubble relay's port
	DefaultResolveInterval = 30 * time.Second
	DefaultRetryInterval   = 5 * time.Second
	DefaultSortWindow      = 500 * time.Millisecond
	DefaultBatchWindow     = 5 * time.Second
)

// Config configures a Relay.
type Config struct {
	ListenAddress   string        // default ":4245"
	Agents          []string      // host:port of agents; a DNS name may resolve to many (headless Service)
	ResolveInterval time.Duration // how often names are resolved again (default 30 s)
	RetryInterval   time.Duration // how often a follow stream retries agents it lost or did not reach (default 5 s)
	SortWindow      time.Duration // follow: how long a flow may wait for older flows of quieter agents (default 500 ms)
	BatchWindow     time.Duration // non-follow: the same, for requests that end (default 5 s: exact order unless an agent stalls that long)
	StatusTimeout   time.Duration // per-agent timeout of ServerStatus/GetNodes/GetNamespaces (default 2 s)
	Version         string
	// NodeName is the relay's own name, the node_name of the node status
	// events it sends (default: $K8S_NODE_NAME, else the host name, as
	// Hubble Relay's).
	NodeName  string
	ServerTLS observer.ServerTLS // TLS towards clients
	ClientTLS observer.ClientTLS // TLS towards agents

	// LookupHost resolves names; nil uses net.DefaultResolver (tests inject).
	LookupHost func(ctx context.Context, host string) ([]string, error)
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if len(c.Agents) == 0 {
		return errors.New("relay: no agents: give at least one host:port (a name may resolve to many agents)")
	}
	for _, a := range c.Agents {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("relay: agent %q is not host:port: %w", a, err)
		}
	}
	if c.ListenAddress == "" {
		c.ListenAddress = DefaultListenAddress
	}
	if c.ResolveInterval <= 0 {
		c.ResolveInterval = DefaultResolveInterval
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.SortWindow <= 0 {
		c.SortWindow = DefaultSortWindow
	}
	if c.BatchWindow <= 0 {
		c.BatchWindow = DefaultBatchWindow
	}
	if c.StatusTimeout <= 0 {
		c.StatusTimeout = 2 * time.Second
	}
	if c.Version == "" {
		c.Version = "flowbus"
	}
	if c.NodeName == "" {
		c.NodeName = os.Getenv("K8S_NODE_NAME")
	}
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	if c.LookupHost == nil {
		c.LookupHost = net.DefaultResolver.LookupHost
	}
	if err := c.ServerTLS.Validate(); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// Relay serves cilium's observer.Observer API over many agents. Safe for
// concurrent use.
type Relay struct {
	observerpb.UnimplementedObserverServer
	cfg   Config
	log   *slog.Logger
	peers *relayclient.PeerSet

	flows      prometheus.Counter
	peerErrors prometheus.Counter
	agents     prometheus.Gauge
}

// New returns a Relay; it registers its counters on reg (nil: none).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	creds, err := cfg.ClientTLS.DialOption()
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r := &Relay{
		cfg: cfg, log: log,
		peers: relayclient.NewPeerSet(func(addr string) (*grpc.ClientConn, error) {
			// gRPC's default reconnect backoff grows to 120 s while an agent
			// is down, so a restarted agent would wait that long to be read
			// again; the retries keep the relay's pace instead.
			return grpc.NewClient(addr, creds, grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{BaseDelay: min(time.Second, cfg.RetryInterval), Multiplier: 1.6, Jitter: 0.2,
					MaxDelay: cfg.RetryInterval},
				MinConnectTimeout: 20 * time.Second,
			}))
		}),
		flows:      prometheus.NewCounter(prometheus.CounterOpts{Name: "flowbus_relay_flows_total", Help: "Flows the relay forwarded to clients."}),
		peerErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowbus_relay_agent_stream_errors_total", Help: "Agent streams that failed or could not be opened."}),
		agents:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "flowbus_relay_agents", Help: "Agents the relay currently knows (after resolution)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.flows, r.peerErrors, r.agents} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register relay metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Refresh resolves the agent targets now and updates the agent set.
func (r *Relay) Refresh(ctx context.Context) {
	addrs, errs := relayclient.Resolve(ctx, r.cfg.LookupHost, r.cfg.Agents)
	for _, err := range errs {
		r.log.Warn("agent resolution failed", "err", err)
	}
	if len(addrs) == 0 && len(errs) > 0 {
		return // keep what we have rather than dropping every agent on a DNS hiccup
	}
	added, removed, err := r.peers.Update(addrs)
	if err != nil {
		r.log.Warn("agent client", "err", err)
	}
	if len(added)+len(removed) > 0 {
		r.log.Info("agents changed", "added", added, "removed", removed)
	}
	r.agents.Set(float64(len(r.peers.Snapshot())))
}

// ListenAndServe listens on cfg.ListenAddress and Serves.
func (r *Relay) ListenAndServe(ctx context.Context) error {
	if err := observer.ListenAndServe(ctx, r.cfg.ListenAddress, r.Serve); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// Serve resolves the agents (again every ResolveInterval) and serves the
// Observer API on lis until ctx ends.
func (r *Relay) Serve(ctx context.Context, lis net.Listener) error {
	defer r.peers.CloseAll()
	r.Refresh(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(r.cfg.ResolveInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.Refresh(ctx)
			}
		}
	}()
	if err := observer.ServeObserver(ctx, r, r.cfg.ServerTLS, lis); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// maxUnavailableNames is how many unavailable agents ServerStatus names at
// most, as Hubble Relay (numUnavailableNodesReportMax): the count covers
// them all.
const maxUnavailableNames = 10

// ServerStatus aggregates the agents' status as Hubble Relay does:
// num_flows, max_flows, seen_flows and flows_rate summed over the agents
// that answer, uptime_ns the oldest agent's uptime (a sum would mean
// nothing; the relay's own uptime is not reported), the relay's version;
// agents that do not answer within StatusTimeout are counted as
// unavailable and the first 10 of them (by address) named.
func (r *Relay) ServerStatus(ctx context.Context, _ *observerpb.ServerStatusRequest) (*observerpb.ServerStatusResponse, error) {
	res := &observerpb.ServerStatusResponse{Version: r.cfg.Version}
	var connected, unavailable uint32
	for _, n := range r.nodes(ctx) {
		if n.GetState() != relaypb.NodeState_NODE_CONNECTED {
			unavailable++
			if len(res.UnavailableNodes) < maxUnavailableNames {
				res.UnavailableNodes = append(res.UnavailableNodes, n.GetName())
			}
			continue
		}
		connected++
		res.NumFlows += n.GetNumFlows()
		res.MaxFlows += n.GetMaxFlows()
		res.SeenFlows += n.GetSeenFlows()
		res.FlowsRate += n.rate
		res.UptimeNs = max(res.UptimeNs, n.GetUptimeNs())
	}
	res.NumConnectedNodes, res.NumUnavailableNodes = wrapperspb.UInt32(connected), wrapperspb.UInt32(unavailable)
	return res, nil
}

type nodeInfo struct {
	*observerpb.Node
	rate float64
}

// nodes asks every agent for its status, concurrently.
func (r *Relay) nodes(ctx context.Context) []nodeInfo {
	peers := r.peers.Snapshot()
	out := make([]nodeInfo, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, r.cfg.StatusTimeout)
			defer cancel()
			n := &observerpb.Node{Name: p.Addr, Address: p.Addr, State: relaypb.NodeState_NODE_UNAVAILABLE, Tls: &observerpb.TLS{Enabled: r.cfg.ClientTLS.Enabled, ServerName: r.cfg.ClientTLS.ServerName}}
			st, err := p.Client.ServerStatus(cctx, &observerpb.ServerStatusRequest{})
			if err == nil {
				n.Name = p.NodeName(cctx)
				n.State, n.Version, n.UptimeNs = relaypb.NodeState_NODE_CONNECTED, st.GetVersion(), st.GetUptimeNs()
				n.NumFlows, n.MaxFlows, n.SeenFlows = st.GetNumFlows(), st.GetMaxFlows(), st.GetSeenFlows()
				out[i] = nodeInfo{Node: n, rate: st.GetFlowsRate()}
				return
			}
			if name := p.KnownName(); name != "" {
				n.Name = name
			}
			out[i] = nodeInfo{Node: n}
		})
	}
	wg.Wait()
	return out
}

// GetNodes lists every agent with its state (NODE_CONNECTED or
// NODE_UNAVAILABLE) and counters, sorted by name.
func (r *Relay) GetNodes(ctx context.Context, _ *observerpb.GetNodesRequest) (*observerpb.GetNodesResponse, error) {
	res := &observerpb.GetNodesResponse{}
	for _, n := range r.nodes(ctx) {
		res.Nodes = append(res.Nodes, n.Node)
	}
	sort.Slice(res.Nodes, func(i, j int) bool { return res.Nodes[i].GetName() < res.Nodes[j].GetName() })
	return res, nil
}

// GetNamespaces merges the namespaces of every reachable agent.
func (r *Relay) GetNamespaces(ctx context.Context, _ *observerpb.GetNamespacesRequest) (*observerpb.GetNamespacesResponse, error) {
	type key struct{ cluster, ns string }
	seen := map[key]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range r.peers.Snapshot() {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, r.cfg.StatusTimeout)
			defer cancel()
			res, err := p.Client.GetNamespaces(cctx, &observerpb.GetNamespacesRequest{})
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, n := range res.GetNamespaces() {
				seen[key{n.GetCluster(), n.GetNamespace()}] = true
			}
		})
	}
	wg.Wait()
	res := &observerpb.GetNamespacesResponse{}
	for k := range seen {
		res.Namespaces = append(res.Namespaces, &observerpb.Namespace{Cluster: k.cluster, Namespace: k.ns})
	}
	slices.SortFunc(res.Namespaces, func(a, b *observerpb.Namespace) int {
		if a.GetNamespace() != b.GetNamespace() {
			if a.GetNamespace() < b.GetNamespace() {
				return -1
			}
			return 1
		}
		if a.GetCluster() < b.GetCluster() {
			return -1
		}
		if a.GetCluster() > b.GetCluster() {
			return 1
		}
		return 0
	})
	return res, nil
}

// GetAgentEvents is not served (agents do not serve it either).
func (r *Relay) GetAgentEvents(*observerpb.GetAgentEventsRequest, observerpb.Observer_GetAgentEventsServer) error {
	return status.Error(codes.Unimplemented, "flowbus does not record Cilium agent events")
}

// GetDebugEvents is not served (agents do not serve it either).
func (r *Relay) GetDebugEvents(*observerpb.GetDebugEventsRequest, observerpb.Observer_GetDebugEventsServer) error {
	return status.Error(codes.Unimplemented, "flowbus does not record datapath debug events")
}

// GetFlows opens the same request on every agent and merges the streams in
// time order (relayclient.Merge): number, first, since and until apply per
// agent. As Hubble Relay, it first sends a NODE_CONNECTED node status event
// naming the agents it reads and a NODE_UNAVAILABLE one naming those it
// cannot reach (an agent still connecting is given StatusTimeout), then the
// flows; agents that fail later are reported as node status events too; a
// request an agent refuses as invalid is refused to the client.
func (r *Relay) GetFlows(req *observerpb.GetFlowsRequest, stream observerpb.Observer_GetFlowsServer) error {
	if req.GetFirst() && req.GetFollow() {
		return status.Error(codes.InvalidArgument, "first cannot be specified with follow")
	}
	window := r.cfg.BatchWindow
	if req.GetFollow() {
		window = r.cfg.SortWindow
	}
	return relayclient.Merge(stream.Context(), req, stream.Send, relayclient.MergeConfig{
		Peers: r.peers.Snapshot, Window: window, RetryInterval: r.cfg.RetryInterval, ConnectTimeout: r.cfg.StatusTimeout,
		NodeName: r.cfg.NodeName, Log: r.log,
		Sent: r.flows.Inc, PeerFailed: r.peerErrors.Inc,
	})
}
