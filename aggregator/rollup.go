package aggregator

import (
	"cmp"
	"slices"
	"strconv"
	"unsafe"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
)

// pairKey is the key of a pair_rollup row within a window. Enumerations stay
// numbers until the row is written.
type pairKey struct {
	srcNs, srcWl   string
	dstNs, dstWl   string
	svcNs, svcName string
	port           uint16
	proto          uint8
	verdict        flowpb.Verdict
	drop           flowpb.DropReason
}

type pairAgg struct {
	flows, conns       int64
	pktFwd, pktRev     int64
	bytesFwd, bytesRev int64
	syn, rst           int64
	lat                latency
}

// routeKey is the key of a route_rollup row within a window.
type routeKey struct {
	dstNs, dstWl string
	proto        schemas.L7Protocol
	method       string
	route        string
	status       int32
}

type routeAgg struct {
	requests, errors int64
	lat              latency
}

// workloadKey names a destination workload for the route cardinality cap.
type workloadKey struct{ ns, wl string }

type workloadRoute struct {
	workloadKey
	route string
}

// latency accumulates a latency distribution. Counts are kept dense, in
// blocks of one power of two (32 buckets, 256 bytes) allocated on first use,
// so that adding an observation is an index increment; the sparse
// schemas.Histogram is built when the row is written.
type latency struct {
	under, over int64 // buckets 0 and schemas.HistOverflow
	blocks      [schemas.HistMaxExp - schemas.HistMinExp]*[schemas.HistSubBuckets]int64
	max         uint64
}

func (l *latency) addBucket(b int16, n int64) {
	switch {
	case b <= 0:
		l.under += n
	case b >= schemas.HistOverflow:
		l.over += n
	default:
		i := int(b) - 1
		blk := l.blocks[i/schemas.HistSubBuckets]
		if blk == nil {
			blk = new([schemas.HistSubBuckets]int64)
			l.blocks[i/schemas.HistSubBuckets] = blk
		}
		blk[i%schemas.HistSubBuckets] += n
	}
}

// add records the latency of f: its histogram if it carries one, else
// FlowCount observations of LatencyNs; nothing if latency was not measured.
func (l *latency) add(f *schemas.Flow) {
	if len(f.LatencyHist) > 0 {
		for _, b := range f.LatencyHist {
			l.addBucket(b.Index, b.Count)
		}
	} else if f.LatencyNs > 0 {
		l.addBucket(schemas.HistBucket(f.LatencyNs), int64(f.FlowCount()))
	} else {
		return
	}
	if f.LatencyNs > l.max {
		l.max = f.LatencyNs
	}
}

// hist returns the sparse histogram.
func (l *latency) hist() schemas.Histogram {
	var h schemas.Histogram
	if l.under > 0 {
		h = append(h, schemas.Bucket{Index: 0, Count: l.under})
	}
	for k, blk := range l.blocks {
		if blk == nil {
			continue
		}
		for j, c := range blk {
			if c > 0 {
				h = append(h, schemas.Bucket{Index: int16(k*schemas.HistSubBuckets + j + 1), Count: c})
			}
		}
	}
	if l.over > 0 {
		h = append(h, schemas.Bucket{Index: schemas.HistOverflow, Count: l.over})
	}
	return h
}

// bucket holds the rollups of one window of one partition until it is
// written: the regular bucket of a window, or (late = true) the records that
// arrived after it had been written.
type bucket struct {
	start       int64 // window start, Unix ns
	late        bool
	first, last int64 // offsets of the first and last message that added to it
	flows       int64 // flow records added
	pairs       map[pairKey]*pairAgg
	routes      map[routeKey]*routeAgg
	wlRoutes    map[workloadRoute]struct{}
	wlCount     map[workloadKey]int

	// Direct-mapped caches in front of pairs and routes, keyed by the
	// identity of the key's strings (see sameStr): rows decoded from one
	// message share each string's bytes per dictionary entry, so most rows
	// find their row here without hashing and comparing string contents.
	pcache [keyCacheSize]pairSlot
	rcache [keyCacheSize]routeSlot

	raw *rawFile // Config.RawFlows: the bucket's raw flows file
}

const keyCacheSize = 256

type pairSlot struct {
	k pairKey
	p *pairAgg
}

