package relayclient

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// event is what a per-agent pump hands the merger.
type event struct {
	peer *Peer
	res  *observerpb.GetFlowsResponse
	done bool
	err  error
}

type item struct {
	res     *observerpb.GetFlowsResponse
	ts      time.Time
	arrived time.Time
}

// merger orders the responses of several time-ordered agent streams: it
// emits the oldest queued response once every active stream has one queued
// (so the output is exactly time-ordered while all agents keep up), or once
// it has waited SortWindow (so a quiet or slow agent delays others at most
// that long).
type merger struct {
	window time.Duration
	queues map[*Peer][]item
	active map[*Peer]bool
	got    map[*Peer]bool // the stream delivered at least one response
	// reported is the last node state sent to the client per agent, so that
	// an agent that stays down is reported once, not at every retry.
	reported map[*Peer]relaypb.NodeState
}

func (m *merger) push(p *Peer, res *observerpb.GetFlowsResponse, now time.Time) {
	m.got[p] = true
	m.queues[p] = append(m.queues[p], item{res: res, ts: res.GetTime().AsTime(), arrived: now})
}

// next returns the response to emit now, if any.
func (m *merger) next(now time.Time) (*observerpb.GetFlowsResponse, bool) {
	var best *Peer
	for p, q := range m.queues {
		if len(q) == 0 {
			continue
		}
		if best == nil || q[0].ts.Before(m.queues[best][0].ts) || (q[0].ts.Equal(m.queues[best][0].ts) && p.Addr < best.Addr) {
			best = p
		}
	}
	if best == nil {
		return nil, false
	}
	head := m.queues[best][0]
	if now.Sub(head.arrived) < m.window {
		for p := range m.active {
			if len(m.queues[p]) == 0 {
				return nil, false
			}
		}
	}
	m.queues[best] = m.queues[best][1:]
	if len(m.queues[best]) == 0 {
		delete(m.queues, best)
	}
	return head.res, true
}

// deadline is when the oldest-arrived head may go out without waiting more.
func (m *merger) deadline() (time.Time, bool) {
	var d time.Time
	ok := false
	for _, q := range m.queues {
		if len(q) > 0 && (!ok || q[0].arrived.Before(d)) {
			d, ok = q[0].arrived, true
		}
	}
	return d.Add(m.window), ok
}

// MergeConfig configures Merge.
type MergeConfig struct {
	// Peers returns the peers to read from; it is asked again at every
	// retry, so that new peers join a follow stream.
	Peers func() []*Peer
	// Window is how long a response may wait for older responses of
	// quieter peers before it is sent anyway.
	Window time.Duration
	// RetryInterval is how often a follow stream (re)joins the peers it
	// lost or never had.
	RetryInterval time.Duration
	// ConnectTimeout bounds how long Merge waits, before anything is sent,
	// for peers whose connection is still being made (Peer.Available).
	ConnectTimeout time.Duration
	// NodeName is the node_name of the node status events (the relay's).
	NodeName string
	Log      *slog.Logger // nil: none
	// Sent and PeerFailed, when not nil, are called for every flow sent and
	// for every peer stream that failed or could not be opened.
	Sent, PeerFailed func()
}

