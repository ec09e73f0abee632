package observer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/flowbus/flowbus/internal/observer/filter"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Config configures the Observer server.
type Config struct {
	ListenAddress string // default ":4244"
	NodeName      string // this node, reported in GetNodes and lost events
	Version       string // reported in ServerStatus and GetNodes
	TLS           ServerTLS
	// Nodes, when set, lists the nodes whose flows the ring holds and their
	// state, as a Hubble source sees its upstream (one Cilium node, or every
	// node behind Hubble Relay). ServerStatus then counts them as connected
	// (NODE_CONNECTED) or unavailable (any other state) and names the
	// unavailable ones, and GetNodes lists them, as Hubble Relay does.
	// Nil: this node alone. Called per request; must be safe for concurrent use.
	Nodes func() []*observerpb.Node
	// Lost, when set, is called with HUBBLE_RING_BUFFER and the count each
	// time a GetFlows reader loses events to ring overwrites (besides
	// flowbus_observer_reader_lost_total), as Hubble's ring counts them in
	// hubble_lost_events_total{source="hubble_ring_buffer"}. It must be
	// safe for concurrent use.
	Lost func(source flowpb.LostEventSource, n uint64)
}

// DefaultListenAddress is Hubble's agent port.
const DefaultListenAddress = ":4244"

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if c.ListenAddress == "" {
		c.ListenAddress = DefaultListenAddress
	}
	if c.Version == "" {
		c.Version = "flowbus"
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("observer: %w", err)
	}
	return nil
}

// chunk is how many events a reader copies out of the ring under one read
// lock (an event is ~900 bytes): enough to amortise the lock, small enough
// that a `--last 20` request does not copy and allocate hundreds of flows.
const chunk = 64

// Server serves cilium's observer.Observer gRPC service from a Ring.
// Safe for concurrent use.
type Server struct {
	observerpb.UnimplementedObserverServer
	cfg  Config
	ring *Ring
	log  *slog.Logger

	readerLost prometheus.Counter
	sent       prometheus.Counter
	streams    prometheus.Gauge
}

// NewServer returns a Server reading ring; it registers its counters on reg
// (nil: none).
func NewServer(cfg Config, ring *Ring, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, ring: ring, log: log,
		readerLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowbus_observer_reader_lost_total",
			Help: "Events GetFlows readers lost because the ring overwrote them before they were sent (slow followers).",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowbus_observer_flows_sent_total",
			Help: "Flows sent to GetFlows clients.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowbus_observer_streams",
			Help: "GetFlows streams being served.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.readerLost, s.sent, s.streams} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register observer metrics: %w", err)
			}
		}
	}
	return s, nil
}

// ReaderLost returns the number of events readers lost to ring overwrites.
func (s *Server) ReaderLost() prometheus.Counter { return s.readerLost }

// Sent returns the number of flows sent to GetFlows clients.
func (s *Server) Sent() prometheus.Counter { return s.sent }

// ListenAndServe listens on cfg.ListenAddress and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := ListenAndServe(ctx, s.cfg.ListenAddress, s.Serve); err != nil {
		return fmt.Errorf("observer: %w", err)
	}
	return nil
}

// Serve serves on lis until ctx ends, then stops gracefully (streams are
// cancelled). It closes lis.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if err := ServeObserver(ctx, s, s.cfg.TLS, lis); err != nil {
		return fmt.Errorf("observer: %w", err)
	}
	return nil
}