type routeSlot struct {
	k routeKey
	r *routeAgg
}

// sameStr reports whether a and b are the same bytes in memory. Equal
// identity implies equal content, since strings are immutable and a cache
// entry holding one keeps its bytes from being reused; unequal identity
// says nothing, and the caller falls back to comparing contents (the map).
func sameStr(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

func strAddr(s string) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.StringData(s)))) }

func slotOf(h uint64) int { return int((h * 0x9e3779b97f4a7c15) >> (64 - 8)) }

// pair returns the pair row of k, creating it.
func (b *bucket) pair(k *pairKey) *pairAgg {
	sl := &b.pcache[slotOf(strAddr(k.srcWl)^strAddr(k.dstWl)<<1^strAddr(k.svcName)<<2^
		uint64(k.port)<<40^uint64(k.verdict)<<56^uint64(k.drop)<<48^uint64(k.proto))]
	c := &sl.k
	if sl.p != nil && c.port == k.port && c.proto == k.proto && c.verdict == k.verdict && c.drop == k.drop &&
		sameStr(c.srcWl, k.srcWl) && sameStr(c.dstWl, k.dstWl) && sameStr(c.srcNs, k.srcNs) &&
		sameStr(c.dstNs, k.dstNs) && sameStr(c.svcNs, k.svcNs) && sameStr(c.svcName, k.svcName) {
		return sl.p
	}
	p := b.pairs[*k]
	if p == nil {
		p = &pairAgg{}
		b.pairs[*k] = p
	}
	*sl = pairSlot{*k, p}
	return p
}

// cachedRoute returns the route row of k if the cache holds it.
func (b *bucket) cachedRoute(k *routeKey) (*routeSlot, *routeAgg) {
	sl := &b.rcache[slotOf(strAddr(k.route)^strAddr(k.method)<<1^strAddr(k.dstWl)<<2^uint64(k.status)<<40^uint64(k.proto)<<56)]
	c := &sl.k
	if sl.r != nil && c.status == k.status && c.proto == k.proto && sameStr(c.route, k.route) &&
		sameStr(c.method, k.method) && sameStr(c.dstWl, k.dstWl) && sameStr(c.dstNs, k.dstNs) {
		return sl, sl.r
	}
	return sl, nil
}

func newBucket(start int64, late bool, offset int64) *bucket {
	return &bucket{
		start: start, late: late, first: offset, last: offset,
		pairs:    make(map[pairKey]*pairAgg),
		routes:   make(map[routeKey]*routeAgg),
		wlRoutes: make(map[workloadRoute]struct{}),
		wlCount:  make(map[workloadKey]int),
	}
}

// workloadOf names an endpoint's workload: the workload, else the pod name,
// else "" (an endpoint outside the cluster).
func workloadOf(e *schemas.Endpoint) string {
	if e.Workload != "" {
		return e.Workload
	}
	return e.PodName
}

// rollupColumns are the flow.v1 columns bucket.add and partition.add read:
// the aggregator decodes only these (flowcodec.Projection), about a third of
// a message's bytes. A field read here must have its column listed;
// TestProjectionCoversTheRollup checks that the rollups of a projected
// decode equal those of a full one.
var rollupColumns = []string{
	"time", "count", "count_as", "is_reply",
	"src_namespace", "src_workload", "src_pod_name",
	"dst_namespace", "dst_workload", "dst_pod_name",
	"dst_service_namespace", "dst_service_name", "src_service_namespace", "src_service_name",
	"src_port", "dst_port", "l4_protocol", "tcp_flags", "verdict", "drop_reason",
	"bytes_fwd", "bytes_rev", "packets_fwd", "packets_rev",
	"latency_ns", "latency_hist",
	"l7_type", "l7_protocol",
	"l7_http_method", "l7_http_url", "l7_http_status",
	"l7_dns_query", "l7_dns_rcode", "l7_dns_qtypes",
	"l7_kafka_api_key", "l7_kafka_topic", "l7_kafka_error_code",
}