// Merge opens req on every peer and sends the merged streams to send in
// time order, until every peer stream has ended (or, with follow, until ctx
// ends). Number, first, since and until apply per peer (as with Hubble
// relay: --last N gives N flows per node). As Hubble Relay, it starts with
// one NODE_CONNECTED node status event naming the peers it reads and one
// NODE_UNAVAILABLE naming those it cannot reach (each sent only if it
// names any), before any flow. A peer whose stream then fails is
// reported as NODE_UNAVAILABLE (before its first response) or NODE_ERROR,
// and the stream goes on with the others; with follow, peers that were
// lost, never reached or appear later are (re)joined every RetryInterval,
// from their newest flow on, and a lost peer that comes back is reported
// NODE_CONNECTED. A request a peer refuses as invalid
// (codes.InvalidArgument) ends Merge with that peer's error.
func Merge(ctx context.Context, req *observerpb.GetFlowsRequest, send func(*observerpb.GetFlowsResponse) error, cfg MergeConfig) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan event)
	m := &merger{window: cfg.Window, queues: map[*Peer][]item{}, active: map[*Peer]bool{}, got: map[*Peer]bool{}, reported: map[*Peer]relaypb.NodeState{}}
	start := func(p *Peer, req *observerpb.GetFlowsRequest) {
		m.active[p] = true
		go pump(ctx, p, req, events, cfg.ConnectTimeout)
	}
	connected, unavailable := classify(ctx, cfg.Peers(), cfg.ConnectTimeout)
	var names []string
	for _, c := range connected {
		m.reported[c.peer] = relaypb.NodeState_NODE_CONNECTED
		names = append(names, c.name)
		start(c.peer, req)
	}
	if len(names) > 0 {
		if err := send(nodeStatus(cfg.NodeName, relaypb.NodeState_NODE_CONNECTED, names, "")); err != nil {
			return err
		}
	}
	names = nil
	for _, c := range unavailable {
		m.reported[c.peer] = relaypb.NodeState_NODE_UNAVAILABLE
		names = append(names, c.name)
		if cfg.PeerFailed != nil {
			cfg.PeerFailed()
		}
	}
	if len(names) > 0 {
		cfg.Log.Warn("agents unavailable", "agents", names)
		if err := send(nodeStatus(cfg.NodeName, relaypb.NodeState_NODE_UNAVAILABLE, names, "")); err != nil {
			return err
		}
	}
	rejoin := proto.Clone(req).(*observerpb.GetFlowsRequest)
	rejoin.Number, rejoin.First, rejoin.Since = 0, false, nil
	var retry <-chan time.Time
	if req.GetFollow() {
		t := time.NewTicker(cfg.RetryInterval)
		defer t.Stop()
		retry = t.C
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		for {
			res, ok := m.next(now)
			if !ok {
				break
			}
			if err := send(res); err != nil {
				return err
			}
			if res.GetFlow() != nil && cfg.Sent != nil {
				cfg.Sent()
			}
		}
		if len(m.active) == 0 && len(m.queues) == 0 && !req.GetFollow() {
			return nil
		}
		var timerC <-chan time.Time
		if d, ok := m.deadline(); ok {
			timer.Reset(max(time.Until(d), time.Millisecond))
			timerC = timer.C
		}
		select {
		case ev := <-events:
			if !ev.done {
				if st, ok := m.reported[ev.peer]; ok && st != relaypb.NodeState_NODE_CONNECTED {
					m.reported[ev.peer] = relaypb.NodeState_NODE_CONNECTED
					if err := send(nodeStatus(cfg.NodeName, relaypb.NodeState_NODE_CONNECTED, []string{ev.peer.NodeName(ctx)}, "")); err != nil {
						return err
					}
				}
				ev.peer.LearnName(ev.res.GetNodeName())
				m.push(ev.peer, ev.res, time.Now())
				continue
			}
			delete(m.active, ev.peer)
			if ev.err == nil {
				continue
			}
			if status.Code(ev.err) == codes.InvalidArgument {
				return ev.err
			}
			if cfg.PeerFailed != nil {
				cfg.PeerFailed()
			}
			name := ev.peer.NodeName(ctx)
			state, msg := relaypb.NodeState_NODE_ERROR, status.Convert(ev.err).Message()
			if !m.got[ev.peer] {
				state = relaypb.NodeState_NODE_UNAVAILABLE
			}
			if prev, ok := m.reported[ev.peer]; ok && prev != relaypb.NodeState_NODE_CONNECTED {
				continue // already reported down
			}
			m.reported[ev.peer] = state
			cfg.Log.Warn("agent stream ended", "agent", ev.peer.Addr, "node", name, "err", ev.err)
			if err := send(nodeStatus(cfg.NodeName, state, []string{name}, msg)); err != nil {
				return err
			}
		case <-timerC:
		case <-retry:
			for _, p := range cfg.Peers() {
				if !m.active[p] {
					m.got[p] = false
					// A peer down a while has its connection deep in gRPC's
					// reconnect backoff: try now, not when the backoff ends.
					p.ResetConnectBackoff()
					start(p, rejoin)
				}
			}
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// pump forwards one agent's stream to the merger. The stream waits up to
// connectTimeout for the peer's connection to be ready (rather than
// failing at once while the connection is in TRANSIENT_FAILURE, as when
// it is being retried after the peer restarted).
func pump(ctx context.Context, p *Peer, req *observerpb.GetFlowsRequest, events chan<- event, connectTimeout time.Duration) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.AfterFunc(connectTimeout, cancel)
	s, err := p.Client.GetFlows(sctx, req, grpc.WaitForReady(true))
	if !timer.Stop() && ctx.Err() == nil {
		err = status.Errorf(codes.Unavailable, "no connection to %s within %v", p.Addr, connectTimeout)
	}
	for err == nil {
		var res *observerpb.GetFlowsResponse
		if res, err = s.Recv(); err != nil {
			break
		}
		if res.GetNodeStatus() != nil {
			continue // an agent is not a relay; ignore if it ever sends one
		}
		select {
		case events <- event{peer: p, res: res}:
		case <-ctx.Done():
			return
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	select {
	case events <- event{peer: p, done: true, err: err}:
	case <-ctx.Done():
	}
}

// classify sorts peers into those that can be read and those that cannot
// (Peer.Available, given up to timeout), concurrently, with their node
// names; each list is sorted by name.
func classify(ctx context.Context, peers []*Peer, timeout time.Duration) (connected, unavailable []namedPeer) {
	avail := make([]bool, len(peers))
	names := make([]string, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if avail[i] = p.Available(cctx); avail[i] {
				names[i] = p.NodeName(ctx)
			} else if names[i] = p.KnownName(); names[i] == "" {
				names[i] = p.Addr
			}
		})
	}
	wg.Wait()
	for i, p := range peers {
		if avail[i] {
			connected = append(connected, namedPeer{p, names[i]})
		} else {
			unavailable = append(unavailable, namedPeer{p, names[i]})
		}
	}
	byName := func(a, b namedPeer) int { return strings.Compare(a.name, b.name) }
	slices.SortStableFunc(connected, byName)
	slices.SortStableFunc(unavailable, byName)
	return connected, unavailable
}

type namedPeer struct {
	peer *Peer
	name string
}

// nodeStatus is a node status event as Hubble Relay sends it: stamped
// with the relay's node name and the time of sending.
func nodeStatus(node string, state relaypb.NodeState, names []string, msg string) *observerpb.GetFlowsResponse {
	return &observerpb.GetFlowsResponse{
		NodeName: node,
		Time:     timestamppb.Now(),
		ResponseTypes: &observerpb.GetFlowsResponse_NodeStatus{NodeStatus: &relaypb.NodeStatusEvent{
			StateChange: state, NodeNames: names, Message: msg,
		}},
	}
}