// GetFlows streams flows from the ring with Hubble's semantics: number (the
// last N matching flows, or the first N with first), follow, since, until,
// whitelist and blacklist. Lost events bypass filters and are not counted
// towards number. field_mask selects the Flow fields sent, as in Hubble.
func (s *Server) GetFlows(req *observerpb.GetFlowsRequest, stream observerpb.Observer_GetFlowsServer) error {
	if req.GetFirst() && req.GetFollow() {
		return status.Error(codes.InvalidArgument, "first cannot be specified with follow")
	}
	fs, err := filter.CompileFilters(req.GetWhitelist(), req.GetBlacklist())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var sinceNs, untilNs int64
	since, until := req.GetSince() != nil, req.GetUntil() != nil
	if since {
		if err := req.GetSince().CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "since: %v", err)
		}
		sinceNs = req.GetSince().AsTime().UnixNano()
	}
	if until {
		if err := req.GetUntil().CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "until: %v", err)
		}
		untilNs = req.GetUntil().AsTime().UnixNano()
	}
	mask, err := newFieldMask(req.GetFieldMask())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	s.streams.Inc()
	defer s.streams.Dec()

	ctx := stream.Context()
	_, end := s.ring.bounds()
	seq := s.startSeq(req, fs, since, sinceNs)
	follow, number := req.GetFollow(), req.GetNumber()
	var count uint64
	buf := make([]event, 0, chunk)
	for {
		events, next, lost, wait := s.ring.readChunk(buf, seq)
		if lost > 0 {
			s.readerLost.Add(float64(lost))
			if s.cfg.Lost != nil {
				s.cfg.Lost(flowpb.LostEventSource_HUBBLE_RING_BUFFER, lost)
			}
			if err := stream.Send(s.lostResponse(flowpb.LostEventSource_HUBBLE_RING_BUFFER, lost, time.Now().UnixNano())); err != nil {
				return err
			}
		}
		for i := range events {
			e := &events[i]
			if !follow && e.seq >= end {
				return nil
			}
			if e.lost {
				if err := stream.Send(s.lostResponse(e.lostSource, e.lostN, e.lostTimeNs)); err != nil {
					return err
				}
				continue
			}
			f := &e.flow
			if until && f.TimeNs > untilNs {
				return nil
			}
			if since && f.TimeNs < sinceNs {
				continue
			}
			if !fs.Pass(f) {
				continue
			}
			pf := hubble.ToProto(f)
			//lint:ignore SA1019 the hubble CLI prints the deprecated summary
			pf.Summary = Summary(f)
			pf = mask.apply(pf)
			if err := stream.Send(&observerpb.GetFlowsResponse{
				Time:          pf.GetTime(),
				NodeName:      pf.GetNodeName(),
				ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: pf},
			}); err != nil {
				return err
			}
			s.sent.Inc()
			count++
			if !follow && number > 0 && count >= number {
				return nil
			}
		}
		seq = next
		if len(events) > 0 {
			continue
		}
		if !follow {
			return nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// startSeq finds where a GetFlows read starts, as Hubble's newRingReader:
// first → the oldest event; follow without number or since → the next write;
// otherwise walk back until number matching flows were passed, or a
// matching flow older than since.
func (s *Server) startSeq(req *observerpb.GetFlowsRequest, fs *filter.Filters, since bool, sinceNs int64) uint64 {
	oldest, next := s.ring.bounds()
	if req.GetFirst() && !since {
		return oldest
	}
	if req.GetFollow() && req.GetNumber() == 0 && !since {
		return next
	}
	seq := next
	var count uint64
	buf := make([]event, 0, chunk)
	for {
		events := s.ring.readBackChunk(buf, seq)
		if len(events) == 0 {
			return seq
		}
		for i := range events {
			e := &events[i]
			if e.seq != seq-1 { // overwritten under us: start at what we have
				return seq
			}
			seq = e.seq
			if e.lost || !fs.Pass(&e.flow) {
				continue
			}
			count++
			if since {
				if e.flow.TimeNs < sinceNs {
					return seq + 1
				}
			} else if count == req.GetNumber() {
				return seq
			}
		}
	}
}

func (s *Server) lostResponse(src flowpb.LostEventSource, n uint64, tsNs int64) *observerpb.GetFlowsResponse {
	return &observerpb.GetFlowsResponse{
		Time:     timestamppb.New(time.Unix(0, tsNs)),
		NodeName: s.cfg.NodeName,
		ResponseTypes: &observerpb.GetFlowsResponse_LostEvents{LostEvents: &flowpb.LostEvent{
			Source:        src,
			NumEventsLost: n,
		}},
	}
}

// ServerStatus reports the ring's counters and the flow rate over the last
// minute (or over the time the ring covers, if shorter), as Hubble does.
func (s *Server) ServerStatus(ctx context.Context, _ *observerpb.ServerStatusRequest) (*observerpb.ServerStatusResponse, error) {
	st := s.ring.Stats()
	res := &observerpb.ServerStatusResponse{
		NumFlows:            st.NumFlows,
		MaxFlows:            st.MaxFlows,
		SeenFlows:           st.SeenFlows,
		UptimeNs:            uint64(st.Uptime.Nanoseconds()),
		Version:             s.cfg.Version,
		FlowsRate:           s.flowRate(s.ring.now()),
		NumConnectedNodes:   wrapperspb.UInt32(1),
		NumUnavailableNodes: wrapperspb.UInt32(0),
	}
	if s.cfg.Nodes != nil {
		var connected, unavailable uint32
		for _, n := range s.cfg.Nodes() {
			if n.GetState() == relaypb.NodeState_NODE_CONNECTED {
				connected++
				continue
			}
			unavailable++
			res.UnavailableNodes = append(res.UnavailableNodes, n.GetName())
		}
		sort.Strings(res.UnavailableNodes)
		res.NumConnectedNodes, res.NumUnavailableNodes = wrapperspb.UInt32(connected), wrapperspb.UInt32(unavailable)
	}
	return res, nil
}

func (s *Server) flowRate(now time.Time) float64 {
	sinceNs := now.Add(-time.Minute).UnixNano()
	_, seq := s.ring.bounds()
	var count int
	var lastTS int64
	buf := make([]event, 0, chunk)
	exhausted := true
scan:
	for {
		events := s.ring.readBackChunk(buf, seq)
		if len(events) == 0 {
			break
		}
		for i := range events {
			e := &events[i]
			seq = e.seq
			if e.lost {
				continue
			}
			if e.flow.TimeNs < sinceNs {
				exhausted = false
				break scan
			}
			lastTS = e.flow.TimeNs
			count++
		}
	}
	if exhausted && lastTS != 0 {
		sinceNs = lastTS
	}
	d := float64(now.UnixNano()-sinceNs) / 1e9
	if d <= 0 {
		return 0
	}
	return float64(count) / d
}

// GetNodes returns this node, or the nodes Config.Nodes lists (sorted by name).
func (s *Server) GetNodes(ctx context.Context, _ *observerpb.GetNodesRequest) (*observerpb.GetNodesResponse, error) {
	if s.cfg.Nodes != nil {
		nodes := s.cfg.Nodes()
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].GetName() < nodes[j].GetName() })
		return &observerpb.GetNodesResponse{Nodes: nodes}, nil
	}
	st := s.ring.Stats()
	return &observerpb.GetNodesResponse{Nodes: []*observerpb.Node{{
		Name:      s.cfg.NodeName,
		Version:   s.cfg.Version,
		Address:   s.cfg.ListenAddress,
		State:     relaypb.NodeState_NODE_CONNECTED,
		Tls:       &observerpb.TLS{Enabled: s.cfg.TLS.Enabled()},
		UptimeNs:  uint64(st.Uptime.Nanoseconds()),
		NumFlows:  st.NumFlows,
		MaxFlows:  st.MaxFlows,
		SeenFlows: st.SeenFlows,
	}}}, nil
}

