package aggregator

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
)

// A seeded payments-fleet flow generator for the aggregator's tests. It
// keeps its own exact totals per pair and every raw latency per
// (method, route template), so that tests can compare what DuckDB reads from
// the Parquet files against the truth.

type genEdge struct {
	src, dst   schemas.Endpoint
	svc        string
	port       uint16
	proto      uint8
	l7         schemas.L7Protocol
	dropEveryN int // every N-th flow of this edge is DROPPED POLICY_DENIED; 0 never
}

func ep(ns, wl string) schemas.Endpoint {
	return schemas.Endpoint{Namespace: ns, Workload: wl, PodName: wl + "-7d9f", WorkloadKind: "Deployment"}
}

var genEdges = []genEdge{
	{src: ep("shop", "frontend"), dst: ep("payments", "checkout-api"), svc: "checkout-api", port: 8080, proto: 6, l7: schemas.L7HTTP},
	{src: ep("payments", "checkout-api"), dst: ep("payments", "payments-api"), svc: "payments-api", port: 8080, proto: 6, l7: schemas.L7HTTP, dropEveryN: 97},
	{src: ep("payments", "payments-api"), dst: ep("payments", "ledger"), svc: "ledger", port: 5432, proto: 6},
	{src: ep("payments", "payments-api"), dst: ep("kube-system", "coredns"), svc: "kube-dns", port: 53, proto: 17, l7: schemas.L7DNS},
	{src: ep("payments", "fraud-scorer"), dst: ep("data", "kafka"), svc: "kafka", port: 9092, proto: 6, l7: schemas.L7Kafka},
	{src: ep("shop", "frontend"), dst: ep("payments", "ledger"), svc: "ledger", port: 5432, proto: 6, dropEveryN: 3},
	{src: ep("payments", "checkout-api"), dst: ep("payments", "fraud-scorer"), svc: "", port: 9000, proto: 6, l7: schemas.L7HTTP},
}

type pairTotal struct{ flows, bytes, packets int64 }

// routeID is how tests name a route: method and templated route.
type routeID struct{ method, route string }

type genResult struct {
	flows     []schemas.Flow
	pairs     map[string]*pairTotal // key: pairName
	latencies map[routeID][]uint64  // every L7 latency, Count-expanded
	total     pairTotal
}

func pairName(srcNs, srcWl, dstNs, dstWl string, port int32, verdict string) string {
	return fmt.Sprintf("%s/%s->%s/%s:%d %s", srcNs, srcWl, dstNs, dstWl, port, verdict)
}

var genStart = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC).UnixNano()

// generate makes n flow records over about span of event time. Times are
// increasing with jitter of up to ±4 s (inside the default lateness), and
// one record in lateEvery (if > 0) is 90 s late.
func generate(seed uint64, n int, span time.Duration, lateEvery int) genResult {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := genResult{pairs: make(map[string]*pairTotal), latencies: make(map[routeID][]uint64), flows: make([]schemas.Flow, 0, n)}
	step := int64(span) / int64(n)
	counters := make([]int, len(genEdges))
	for i := 0; i < n; i++ {
		ei := rng.IntN(len(genEdges))
		e := &genEdges[ei]
		counters[ei]++
		t := genStart + int64(i)*step + rng.Int64N(int64(8*time.Second)) - int64(4*time.Second)
		if lateEvery > 0 && i%lateEvery == lateEvery-1 {
			t -= int64(90 * time.Second)
		}
		f := schemas.Flow{
			TimeNs: t, NodeName: fmt.Sprintf("node-%d", ei%3),
			Verdict: flowpb.Verdict_FORWARDED, Direction: flowpb.TrafficDirection_EGRESS,
			IPVersion: flowpb.IPVersion_IPv4,
			SrcIP:     netip.AddrFrom4([4]byte{10, 0, byte(ei), byte(rng.IntN(200))}),
			DstIP:     netip.AddrFrom4([4]byte{10, 1, byte(ei), 1}),
			SrcPort:   uint16(30000 + rng.IntN(30000)), DstPort: e.port,
			L4Protocol: e.proto,
			Src:        e.src, Dst: e.dst,
			BytesFwd: uint64(64 + rng.IntN(100000)), BytesRev: uint64(rng.IntN(500000)),
			PacketsFwd: uint64(1 + rng.IntN(100)), PacketsRev: uint64(rng.IntN(200)),
			Count: 1,
		}
		if e.svc != "" {
			f.DstService = schemas.Service{Namespace: e.dst.Namespace, Name: e.svc}
		}
		if e.proto == 6 {
			f.TCPFlags = schemas.FlagSYN | schemas.FlagACK
			if rng.IntN(50) == 0 {
				f.TCPFlags |= schemas.FlagRST
			}
		}
		if e.dropEveryN > 0 && counters[ei]%e.dropEveryN == 0 {
			f.Verdict, f.DropReason = flowpb.Verdict_DROPPED, flowpb.DropReason_POLICY_DENIED
			f.BytesRev, f.PacketsRev = 0, 0
		}
		var lats []uint64
		// Some records are pre-aggregated by the agent: Count > 1 and a histogram.
		if rng.IntN(10) == 0 {
			f.Count = uint64(2 + rng.IntN(5))
		}
		for j := uint64(0); j < f.Count; j++ {
			lats = append(lats, genLatency(rng))
		}
		if f.Count > 1 {
			for _, l := range lats {
				f.LatencyHist.Add(l, 1)
			}
		}
		f.LatencyNs = slices.Max(lats)
		// One record in ten is another observation point's record of a
		// connection (counts nothing), one in ten a later part of a counted
		// connection (counts its traffic): the count-once rule.
		switch rng.IntN(10) {
		case 0:
			f.CountAs = schemas.CountNone
		case 1:
			f.CountAs = schemas.CountTraffic
		}
		if f.Verdict == flowpb.Verdict_FORWARDED && e.l7 != schemas.L7None && f.CountAs != schemas.CountTraffic {
			id := genL7(rng, &f, e.l7)
			if f.CountAs.Flows() {
				g.latencies[id] = append(g.latencies[id], lats...)
			}
		}
		g.flows = append(g.flows, f)
		if !f.CountAs.Traffic() {
			continue
		}
		k := pairName(e.src.Namespace, e.src.Workload, e.dst.Namespace, e.dst.Workload, int32(e.port), f.Verdict.String())
		p := g.pairs[k]
		if p == nil {
			p = &pairTotal{}
			g.pairs[k] = p
		}
		for _, t := range []*pairTotal{p, &g.total} {
			if f.CountAs.Flows() {
				t.flows += int64(f.Count)
			}
			t.bytes += int64(f.BytesFwd + f.BytesRev)
			t.packets += int64(f.PacketsFwd + f.PacketsRev)
		}
	}
	return g
}