// add folds one flow record into the bucket, by the count-once rule of its
// count_as (doc.go): flows, connections, SYNs and latency from records
// that count as flows, bytes, packets, RSTs and L7 responses (routes) also
// from those that count as traffic, nothing from those that do not count
// (another record carries their connections). An L7 response that is a reply (Hubble's,
// from the server to the client) is folded as its request is: source and
// destination, their ports and services, forward and reverse swapped. It
// reports whether the route was replaced by {other} because of the
// cardinality cap.
func (b *bucket) add(f *schemas.Flow, a *Aggregator) (overflow bool) {
	b.flows++
	if !f.CountAs.Traffic() {
		return false
	}
	n := int64(f.FlowCount())
	src, dst, svc, port := &f.Src, &f.Dst, &f.DstService, f.DstPort
	pktFwd, pktRev, bytesFwd, bytesRev := f.PacketsFwd, f.PacketsRev, f.BytesFwd, f.BytesRev
	if f.IsReply == schemas.True && f.L7.Type == flowpb.L7FlowType_RESPONSE {
		// Hubble reports an L7 response from the server to the client, as
		// a reply: it is folded into its request's pair and route.
		src, dst, svc, port = dst, src, &f.SrcService, f.SrcPort
		pktFwd, pktRev, bytesFwd, bytesRev = pktRev, pktFwd, bytesRev, bytesFwd
	}
	k := pairKey{
		srcNs: src.Namespace, srcWl: workloadOf(src),
		dstNs: dst.Namespace, dstWl: workloadOf(dst),
		svcNs: svc.Namespace, svcName: svc.Name,
		port: port, proto: f.L4Protocol, verdict: f.Verdict,
	}
	if f.Verdict == flowpb.Verdict_DROPPED {
		k.drop = f.DropReason
	}
	p := b.pair(&k)
	p.pktFwd += int64(pktFwd)
	p.pktRev += int64(pktRev)
	p.bytesFwd += int64(bytesFwd)
	p.bytesRev += int64(bytesRev)
	if f.TCPFlags&schemas.FlagRST != 0 {
		p.rst += n
	}
	if f.CountAs.Flows() {
		p.flows += n
		if f.IsReply != schemas.True && (f.L4Protocol != 6 || f.TCPFlags&schemas.FlagSYN != 0) {
			p.conns += n
		}
		if f.TCPFlags&schemas.FlagSYN != 0 {
			p.syn += n
		}
		p.lat.add(f)
	}

	// An L7 response counts in its route whether it counts as a flow (a
	// source where it is its connection's record) or as traffic (the
	// eBPF source: its connection's L3/L4 records carry the flow).
	if f.L7.Protocol == schemas.L7None || f.L7.Type == flowpb.L7FlowType_REQUEST {
		return false
	}
	rk := routeKey{dstNs: k.dstNs, dstWl: k.dstWl, proto: f.L7.Protocol}
	isErr := false
	switch f.L7.Protocol {
	case schemas.L7HTTP:
		rk.method = f.L7.HTTPMethod
		rk.route = a.tpl.route(f.L7.HTTPURL)
		rk.status = int32(f.L7.HTTPStatus)
		isErr = f.L7.HTTPStatus >= 500
	case schemas.L7DNS:
		if len(f.L7.DNSQTypes) > 0 {
			rk.method = f.L7.DNSQTypes[0]
		}
		rk.route = truncate(f.L7.DNSQuery, a.cfg.RouteMaxLen)
		rk.status = int32(f.L7.DNSRCode)
		isErr = f.L7.DNSRCode != 0
	case schemas.L7Kafka:
		rk.method = f.L7.KafkaAPIKey
		rk.route = truncate(f.L7.KafkaTopic, a.cfg.RouteMaxLen)
		rk.status = f.L7.KafkaErrorCode
		isErr = f.L7.KafkaErrorCode != 0
	}
	sl, r := b.cachedRoute(&rk)
	if r == nil {
		r = b.routes[rk]
	}
	if r == nil {
		wr := workloadRoute{workloadKey{rk.dstNs, rk.dstWl}, rk.route}
		if _, seen := b.wlRoutes[wr]; !seen {
			if b.wlCount[wr.workloadKey] >= a.cfg.MaxRoutesPerWorkload {
				overflow = true
				rk.route = RouteOther
			} else {
				b.wlCount[wr.workloadKey]++
				b.wlRoutes[wr] = struct{}{}
			}
		}
		if r = b.routes[rk]; r == nil {
			r = &routeAgg{}
			b.routes[rk] = r
		}
	}
	if rk.route != RouteOther {
		*sl = routeSlot{rk, r}
	}
	r.requests += n
	if isErr {
		r.errors += n
	}
	r.lat.add(f)
	return overflow
}

