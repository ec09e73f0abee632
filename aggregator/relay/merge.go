package relay

import (
	"context"
	"errors"
	"io"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// event is what a per-agent pump hands the merger.
type event struct {
	peer *peer
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
	queues map[*peer][]item
	active map[*peer]bool
	got    map[*peer]bool // the stream delivered at least one response
	// reported is the last node state sent to the client per agent, so that
	// an agent that stays down is reported once, not at every retry.
	reported map[*peer]relaypb.NodeState
}

func (m *merger) push(p *peer, res *observerpb.GetFlowsResponse, now time.Time) {
	m.got[p] = true
	m.queues[p] = append(m.queues[p], item{res: res, ts: res.GetTime().AsTime(), arrived: now})
}

// next returns the response to emit now, if any.
func (m *merger) next(now time.Time) (*observerpb.GetFlowsResponse, bool) {
	var best *peer
	for p, q := range m.queues {
		if len(q) == 0 {
			continue
		}
		if best == nil || q[0].ts.Before(m.queues[best][0].ts) || (q[0].ts.Equal(m.queues[best][0].ts) && p.addr < best.addr) {
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

// GetFlows opens the same request on every agent and merges the streams in
// time order. Number, first, since and until apply per agent (as with Hubble
// relay: --last N gives N flows per node). An agent that cannot be reached
// is reported as a NODE_UNAVAILABLE node status event, one that fails
// mid-stream as NODE_ERROR, and the stream goes on with the others; with
// follow, agents that were lost, or appear later, are (re)joined every
// RetryInterval, from their newest flow on. A request an agent refuses as
// invalid is refused to the client with the agent's error.
func (r *Relay) GetFlows(req *observerpb.GetFlowsRequest, stream observerpb.Observer_GetFlowsServer) error {
	if req.GetFirst() && req.GetFollow() {
		return status.Error(codes.InvalidArgument, "first cannot be specified with follow")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	events := make(chan event)
	window := r.cfg.BatchWindow
	if req.GetFollow() {
		window = r.cfg.SortWindow
	}
	m := &merger{window: window, queues: map[*peer][]item{}, active: map[*peer]bool{}, got: map[*peer]bool{}, reported: map[*peer]relaypb.NodeState{}}
	start := func(p *peer, req *observerpb.GetFlowsRequest) {
		m.active[p] = true
		go r.pump(ctx, p, req, events)
	}
	for _, p := range r.peers.snapshot() {
		start(p, req)
	}
	rejoin := proto.Clone(req).(*observerpb.GetFlowsRequest)
	rejoin.Number, rejoin.First, rejoin.Since = 0, false, nil
	var retry <-chan time.Time
	if req.GetFollow() {
		t := time.NewTicker(r.cfg.RetryInterval)
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
			if err := stream.Send(res); err != nil {
				return err
			}
			if res.GetFlow() != nil {
				r.flows.Inc()
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
					if err := stream.Send(nodeStatus(relaypb.NodeState_NODE_CONNECTED, []string{ev.peer.nodeName(ctx)}, "")); err != nil {
						return err
					}
				}
				ev.peer.learnName(ev.res.GetNodeName())
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
			r.peerErrors.Inc()
			name := ev.peer.nodeName(ctx)
			state, msg := relaypb.NodeState_NODE_ERROR, status.Convert(ev.err).Message()
			if !m.got[ev.peer] {
				state = relaypb.NodeState_NODE_UNAVAILABLE
			}
			if prev, ok := m.reported[ev.peer]; ok && prev != relaypb.NodeState_NODE_CONNECTED {
				continue // already reported down
			}
			m.reported[ev.peer] = state
			r.log.Warn("agent stream ended", "agent", ev.peer.addr, "node", name, "err", ev.err)
			if err := stream.Send(nodeStatus(state, []string{name}, msg)); err != nil {
				return err
			}
		case <-timerC:
		case <-retry:
			for _, p := range r.peers.snapshot() {
				if !m.active[p] {
					m.got[p] = false
					start(p, rejoin)
				}
			}
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// pump forwards one agent's stream to the merger.
func (r *Relay) pump(ctx context.Context, p *peer, req *observerpb.GetFlowsRequest, events chan<- event) {
	s, err := p.client.GetFlows(ctx, req)
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