// GetNamespaces returns the namespaces of the flows in the ring, sorted.
func (s *Server) GetNamespaces(ctx context.Context, _ *observerpb.GetNamespacesRequest) (*observerpb.GetNamespacesResponse, error) {
	type key struct{ cluster, ns string }
	seen := map[key]bool{}
	_, seq := s.ring.bounds()
	buf := make([]event, 0, chunk)
	for {
		events := s.ring.readBackChunk(buf, seq)
		if len(events) == 0 {
			break
		}
		for i := range events {
			e := &events[i]
			seq = e.seq
			if e.lost {
				continue
			}
			for _, ep := range []*schemas.Endpoint{&e.flow.Src, &e.flow.Dst} {
				if ep.Namespace != "" {
					seen[key{ep.ClusterName, ep.Namespace}] = true
				}
			}
		}
	}
	out := make([]*observerpb.Namespace, 0, len(seen))
	for k := range seen {
		out = append(out, &observerpb.Namespace{Cluster: k.cluster, Namespace: k.ns})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Cluster < out[j].Cluster
	})
	return &observerpb.GetNamespacesResponse{Namespaces: out}, nil
}

// GetAgentEvents is not served: flowbus agents emit no Cilium agent events.
func (s *Server) GetAgentEvents(*observerpb.GetAgentEventsRequest, observerpb.Observer_GetAgentEventsServer) error {
	return status.Error(codes.Unimplemented, "flowbus does not record Cilium agent events")
}

// GetDebugEvents is not served: flowbus has no datapath debug events.
func (s *Server) GetDebugEvents(*observerpb.GetDebugEventsRequest, observerpb.Observer_GetDebugEventsServer) error {
	return status.Error(codes.Unimplemented, "flowbus does not record datapath debug events")
}
