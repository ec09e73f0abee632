package synthetic

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Pair names a source/destination pair and verdict in the generator's totals.
// Src and Dst are "namespace/workload"; a source outside the cluster is
// "reserved:world".
type Pair struct {
	Src, Dst   string
	Verdict    flowpb.Verdict
	DropReason flowpb.DropReason
}

// PairTotals are exact sums over the generated flows of one Pair.
type PairTotals struct {
	Flows                                      uint64
	BytesFwd, BytesRev, PacketsFwd, PacketsRev uint64
}

// Route names an HTTP route in the generator's totals: the destination
// ("namespace/workload"), method, path template (e.g. /api/v1/orders/{id},
// as the generated URLs carry real ids) and status.
type Route struct {
	Dst, Method, Path string
	Status            uint32
}

// RouteTotals are exact over the generated HTTP flows of one Route.
// LatenciesNs holds every latency, in generation order, if
// Config.RecordLatencies is set.
type RouteTotals struct {
	Flows       uint64
	LatenciesNs []uint64
}

// Totals are the generator's own exact counts of what it generated.
type Totals struct {
	Flows  uint64
	Pairs  map[Pair]PairTotals
	Routes map[Route]RouteTotals
}

// Generator produces the payments fleet's flows deterministically: the same
// Config (Seed, Start, Rate, Node) yields the same flows in the same order.
// Not safe for concurrent use, except Totals.
type Generator struct {
	cfg   Config
	rng   *rand.Rand
	fleet *fleet
	// Log-normal shapes by sigma (see lognormal); a handful, searched linearly.
	shapes []sigmaShape
	n      uint64 // flows generated
	step   int64  // ns between flows' timestamps
	start  int64

	buf  []byte // per-batch string arena
	offs []span

	// Totals of the last fill until commit, indexed like fleet.edges and
	// fleet.routeKeys (arrays, not maps: no hashing per flow).
	pendPairs  []PairTotals
	pendRoutes []RouteTotals
	pendFlows  uint64

	mu     sync.Mutex
	flows  uint64
	pairs  []PairTotals
	routes []RouteTotals
}

// span locates the generated strings of one flow in the batch arena.
type span struct{ uuid0, uuid1, url0, url1 int }

// NewGenerator returns a Generator for cfg.
func NewGenerator(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15))
	g := &Generator{
		cfg:   cfg,
		rng:   rng,
		fleet: newFleet(rng),
		start: cfg.Start.UnixNano(),
		step:  1000,
	}
	g.pendPairs = make([]PairTotals, len(g.fleet.edges))
	g.pairs = make([]PairTotals, len(g.fleet.edges))
	g.pendRoutes = make([]RouteTotals, len(g.fleet.routeKeys))
	g.routes = make([]RouteTotals, len(g.fleet.routeKeys))
	if cfg.Rate > 0 {
		g.step = int64(math.Max(1, float64(time.Second)/cfg.Rate))
	}
	return g, nil
}

// Generated returns the number of flows generated so far.
func (g *Generator) Generated() uint64 { return g.n }

// Totals returns a copy of the exact totals of everything generated so far.
// Safe to call concurrently with Fill.
func (g *Generator) Totals() Totals {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := Totals{Flows: g.flows, Pairs: map[Pair]PairTotals{}, Routes: map[Route]RouteTotals{}}
	for i, e := range g.fleet.edges {
		if v := g.pairs[i]; v.Flows > 0 {
			t.Pairs[e.pair] = addPair(t.Pairs[e.pair], v)
		}
	}
	for i, k := range g.fleet.routeKeys {
		if v := g.routes[i]; v.Flows > 0 {
			v.LatenciesNs = append([]uint64(nil), v.LatenciesNs...)
			t.Routes[k] = v
		}
	}
	return t
}

func addPair(a, b PairTotals) PairTotals {
	a.Flows += b.Flows
	a.BytesFwd += b.BytesFwd
	a.BytesRev += b.BytesRev
	a.PacketsFwd += b.PacketsFwd
	a.PacketsRev += b.PacketsRev
	return a
}

// Fill overwrites every element of flows with the next generated flows and
// adds them to Totals. The generated strings of one call (UUIDs, URLs) share
// one allocation, and the pods' labels are shared by all flows: callers must
// not modify them.
func (g *Generator) Fill(flows []schemas.Flow) {
	g.fill(flows)
	g.commit()
}

// commit adds the totals of the last fill to Totals. A fill that is never
// committed (its batch was not delivered) does not count.
func (g *Generator) commit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.flows += g.pendFlows
	for i, v := range g.pendPairs {
		g.pairs[i] = addPair(g.pairs[i], v)
	}
	for i, v := range g.pendRoutes {
		g.routes[i].Flows += v.Flows
		g.routes[i].LatenciesNs = append(g.routes[i].LatenciesNs, v.LatenciesNs...)
	}
}