// genLatency draws a latency from 50 µs to about 3 s, log-uniform.
func genLatency(rng *rand.Rand) uint64 {
	return uint64(float64(int64(50_000)<<rng.IntN(16)) * (1 + rng.Float64()))
}

var (
	genMethods = []string{"GET", "POST", "PUT"}
	genDNS     = []string{"ledger.payments.svc.cluster.local.", "api.stripe.com.", "kafka.data.svc.cluster.local."}
	genTopics  = []string{"payments.events", "fraud.scores"}
)

// genL7 fills f's L7 block and returns the route the aggregator must derive.
func genL7(rng *rand.Rand, f *schemas.Flow, p schemas.L7Protocol) routeID {
	f.L7.Protocol = p
	f.L7.Type = flowpb.L7FlowType_RESPONSE
	f.EventType = 129
	switch p {
	case schemas.L7HTTP:
		m := genMethods[rng.IntN(len(genMethods))]
		f.L7.HTTPMethod, f.L7.HTTPProtocol = m, "HTTP/1.1"
		f.L7.HTTPStatus = 200
		if rng.IntN(20) == 0 {
			f.L7.HTTPStatus = 503
		}
		var url, route string
		switch rng.IntN(4) {
		case 0:
			url, route = fmt.Sprintf("/v1/payments/%d", rng.IntN(1e6)), "/v1/payments/{id}"
		case 1:
			url, route = fmt.Sprintf("/v1/payments/%08x-1234-4abc-8def-%012x/refund?reason=dup", rng.Uint32(), rng.Uint64()&0xffffffffffff), "/v1/payments/{id}/refund"
		case 2:
			url, route = fmt.Sprintf("http://checkout-api:8080/v1/ledger/%016x%016x", rng.Uint64(), rng.Uint64()), "/v1/ledger/{id}"
		default:
			url, route = "/healthz", "/healthz"
		}
		f.L7.HTTPURL = url
		return routeID{m, route}
	case schemas.L7DNS:
		q := genDNS[rng.IntN(len(genDNS))]
		f.L7.DNSQuery, f.L7.DNSQTypes = q, []string{"A"}
		if rng.IntN(30) == 0 {
			f.L7.DNSRCode = 3
		}
		return routeID{"A", q}
	case schemas.L7Kafka:
		t := genTopics[rng.IntN(len(genTopics))]
		f.L7.KafkaAPIKey, f.L7.KafkaTopic, f.L7.KafkaAPIVersion = "produce", t, 9
		return routeID{"produce", t}
	}
	return routeID{}
}

// genMessage is a bus message before encoding.
type genMessage struct {
	partition int32
	flows     []schemas.Flow
}

// split groups flows into messages of at most per flows, by partition
// (schemas.PartitionOf the flow's key), keeping order within a partition as
// an agent fleet publishing in time order would.
func split(flows []schemas.Flow, parts, per int) []genMessage {
	var out []genMessage
	cur := make([][]schemas.Flow, parts)
	for _, f := range flows {
		p := schemas.PartitionOf(f.PartitionKey(), parts)
		cur[p] = append(cur[p], f)
		if len(cur[p]) == per {
			out = append(out, genMessage{int32(p), cur[p]})
			cur[p] = nil
		}
	}
	for p, fs := range cur {
		if len(fs) > 0 {
			out = append(out, genMessage{int32(p), fs})
		}
	}
	return out
}
