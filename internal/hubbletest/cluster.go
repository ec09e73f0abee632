package hubbletest

import (
	"hash/fnv"
	"strconv"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Pair is a pair_rollup key as the aggregator writes it: the connection's
// client and server workloads, the server's service and port, the protocol
// name, the verdict and the drop reason ("" unless dropped).
type Pair struct {
	SrcNamespace, SrcWorkload, DstNamespace, DstWorkload, DstService string
	DstPort                                                          int32
	Protocol, Verdict, DropReason                                    string
}

// Event is one Hubble event of a connection.
type Event struct {
	Flow schemas.Flow
	// Pair is the connection's pair_rollup key.
	Pair Pair
	// Counts is true for the one event of the connection (or of the L7
	// exchange) that carries it under the count-once rule, as this package
	// builds it: the receiver's opening to-endpoint event, the drop, the L7
	// response. Opens is true when it counts a connection too (not the L7
	// response).
	Counts, Opens bool
}

// Cluster turns the synthetic payments fleet's connections into the events
// a Cilium cluster's Hubble reports for them, each on the node where it is
// observed. Pods are spread over the nodes by a hash of their name. Per
// connection, with monitor aggregation:
//
//   - forwarded TCP: the client's from-endpoint SYN, to-stack when the
//     server is on another node, the server's to-endpoint SYN (counts), the
//     SYN-ACK as replies at the server's from-endpoint and the client's
//     to-endpoint, and the FIN at both (the server's one counts as
//     traffic); an HTTP connection adds the L7 request and the L7 response
//     (a reply, from the server; counts) at the server's node;
//   - forwarded UDP (DNS): the query at the client's from-endpoint and the
//     server's to-endpoint (counts), the answer as replies at both, the DNS
//     request and response (counts) at the server's node;
//   - denied by policy: the client's from-endpoint SYN, a policy verdict and
//     the drop (counts) at the server's node; other drops (and any drop of
//     traffic from the world) are the drop event alone.
//
// Event times are the connection's time plus 100 ns per event, so with the
// default 10 µs between connections each node's events are in time order.
// Not safe for concurrent use.
type Cluster struct {
	gen   *synthetic.Generator
	nodes []string
	buf   []schemas.Flow
}

// DefaultStep is the time between two connections of a Cluster.
const DefaultStep = 10 * time.Microsecond

// NewCluster returns the events of the fleet generated from seed, the first
// connection at start, spread over nodes.
func NewCluster(seed int64, start time.Time, nodes ...string) *Cluster {
	g, err := synthetic.NewGenerator(synthetic.Config{Seed: seed, Start: start, Rate: float64(time.Second / DefaultStep)})
	if err != nil {
		panic(err) // the configuration above is valid
	}
	return &Cluster{gen: g, nodes: nodes}
}

// Next returns the events of the next n connections, in time order (each
// node's events are in time order too).
func (c *Cluster) Next(n int) []Event {
	if cap(c.buf) < n {
		c.buf = make([]schemas.Flow, n)
	}
	conns := c.buf[:n]
	c.gen.Fill(conns)
	events := make([]Event, 0, 8*n)
	for i := range conns {
		events = c.expand(&conns[i], events)
	}
	return events
}

// NextEvents returns at least n events (whole connections).
func (c *Cluster) NextEvents(n int) []Event {
	var out []Event
	for len(out) < n {
		out = append(out, c.Next(max(1, (n-len(out))/7+1))...)
	}
	return out
}

func (c *Cluster) nodeOf(e *schemas.Endpoint) string {
	h := fnv.New32a()
	h.Write([]byte(e.PodName))
	return c.nodes[int(h.Sum32())%len(c.nodes)]
}

func (c *Cluster) expand(conn *schemas.Flow, out []Event) []Event {
	pair := Pair{SrcNamespace: conn.Src.Namespace, SrcWorkload: workload(&conn.Src), DstNamespace: conn.Dst.Namespace,
		DstWorkload: workload(&conn.Dst), DstPort: int32(conn.DstPort), Protocol: protoName(conn.L4Protocol), Verdict: conn.Verdict.String()}
	if conn.DstService.Name != "" {
		pair.DstService = conn.DstService.Namespace + "/" + conn.DstService.Name
	}
	if conn.Verdict == flowpb.Verdict_DROPPED {
		pair.DropReason = conn.DropReason.String()
	}
	dstNode := c.nodeOf(&conn.Dst)
	srcNode, srcPod := "", conn.Src.PodName != ""
	if srcPod {
		srcNode = c.nodeOf(&conn.Src)
	}
	k := 0
	ev := func(node string, reply bool) *Event {
		f := schemas.Flow{
			UUID: conn.UUID + "-" + strconv.Itoa(k), TimeNs: conn.TimeNs + int64(k)*100, NodeName: node,
			Verdict: conn.Verdict, IPVersion: conn.IPVersion, L4Protocol: conn.L4Protocol, IsReply: schemas.False,
			SrcIP: conn.SrcIP, DstIP: conn.DstIP, SrcPort: conn.SrcPort, DstPort: conn.DstPort,
			Src: conn.Src, Dst: conn.Dst, SrcService: conn.SrcService, DstService: conn.DstService,
		}
		if reply {
			f.IsReply = schemas.True
			f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = f.DstIP, f.SrcIP, f.DstPort, f.SrcPort
			f.Src, f.Dst, f.SrcService, f.DstService = f.Dst, f.Src, f.DstService, f.SrcService
		}
		k++
		out = append(out, Event{Flow: f, Pair: pair})
		return &out[len(out)-1]
	}
	trace := func(node string, sub int32, reply bool, flags schemas.TCPFlags) *Event {
		e := ev(node, reply)
		e.Flow.EventType, e.Flow.EventSubType = hubble.MsgTypeTrace, sub
		switch sub {
		case hubble.TraceToLxc:
			e.Flow.ObservationPoint, e.Flow.Direction = flowpb.TraceObservationPoint_TO_ENDPOINT, flowpb.TrafficDirection_INGRESS
		case hubble.TraceFromLxc:
			e.Flow.ObservationPoint, e.Flow.Direction = flowpb.TraceObservationPoint_FROM_ENDPOINT, flowpb.TrafficDirection_EGRESS
		case hubble.TraceToStack:
			e.Flow.ObservationPoint, e.Flow.Direction = flowpb.TraceObservationPoint_TO_STACK, flowpb.TrafficDirection_EGRESS
		}
		if e.Flow.L4Protocol == 6 {
			e.Flow.TCPFlags = flags
		}
		return e
	}
	tcp := conn.L4Protocol == 6
	opening := schemas.FlagSYN
	if !tcp {
		opening = 0
	}
	switch {
	case conn.Verdict == flowpb.Verdict_DROPPED:
		if srcPod && conn.DropReason == flowpb.DropReason_POLICY_DENIED {
			trace(srcNode, hubble.TraceFromLxc, false, opening)
			pv := ev(dstNode, false)
			pv.Flow.EventType, pv.Flow.DropReason, pv.Flow.Direction = hubble.MsgTypePolicyVerdict, conn.DropReason, flowpb.TrafficDirection_INGRESS
		}
		d := ev(dstNode, false)
		d.Flow.EventType, d.Flow.EventSubType, d.Flow.DropReason = hubble.MsgTypeDrop, int32(conn.DropReason), conn.DropReason
		d.Flow.Direction, d.Flow.TCPFlags = flowpb.TrafficDirection_INGRESS, conn.TCPFlags&schemas.FlagSYN
		d.Counts, d.Opens = true, true
		return out
	case srcPod:
		trace(srcNode, hubble.TraceFromLxc, false, opening)
		if srcNode != dstNode {
			trace(srcNode, hubble.TraceToStack, false, opening)
		}
	}
	to := trace(dstNode, hubble.TraceToLxc, false, opening)
	to.Counts, to.Opens = true, true
	trace(dstNode, hubble.TraceFromLxc, true, schemas.FlagSYN|schemas.FlagACK)
	if srcPod {
		trace(srcNode, hubble.TraceToLxc, true, schemas.FlagSYN|schemas.FlagACK)
	}
	if tcp {
		if srcPod {
			trace(srcNode, hubble.TraceFromLxc, false, schemas.FlagFIN|schemas.FlagACK)
		}
		trace(dstNode, hubble.TraceToLxc, false, schemas.FlagFIN|schemas.FlagACK)
	}
	if conn.L7.Protocol != schemas.L7None {
		req := ev(dstNode, false)
		req.Flow.EventType, req.Flow.L7 = hubble.MsgTypeAccessLog, conn.L7
		req.Flow.L7.Type, req.Flow.L7.HTTPStatus, req.Flow.L7.DNSRCode = flowpb.L7FlowType_REQUEST, 0, 0
		req.Flow.L7.DNSIPs, req.Flow.L7.DNSRRTypes, req.Flow.L7.DNSTTL = nil, nil, 0
		resp := ev(dstNode, true)
		resp.Flow.EventType, resp.Flow.L7, resp.Flow.LatencyNs = hubble.MsgTypeAccessLog, conn.L7, conn.LatencyNs
		resp.Counts = true
	}
	return out
}

func workload(e *schemas.Endpoint) string {
	if e.Workload != "" {
		return e.Workload
	}
	return e.PodName
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	}
	return strconv.Itoa(int(p))
}
