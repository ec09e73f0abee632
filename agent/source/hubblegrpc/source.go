package hubblegrpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// finalFlushWait bounds how long Run waits to deliver its last batch.
const finalFlushWait = 5 * time.Second

// pending is what the resume state records of a flow once it is delivered.
type pending struct {
	node string
	ts   int64
	key  uint64
}

// item is one response of the stream, in its wire form (or the stream's
// end), handed to the session loop.
type item struct {
	frame []byte
	err   error
}

// Source follows Hubble's GetFlows (a node's Cilium agent, or Hubble Relay)
// and sends its flows downstream; see the package documentation. Create
// with New, Run once. Nodes is safe for concurrent use with Run.
type Source struct {
	cfg    Config
	log    *slog.Logger
	creds  grpc.DialOption
	nodes  *nodeTable
	res    *resume
	m      sourceMetrics
	dec    *hubble.Decoder
	frames chan []byte // free wire buffers, reused between the reader and the loop

	out       chan<- []schemas.Flow
	lost      func(flowpb.LostEventSource, uint64)
	batch     []schemas.Flow
	pend      []pending
	batchAt   time.Time
	flowBuf   []byte // a flow's parts joined, when a response splits it
	lastNode  string // node of the previous flow, known connected
	connected bool   // a stream was opened at least once
	savedAt   time.Time
	delivered atomic.Uint64
}

type sourceMetrics struct {
	malformed, duplicates, reconnects prometheus.Counter
	skipped, lost, gaps, nodeEvents   *prometheus.CounterVec
	connected                         prometheus.Gauge
	nodes                             *prometheus.GaugeVec
}

func newMetrics() sourceMetrics {
	cl := prometheus.Labels{"source": "hubble"}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: cl})
	}
	vec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: cl}, labels)
	}
	return sourceMetrics{
		malformed:  counter("flowbus_source_malformed_total", "Flows from Hubble that could not be converted (a malformed IP or extension)."),
		duplicates: counter("flowbus_source_duplicates_total", "Flows a resumed Hubble stream sent again and the source dropped (already delivered)."),
		reconnects: counter("flowbus_source_reconnects_total", "Hubble streams that ended or could not be opened, each followed by a reconnection."),
		skipped:    vec("flowbus_source_skipped_total", "Hubble responses that carry no flow, lost events or node status, by type.", "type"),
		lost: vec("flowbus_source_lost_events_total",
			"Events the Hubble server reported lost (LostEvents: its ring overwrote them before they were sent, or its own queues dropped them), by where they were lost.", "lost_source"),
		gaps: vec("flowbus_source_resume_gaps_total",
			"Resumed Hubble streams that no longer held the last flow delivered from a node (the server restarted, or overwrote it): flows in between, if any, are lost uncounted.", "node"),
		nodeEvents: vec("flowbus_source_node_events_total", "Node status events of Hubble Relay (a node unavailable, back, gone), by state and node.", "state", "node"),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flowbus_source_connected", ConstLabels: cl,
			Help: "1 while the stream to the Hubble server is open."}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flowbus_source_upstream_nodes", ConstLabels: cl,
			Help: "Nodes behind the Hubble server, by state (all unavailable while the server cannot be reached)."}, []string{"state"}),
	}
}

func (m sourceMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.malformed, m.duplicates, m.reconnects, m.skipped, m.lost, m.gaps, m.nodeEvents, m.connected, m.nodes}
}