// fill generates flows and their totals into g.pend*.
func (g *Generator) fill(flows []schemas.Flow) {
	g.buf = g.buf[:0]
	g.offs = g.offs[:0]
	g.pendFlows = 0
	clear(g.pendPairs)
	for i := range g.pendRoutes {
		g.pendRoutes[i].Flows, g.pendRoutes[i].LatenciesNs = 0, g.pendRoutes[i].LatenciesNs[:0]
	}
	for i := range flows {
		g.one(&flows[i])
	}
	arena := string(g.buf)
	for i, o := range g.offs {
		flows[i].UUID = arena[o.uuid0:o.uuid1]
		if o.url1 > o.url0 {
			flows[i].L7.HTTPURL = arena[o.url0:o.url1]
		}
	}
}

// one generates one flow into f and counts it in g.pend.
func (g *Generator) one(f *schemas.Flow) {
	rng := g.rng
	ei := pick(rng, g.fleet.edges, func(e **edge) int { return (*e).weight }, g.fleet.total)
	e := g.fleet.edges[ei]
	src := e.src.pods[rng.IntN(len(e.src.pods))]
	dst := e.dst.pods[rng.IntN(len(e.dst.pods))]
	t := g.start + int64(g.n)*g.step
	g.n++

	*f = schemas.Flow{
		TimeNs:           t,
		NodeName:         g.cfg.Node,
		Verdict:          e.verdict,
		DropReason:       e.dropReason,
		Direction:        flowpb.TrafficDirection_INGRESS,
		ObservationPoint: flowpb.TraceObservationPoint_TO_ENDPOINT,
		EventType:        hubble.MsgTypeTrace,
		IsReply:          schemas.False,
		IPVersion:        flowpb.IPVersion_IPv4,
		SrcIP:            src.ip,
		DstIP:            dst.ip,
		SrcPort:          uint16(32768 + rng.IntN(28232)),
		DstPort:          e.port,
		L4Protocol:       e.proto,
		Src:              src.ep,
		Dst:              dst.ep,
		DstService:       schemas.Service{Namespace: e.dst.ns, Name: e.dst.service},
		Count:            1,
		IfIndex:          uint32(20 + dst.ep.ID%50),
	}
	if e.src.service != "" {
		f.SrcService = schemas.Service{Namespace: e.src.ns, Name: e.src.service}
	}
	if e.srcWorld {
		f.Src = schemas.Endpoint{Identity: hubble.IdentityWorld, Labels: worldLabels}
		f.SrcService = schemas.Service{}
		f.SrcIP = netip.AddrFrom4([4]byte{192, 168, byte(rng.IntN(4)), byte(1 + rng.IntN(250))})
	}

	var o span
	o.uuid0 = len(g.buf)
	g.buf = appendUUID(g.buf, rng)
	o.uuid1 = len(g.buf)
	o.url0, o.url1 = o.uuid1, o.uuid1

	if e.verdict == flowpb.Verdict_DROPPED {
		f.EventType = hubble.MsgTypeDrop
		f.EventSubType = int32(e.dropReason)
		f.TCPFlags = schemas.FlagSYN
		f.BytesFwd = uint64(e.bytesFwd)
		f.PacketsFwd = 1
		f.L4Protocol = 6
	} else {
		f.BytesFwd = g.lognormal(e.bytesFwd, 0.6)
		f.BytesRev = g.lognormal(e.bytesRev, 0.7)
		f.PacketsFwd = 1 + f.BytesFwd/1200
		f.PacketsRev = 1 + f.BytesRev/1200
		if e.proto == 6 {
			f.PacketsFwd += 3 // SYN, ACK, FIN
			f.PacketsRev += 2 // SYN-ACK, FIN
			f.TCPFlags = schemas.FlagSYN | schemas.FlagACK | schemas.FlagPSH | schemas.FlagFIN
			if rng.IntN(100) < 2 {
				f.TCPFlags = schemas.FlagSYN | schemas.FlagACK | schemas.FlagPSH | schemas.FlagRST
			}
		}
	}

	switch {
	case e.verdict == flowpb.Verdict_DROPPED:
	case e.l7 == schemas.L7HTTP:
		r := &e.routes[pick(rng, e.routes, func(r *route) int { return r.weight }, 0)]
		si := pick(rng, r.statuses, func(s *weighted[uint32]) int { return s.w }, 0)
		status := r.statuses[si].v
		lat := g.lognormal(r.medianMs*1e6, r.sigma)
		if status >= 500 {
			lat *= 3 // failures tend to be timeouts
		}
		o.url0 = len(g.buf)
		g.buf = g.appendURL(g.buf, r.path)
		o.url1 = len(g.buf)
		f.EventType = hubble.MsgTypeAccessLog
		f.LatencyNs = lat
		f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP, HTTPMethod: r.method, HTTPStatus: status, HTTPProtocol: "HTTP/1.1"}
		rs := &g.pendRoutes[r.base+si]
		rs.Flows++
		if g.cfg.RecordLatencies {
			rs.LatenciesNs = append(rs.LatenciesNs, lat)
		}
	case e.l7 == schemas.L7DNS:
		q := &e.queries[pick(rng, e.queries, func(q *dnsQuery) int { return q.weight }, 0)]
		qt := dnsA
		if rng.IntN(4) == 0 {
			qt = dnsAAAA
		}
		f.EventType = hubble.MsgTypeAccessLog
		f.LatencyNs = g.lognormal(400_000, 0.5)
		f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7DNS, DNSQuery: q.name, DNSRCode: q.rcode,
			DNSQTypes: qt, DNSObservationSource: hubble.DNSObservationSourceProxy}
		if q.rcode == 0 && qt[0] == "A" {
			f.L7.DNSIPs, f.L7.DNSRRTypes, f.L7.DNSTTL = q.ips, dnsA, 30
		}
		f.DstNames = nil
	case e.rttUs > 0:
		f.LatencyNs = g.lognormal(e.rttUs*1000, 0.4)
	}

	g.offs = append(g.offs, o)
	g.pendFlows++
	p := &g.pendPairs[ei]
	p.Flows++
	p.BytesFwd += f.BytesFwd
	p.BytesRev += f.BytesRev
	p.PacketsFwd += f.PacketsFwd
	p.PacketsRev += f.PacketsRev
}