// columns returns the latency columns of a row.
func (l *latency) columns() (p50, p90, p99, p999, max int64, hist []schemas.HistBucketRow) {
	h := l.hist()
	if len(h) == 0 {
		return 0, 0, 0, 0, int64(l.max), nil
	}
	return int64(h.Quantile(0.5)), int64(h.Quantile(0.9)), int64(h.Quantile(0.99)),
		int64(h.Quantile(0.999)), int64(l.max), schemas.HistRows(nil, h)
}

func protocolName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 1:
		return "ICMPv4"
	case 58:
		return "ICMPv6"
	case 132:
		return "SCTP"
	case 0:
		return ""
	}
	return strconv.Itoa(int(p))
}

// pairRows renders the bucket's pair rollup, sorted by key so that a file's
// content is a function of its records alone.
func (b *bucket) pairRows() []schemas.PairRollup {
	rows := make([]schemas.PairRollup, 0, len(b.pairs))
	us := b.start / 1000
	for k, p := range b.pairs {
		r := schemas.PairRollup{
			WindowStartUs: us,
			SrcNamespace:  k.srcNs, SrcWorkload: k.srcWl,
			DstNamespace: k.dstNs, DstWorkload: k.dstWl,
			DstPort:  int32(k.port),
			Protocol: protocolName(k.proto),
			Verdict:  k.verdict.String(),
			Flows:    p.flows, Connections: p.conns,
			PacketsFwd: p.pktFwd, PacketsRev: p.pktRev,
			BytesFwd: p.bytesFwd, BytesRev: p.bytesRev,
			TCPSyn: p.syn, TCPRst: p.rst,
			Late: b.late,
		}
		if k.svcName != "" {
			r.DstService = k.svcNs + "/" + k.svcName
		}
		if k.verdict == flowpb.Verdict_DROPPED {
			r.DropReason = k.drop.String()
		}
		r.LatencyP50Ns, r.LatencyP90Ns, r.LatencyP99Ns, r.LatencyP999Ns, r.LatencyMaxNs, r.LatencyHist = p.lat.columns()
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(x, y schemas.PairRollup) int {
		return cmp.Or(
			cmp.Compare(x.SrcNamespace, y.SrcNamespace), cmp.Compare(x.SrcWorkload, y.SrcWorkload),
			cmp.Compare(x.DstNamespace, y.DstNamespace), cmp.Compare(x.DstWorkload, y.DstWorkload),
			cmp.Compare(x.DstService, y.DstService), cmp.Compare(x.DstPort, y.DstPort),
			cmp.Compare(x.Protocol, y.Protocol), cmp.Compare(x.Verdict, y.Verdict),
			cmp.Compare(x.DropReason, y.DropReason))
	})
	return rows
}

// routeRows renders the bucket's route rollup, sorted by key.
func (b *bucket) routeRows() []schemas.RouteRollup {
	rows := make([]schemas.RouteRollup, 0, len(b.routes))
	us := b.start / 1000
	for k, r := range b.routes {
		row := schemas.RouteRollup{
			WindowStartUs: us,
			DstNamespace:  k.dstNs, DstWorkload: k.dstWl,
			L7Protocol: k.proto.String(),
			Method:     k.method, Route: k.route, Status: k.status,
			Requests: r.requests, Errors: r.errors,
			Late: b.late,
		}
		row.LatencyP50Ns, row.LatencyP90Ns, row.LatencyP99Ns, row.LatencyP999Ns, row.LatencyMaxNs, row.LatencyHist = r.lat.columns()
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(x, y schemas.RouteRollup) int {
		return cmp.Or(
			cmp.Compare(x.DstNamespace, y.DstNamespace), cmp.Compare(x.DstWorkload, y.DstWorkload),
			cmp.Compare(x.L7Protocol, y.L7Protocol), cmp.Compare(x.Method, y.Method),
			cmp.Compare(x.Route, y.Route), cmp.Compare(x.Status, y.Status))
	})
	return rows
}