// New returns a Hubble source with its metrics registered on reg (nil:
// none): flowbus_source_{malformed,duplicates,reconnects,skipped,
// lost_events,resume_gaps,node_events}_total, flowbus_source_connected and
// flowbus_source_upstream_nodes, all with source="hubble". It reads the
// TLS files now, so that a missing or unreadable one fails here.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if strings.HasPrefix(cfg.Server, "/") {
		cfg.Server = "unix://" + cfg.Server
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	creds, err := cfg.TLS.DialOption()
	if err != nil {
		return nil, fmt.Errorf("hubble TLS: %w", err)
	}
	s := &Source{cfg: cfg, log: logger, creds: creds, m: newMetrics(), res: newResume(cfg.ResumeOverlap, cfg.HistoryMax),
		dec: hubble.NewDecoder(), frames: make(chan []byte, frameQueue+2)}
	s.nodes = newNodeTable(cfg.Server, s.m.nodes)
	if reg != nil {
		for _, c := range s.m.collectors() {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register hubble source metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Name returns "hubble".
func (s *Source) Name() string { return "hubble" }

// Nodes returns the nodes behind the server and their state, for the
// agent's Observer API (observer.Config.Nodes).
func (s *Source) Nodes() []*observerpb.Node { return s.nodes.list() }

// Delivered returns the number of flows sent downstream so far.
func (s *Source) Delivered() uint64 { return s.delivered.Load() }

// Run follows the server until ctx ends, reconnecting with backoff and
// resuming after the last flow delivered, and sends its flows in batches
// (new slices, owned by the receiver) on out; lost events call lost (if not
// nil). It returns nil when ctx ends, after delivering what it received and
// saving its position; it returns an error (wrapping ErrPermanent) only
// when the first connection fails for a reason retrying cannot cure, or the
// server refuses the request.
func (s *Source) Run(ctx context.Context, out chan<- []schemas.Flow, lost func(flowpb.LostEventSource, uint64)) error {
	s.out, s.lost = out, lost
	if s.cfg.StateFile != "" {
		if err := s.res.load(s.cfg.StateFile, s.cfg.Server); err != nil {
			s.log.Warn("hubble: not resuming from the saved position: the server's whole buffer is read, and flows published before may be published again", "err", err)
		} else if len(s.res.nodes) > 0 {
			s.log.Info("hubble: resuming from the saved position", "file", s.cfg.StateFile, "nodes", len(s.res.nodes), "flows_remembered", s.res.n)
		}
	}
	err := s.loop(ctx)
	// Flows already received are delivered even when ctx has ended (the
	// agent drains its source at shutdown), but not waited for forever.
	fctx, cancel := context.WithTimeout(context.Background(), finalFlushWait)
	defer cancel()
	if n := len(s.batch); n > 0 {
		if ferr := s.flush(fctx); ferr != nil && err == nil {
			err = fmt.Errorf("hubble: %d flows received but not delivered at shutdown: %w", n, ferr)
		}
	}
	s.save()
	return err
}

// loop runs sessions until ctx ends, waiting BackoffMin, doubling up to
// BackoffMax, between them (back to BackoffMin after a session that
// delivered something).
func (s *Source) loop(ctx context.Context) error {
	wait := s.cfg.BackoffMin
	for {
		got, err := s.session(ctx)
		s.nodes.setConnected(false)
		s.m.connected.Set(0)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrPermanent) {
			return err
		}
		msg, permanent := explain(err, s.cfg.Server, s.tlsSettings())
		if permanent && !s.connected {
			return fmt.Errorf("%w (%w)", msg, ErrPermanent)
		}
		s.m.reconnects.Inc()
		if got {
			wait = s.cfg.BackoffMin
		}
		s.log.Warn("hubble: stream ended; reconnecting", "err", msg, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, s.cfg.BackoffMax)
	}
}

func (s *Source) tlsSettings() tlsSettings {
	t := s.cfg.TLS
	return tlsSettings{enabled: t.Enabled, ca: t.CAFile, cert: t.CertFile, server: t.ServerName}
}

// session connects, asks for the flows from the resume point on, and
// handles the stream until it ends. got reports whether it received anything.
func (s *Source) session(ctx context.Context) (got bool, err error) {
	conn, err := grpc.NewClient(s.cfg.Server, s.creds, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: s.cfg.BackoffMin, Multiplier: 1.6, Jitter: 0.2, MaxDelay: s.cfg.BackoffMax},
		MinConnectTimeout: 5 * time.Second,
	}))
	if err != nil {
		return false, fmt.Errorf("hubble server %q: %w (%w)", s.cfg.Server, err, ErrPermanent)
	}
	defer conn.Close()
	client := observerpb.NewObserverClient(conn)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// ServerStatus first: it fails fast, with the TLS error if there is one.
	pctx, pcancel := context.WithTimeout(sctx, 10*time.Second)
	st, err := client.ServerStatus(pctx, &observerpb.ServerStatusRequest{})
	pcancel()
	if err != nil {
		return false, err
	}
	s.refreshNodes(sctx, client)
	req := &observerpb.GetFlowsRequest{Follow: true, Whitelist: s.cfg.Whitelist, Blacklist: s.cfg.Blacklist}
	since, resumed := s.res.since(time.Now())
	req.Since = timestamppb.New(time.Unix(0, since)) // 0: from the oldest flow the server holds
	if resumed {
		s.res.begin(since)
	}
	stream, err := client.GetFlows(sctx, req, grpc.ForceCodec(frameCodec{}))
	if err != nil {
		return false, err
	}
	s.connected = true
	s.nodes.setConnected(true)
	s.m.connected.Set(1)
	s.log.Info("hubble: following", "server", s.cfg.Server, "server_version", st.GetVersion(), "resumed", resumed,
		"since", time.Unix(0, since).UTC().Format(time.RFC3339Nano), "nodes_connected", st.GetNumConnectedNodes().GetValue(),
		"nodes_unavailable", st.GetNumUnavailableNodes().GetValue())

	items := make(chan item, frameQueue)
	go func() {
		for {
			var fr frame
			select {
			case fr.b = <-s.frames:
			default:
			}
			err := stream.RecvMsg(&fr)
			select {
			case items <- item{fr.b, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	flushTick := time.NewTicker(s.cfg.FlushInterval)
	defer flushTick.Stop()
	nodesTick := time.NewTicker(s.cfg.NodesInterval)
	defer nodesTick.Stop()
	for {
		select {
		case it := <-items:
			if it.err != nil {
				// Deliver what came before the end, so that the next
				// stream resumes after it.
				if ferr := s.flush(ctx); ferr != nil {
					return got, ferr
				}
				return got, it.err
			}
			got = true
			err := s.handle(ctx, it.frame)
			select {
			case s.frames <- it.frame:
			default:
			}
			if err != nil {
				return got, err
			}
		case <-flushTick.C:
			if len(s.batch) > 0 && time.Since(s.batchAt) >= s.cfg.FlushInterval {
				if err := s.flush(ctx); err != nil {
					return got, err
				}
			}
			if time.Since(s.savedAt) >= s.cfg.SaveInterval {
				s.save()
			}
		case <-nodesTick.C:
			go s.refreshNodes(sctx, client)
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}

// refreshNodes reads the server's node list (Hubble Relay's nodes; a
// Cilium agent answers Unimplemented, and its node is learned from its flows).
func (s *Source) refreshNodes(ctx context.Context, client observerpb.ObserverClient) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := client.GetNodes(cctx, &observerpb.GetNodesRequest{})
	if err != nil {
		return
	}
	for _, n := range res.GetNodes() {
		if s.nodes.set(n.GetName(), n.GetState(), n) && n.GetState() != relaypb.NodeState_NODE_CONNECTED {
			s.log.Warn("hubble: node not connected", "node", n.GetName(), "state", n.GetState().String())
		}
	}
}

// handle routes one response of the stream, given in its wire form: a
// flow is decoded straight into the batch (hubble.Decoder), anything else
// through its protobuf message.
func (s *Source) handle(ctx context.Context, b []byte) error {
	flow, node, err := flowOf(b, &s.flowBuf)
	if err != nil {
		s.m.malformed.Inc()
		s.log.Warn("hubble: skipping a response that does not decode", "err", err)
		return nil
	}
	if flow != nil {
		return s.addFlow(ctx, flow, node)
	}
	res := &observerpb.GetFlowsResponse{}
	if err := proto.Unmarshal(b, res); err != nil {
		s.m.malformed.Inc()
		s.log.Warn("hubble: skipping a response that does not decode", "err", err)
		return nil
	}
	switch r := res.GetResponseTypes().(type) {
	case *observerpb.GetFlowsResponse_LostEvents:
		le := r.LostEvents
		s.m.lost.WithLabelValues(le.GetSource().String()).Add(float64(le.GetNumEventsLost()))
		s.log.Warn("hubble: the server reports lost events", "node", res.GetNodeName(), "source", le.GetSource().String(), "lost", le.GetNumEventsLost())
		if s.lost != nil {
			s.lost(le.GetSource(), le.GetNumEventsLost())
		}
	case *observerpb.GetFlowsResponse_NodeStatus:
		ns := r.NodeStatus
		for _, name := range ns.GetNodeNames() {
			s.m.nodeEvents.WithLabelValues(ns.GetStateChange().String(), name).Inc()
			s.nodes.set(name, ns.GetStateChange(), nil)
			if name == s.lastNode {
				s.lastNode = ""
			}
			level := slog.LevelWarn
			if ns.GetStateChange() == relaypb.NodeState_NODE_CONNECTED {
				level = slog.LevelInfo
			}
			s.log.Log(ctx, level, "hubble: node status", "node", name, "state", ns.GetStateChange().String(), "message", ns.GetMessage())
		}
	default:
		name := fmt.Sprintf("%T", r)
		if i := strings.LastIndex(name, "_"); i >= 0 {
			name = strings.ToLower(name[i+1:])
		}
		s.m.skipped.WithLabelValues(name).Inc()
	}
	return nil
}

// addFlow decodes a flow (its wire form) into the batch, and takes it out
// again if it does not decode or a resumed stream sent it again.
func (s *Source) addFlow(ctx context.Context, b, respNode []byte) error {
	n := len(s.batch)
	s.batch = append(s.batch, schemas.Flow{})
	f := &s.batch[n]
	served, err := s.dec.DecodeFlow(b, f)
	if err != nil {
		s.batch = s.batch[:n]
		s.m.malformed.Inc()
		s.log.Warn("hubble: skipping a flow that does not decode", "err", err)
		return nil
	}
	f.CountAs = hubble.CountAs(f, served)
	if f.NodeName == "" {
		f.NodeName = string(respNode)
	}
	key := flowKey(f.NodeName, f.UUID, func() []byte { return b })
	dup, gap := s.res.check(f.NodeName, f.TimeNs, key)
	if dup {
		s.batch = s.batch[:n]
		s.m.duplicates.Inc()
		return nil
	}
	if gap {
		s.m.gaps.WithLabelValues(f.NodeName).Inc()
		s.log.Warn("hubble: the resumed stream no longer holds the last flow delivered from this node (the server restarted, or its buffer overwrote it): flows in between, if any, are lost and cannot be counted",
			"node", f.NodeName)
	}
	if f.NodeName != s.lastNode {
		s.nodes.seen(f.NodeName)
		s.lastNode = f.NodeName
	}
	if n == 0 {
		s.batchAt = time.Now()
	}
	s.pend = append(s.pend, pending{f.NodeName, f.TimeNs, key})
	if len(s.batch) >= s.cfg.BatchSize {
		return s.flush(ctx)
	}
	return nil
}

// flush sends the current batch and records its flows as delivered.
func (s *Source) flush(ctx context.Context) error {
	if len(s.batch) == 0 {
		return nil
	}
	select {
	case s.out <- s.batch:
	case <-ctx.Done():
		return ctx.Err()
	}
	now := time.Now()
	for _, p := range s.pend {
		s.res.delivered(p.node, p.ts, p.key, now)
	}
	s.delivered.Add(uint64(len(s.batch)))
	s.batch = make([]schemas.Flow, 0, s.cfg.BatchSize)
	s.pend = s.pend[:0]
	return nil
}

// save writes the resume state, if a file is configured.
func (s *Source) save() {
	s.savedAt = time.Now()
	if s.cfg.StateFile == "" {
		return
	}
	if err := s.res.save(s.cfg.StateFile, s.cfg.Server, s.savedAt); err != nil {
		s.log.Warn("hubble: cannot save the resume position; a restart may read flows again", "err", err)
	}
}

// frameQueue is how many responses the stream's reader keeps ahead of the loop.
const frameQueue = 1024

// frame is a response of the stream in its wire form.
type frame struct{ b []byte }

// frameCodec hands GetFlows responses over undecoded (a frame), and
// encodes the request as protobuf.
type frameCodec struct{}

func (frameCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (frameCodec) Name() string                  { return "proto" }

func (frameCodec) Unmarshal(data []byte, v any) error {
	if f, ok := v.(*frame); ok {
		f.b = append(f.b[:0], data...) // data is gRPC's buffer, reused after this returns
		return nil
	}
	return proto.Unmarshal(data, v.(proto.Message))
}

// flowOf returns the wire form of the flow a GetFlowsResponse carries (nil
// when it carries something else) and the response's node_name, both
// slices of b. A flow given in several parts (protobuf merges them) is
// joined in *buf.
func flowOf(b []byte, buf *[]byte) (flow, node []byte, err error) {
	var member protowire.Number // the response_types oneof's member
	parts := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, nil, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		data, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1:
			if member != 1 {
				parts = 0
			}
			member = 1
			if parts++; parts == 1 {
				flow = data
				continue
			}
			if parts == 2 {
				*buf = append((*buf)[:0], flow...)
			}
			*buf = append(*buf, data...)
			flow = *buf
		case num == 1000:
			node = data
		case num < 1000:
			member = num // another member of response_types (node status, lost events, ...)
		}
	}
	if member != 1 {
		return nil, node, nil
	}
	if flow == nil {
		flow = []byte{}
	}
	return flow, node, nil
}