var (
	dnsA        = []string{"A"}
	dnsAAAA     = []string{"AAAA"}
	worldLabels = []string{hubble.LabelReservedWorld}
)

// shapeSize is the resolution of a tabulated log-normal shape.
const shapeSize = 4096

// shape tabulates exp(sigma·z) at the 4096 quantiles (i+½)/4096 of the
// standard normal z: a draw is one table lookup instead of a Gaussian draw
// and an exp, and a quantile is off by at most one table step (~0.1 % of
// the probability mass).
type shape [shapeSize]float64

type sigmaShape struct {
	sigma float64
	t     *shape
}

// lognormal draws from a log-normal distribution with the given median and sigma.
func (g *Generator) lognormal(median, sigma float64) uint64 {
	var t *shape
	for i := range g.shapes {
		if g.shapes[i].sigma == sigma {
			t = g.shapes[i].t
			break
		}
	}
	if t == nil {
		t = new(shape)
		for i := range t {
			p := (float64(i) + 0.5) / shapeSize
			t[i] = math.Exp(sigma * math.Sqrt2 * math.Erfinv(2*p-1))
		}
		g.shapes = append(g.shapes, sigmaShape{sigma, t})
	}
	return uint64(median * t[g.rng.Uint64()&(shapeSize-1)])
}

// hot draws an index in [0, n) with a Zipf-like law of exponent 1.1 (the
// inverse CDF of a bounded power law, one Pow per draw): a few orders and
// customers are very busy (the median index is ~100 of 800k), most are rare,
// as in a real shop.
func hot(rng *rand.Rand, n int) int {
	const s = 1.1
	a := math.Pow(float64(n), 1-s) - 1
	k := int(math.Pow(a*rng.Float64()+1, 1/(1-s))) - 1
	return min(max(k, 0), n-1)
}

const hexDigits = "0123456789abcdef"

// hexPairs[b] is byte b as two lowercase hex digits.
var hexPairs = func() (t [256][2]byte) {
	for i := range t {
		t[i] = [2]byte{hexDigits[i>>4], hexDigits[i&15]}
	}
	return t
}()

// appendUUID appends a random (version 4) UUID.
func appendUUID(b []byte, rng *rand.Rand) []byte {
	hi, lo := rng.Uint64(), rng.Uint64()
	hi = hi&^0xf000 | 0x4000     // version 4
	lo = lo&^(0xc<<60) | 0x8<<60 // variant 10
	var out [36]byte
	j := 0
	for i := range 16 {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		v := hi
		if i >= 8 {
			v = lo
		}
		p := hexPairs[byte(v>>(56-8*(i%8)))]
		out[j], out[j+1] = p[0], p[1]
		j += 2
	}
	return append(b, out[:]...)
}

// appendURL appends path with {id} replaced by a numeric id and {uuid} by a
// UUID, both drawn from the fleet's hot sets (skewed: a few orders and
// customers are very busy, most are rare), as real traffic has.
func (g *Generator) appendURL(b []byte, path string) []byte {
	for len(path) > 0 {
		switch {
		case len(path) >= 4 && path[:4] == "{id}":
			b = strconv.AppendUint(b, uint64(100000+hot(g.rng, 800000)), 10)
			path = path[4:]
		case len(path) >= 6 && path[:6] == "{uuid}":
			b = append(b, g.fleet.customers[hot(g.rng, len(g.fleet.customers))]...)
			path = path[6:]
		default:
			b = append(b, path[0])
			path = path[1:]
		}
	}
	return b
}
