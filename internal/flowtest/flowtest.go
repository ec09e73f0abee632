// Package flowtest makes flow records for tests and benchmarks: Gen draws
// random flows that cover the value space (edge cases on purpose), Fleet
// builds the realistic payments fleet the benchmarks use. Every package
// that encodes, converts or stores flows tests against the same records.
package flowtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
)

func enumValues(names map[int32]string) []int32 {
	var v []int32
	for k := range names {
		v = append(v, k)
	}
	slices.Sort(v)
	return v
}

// Gen draws random flows from one seeded source; not safe for concurrent use.
type Gen struct {
	r *rand.Rand
	// Enumerations to draw from, every defined value.
	verdicts, drops, dirs, obs, ipv, l7types []int32
}

// NewGen returns a Gen whose flows are a pure function of seed.
func NewGen(seed uint64) *Gen {
	return &Gen{
		r:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		verdicts: enumValues(flowpb.Verdict_name),
		drops:    enumValues(flowpb.DropReason_name),
		dirs:     enumValues(flowpb.TrafficDirection_name),
		obs:      enumValues(flowpb.TraceObservationPoint_name),
		ipv:      enumValues(flowpb.IPVersion_name),
		l7types:  enumValues(flowpb.L7FlowType_name),
	}
}

func (g *Gen) pick(v []int32) int32 { return v[g.r.IntN(len(v))] }

// str returns "", a short ASCII string, or a string with multi-byte runes.
func (g *Gen) str() string {
	switch g.r.IntN(6) {
	case 0:
		return ""
	case 1:
		return "ünïcode-✓-" + fmt.Sprint(g.r.IntN(100))
	}
	b := make([]byte, 1+g.r.IntN(24))
	for i := range b {
		b[i] = "abcdefghijklmnopqrstuvwxyz0123456789-./_"[g.r.IntN(40)]
	}
	return string(b)
}

// strs returns nil, an empty non-nil slice, or a few strings.
func (g *Gen) strs() []string {
	switch g.r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	s := make([]string, 1+g.r.IntN(5))
	for i := range s {
		s[i] = g.str()
	}
	return s
}

// policies returns nil or policy names as flow records carry them,
// "Kind:namespace/name" (Kind never empty, namespace sometimes).
func (g *Gen) policies() []string {
	if g.r.IntN(3) == 0 {
		return nil
	}
	kinds := [...]string{"NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"}
	s := make([]string, 1+g.r.IntN(3))
	for i := range s {
		ns := g.str()
		if g.r.IntN(3) == 0 {
			ns = ""
		}
		s[i] = kinds[g.r.IntN(len(kinds))] + ":" + ns + "/" + g.str()
	}
	return s
}

func (g *Gen) u64() uint64 {
	switch g.r.IntN(4) {
	case 0:
		return 0
	case 1:
		return math.MaxUint64
	}
	return g.r.Uint64() >> g.r.IntN(64)
}

func (g *Gen) i64() int64 {
	switch g.r.IntN(5) {
	case 0:
		return 0
	case 1:
		return math.MaxInt64
	case 2:
		return math.MinInt64
	}
	return int64(g.r.Uint64())
}

func (g *Gen) i32() int32 {
	if g.r.IntN(4) == 0 {
		return [...]int32{0, math.MaxInt32, math.MinInt32, -1}[g.r.IntN(4)]
	}
	return int32(g.r.Uint32())
}

func (g *Gen) ip() netip.Addr {
	switch g.r.IntN(4) {
	case 0:
		return netip.Addr{}
	case 1:
		var b [16]byte
		for i := range b {
			b[i] = byte(g.r.IntN(256))
		}
		return netip.AddrFrom16(b)
	case 2: // IPv4-mapped IPv6 stays distinct from IPv4
		return netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: 10, 13: byte(g.r.IntN(256)), 14: 3, 15: 4})
	}
	return netip.AddrFrom4([4]byte{10, byte(g.r.IntN(256)), byte(g.r.IntN(256)), byte(g.r.IntN(256))})
}

func (g *Gen) endpoint() schemas.Endpoint {
	return schemas.Endpoint{
		ID: g.r.Uint32(), Identity: g.r.Uint32(), ClusterName: g.str(), Namespace: g.str(),
		PodName: g.str(), Workload: g.str(), WorkloadKind: g.str(), Labels: g.strs(),
	}
}

func (g *Gen) hist() schemas.Histogram {
	switch g.r.IntN(4) {
	case 0:
		return nil
	case 1:
		return schemas.Histogram{}
	}
	var h schemas.Histogram
	for range 1 + g.r.IntN(20) {
		h.Add(g.u64(), 1+g.r.Int64N(1<<40))
	}
	h.Add(uint64(g.r.IntN(900)), math.MaxInt64/4) // bucket 0
	return h
}

// headers returns HTTP headers in the documented "Key: value" form.
func (g *Gen) headers() []string {
	s := g.strs()
	for i := range s {
		s[i] = fmt.Sprintf("X-K%d: %s", i, s[i])
	}
	return s
}

// Flow returns a flow whose L4 and L7 parts are consistent (ports for
// TCP/UDP/SCTP, ICMP fields for ICMP, flags for TCP, one L7 block), as
// hubble.ToProto requires; the Arrow codec does not care.
func (g *Gen) Flow() schemas.Flow {
	r := g.r
	f := schemas.Flow{
		TimeNs:           g.i64(),
		UUID:             g.str(),
		NodeName:         g.str(),
		Verdict:          flowpb.Verdict(g.pick(g.verdicts)),
		DropReason:       flowpb.DropReason(g.pick(g.drops)),
		Direction:        flowpb.TrafficDirection(g.pick(g.dirs)),
		ObservationPoint: flowpb.TraceObservationPoint(g.pick(g.obs)),
		EventType:        g.i32(),
		EventSubType:     g.i32(),
		IsReply:          schemas.Tristate(r.IntN(3)),
		CountAs:          schemas.CountAs(r.IntN(3)),
		IPVersion:        flowpb.IPVersion(g.pick(g.ipv)),
		SrcIP:            g.ip(),
		DstIP:            g.ip(),
		L4Protocol:       [...]uint8{0, 1, 6, 17, 58, 132}[r.IntN(6)],
		Src:              g.endpoint(),
		Dst:              g.endpoint(),
		SrcService:       schemas.Service{Namespace: g.str(), Name: g.str()},
		DstService:       schemas.Service{Namespace: g.str(), Name: g.str()},
		SrcNames:         g.strs(),
		DstNames:         g.strs(),
		BytesFwd:         g.u64(),
		BytesRev:         g.u64(),
		PacketsFwd:       g.u64(),
		PacketsRev:       g.u64(),
		FirstSeenNs:      g.i64(),
		LastSeenNs:       g.i64(),
		Count:            g.u64(),
		LatencyNs:        g.u64(),
		LatencyHist:      g.hist(),
		IfIndex:          r.Uint32(),
		IfName:           g.str(),
		IngressAllowedBy: g.policies(),
		EgressAllowedBy:  g.policies(),
		IngressDeniedBy:  g.policies(),
		EgressDeniedBy:   g.policies(),
	}
	switch f.L4Protocol {
	case 6:
		f.TCPFlags = schemas.TCPFlags(r.IntN(1 << 9))
		fallthrough
	case 17, 132:
		f.SrcPort, f.DstPort = uint16(r.Uint32()), uint16(r.Uint32())
	case 1, 58:
		f.ICMPType, f.ICMPCode = uint8(r.Uint32()), uint8(r.Uint32())
	}
	l7 := &f.L7
	l7.Protocol = schemas.L7Protocol(r.IntN(4))
	if l7.Protocol != schemas.L7None || r.IntN(4) == 0 {
		l7.Type = flowpb.L7FlowType(g.pick(g.l7types))
	}
	switch l7.Protocol {
	case schemas.L7HTTP:
		l7.HTTPMethod, l7.HTTPURL, l7.HTTPStatus, l7.HTTPProtocol = g.str(), g.str(), r.Uint32(), g.str()
		l7.HTTPHeaders = g.headers()
	case schemas.L7DNS:
		l7.DNSQuery, l7.DNSRCode, l7.DNSTTL = g.str(), r.Uint32(), r.Uint32()
		l7.DNSQTypes, l7.DNSRRTypes, l7.DNSIPs, l7.DNSCNAMEs = g.strs(), g.strs(), g.strs(), g.strs()
		l7.DNSObservationSource = g.str()
	case schemas.L7Kafka:
		l7.KafkaAPIKey, l7.KafkaTopic, l7.KafkaClientID = g.str(), g.str(), g.str()
		l7.KafkaAPIVersion, l7.KafkaCorrelationID, l7.KafkaErrorCode = g.i32(), g.i32(), g.i32()
	}
	return f
}

// Fleet returns n flow records of the payments fleet as the agent
// emits them after 1 s aggregation: namespaces, workloads, pods and Hubble
// labels from the agent's identity and endpoint caches (so the same string
// values are handed over again and again, as the agent does), HTTP L7 on a
// third of the records, DNS toward kube-dns, policy drops from rewards-cron.
// Count is 1 for 60 % of the records, 2–5 for 25 %, 6–50 for 15 %; each
// folded flow adds one latency sample drawn log-normally around the route's
// median, so histograms have as many buckets as real ones.
func Fleet(seed uint64, n int) []schemas.Flow {
	r := rand.New(rand.NewPCG(seed, 1))
	type wl struct {
		ns, name, kind string
		labels         []string
		pods           []string
		svc            schemas.Service
		ifName         string
	}
	mk := func(ns, name, kind, app string) *wl {
		w := &wl{ns: ns, name: name, kind: kind, svc: schemas.Service{Namespace: ns, Name: name}, ifName: "lxc" + name[:4]}
		w.labels = []string{
			"k8s:app=" + app,
			"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=" + ns,
			"k8s:io.cilium.k8s.policy.cluster=prod-eu1",
			"k8s:io.cilium.k8s.policy.serviceaccount=" + name,
			"k8s:io.kubernetes.pod.namespace=" + ns,
			"k8s:team=payments",
		}
		for p := range 6 {
			w.pods = append(w.pods, fmt.Sprintf("%s-7d9f8b6c5-%05d", name, 10007*p%99991))
		}
		return w
	}
	wls := []*wl{
		mk("payments", "checkout-api", "Deployment", "checkout-api"),
		mk("payments", "ledger-svc", "Deployment", "ledger-svc"),
		mk("payments", "fraud-detector", "Deployment", "fraud-detector"),
		mk("payments", "sanctions-svc", "Deployment", "sanctions-svc"),
		mk("payments", "rewards-cron", "CronJob", "rewards-cron"),
		mk("data", "postgres-primary", "StatefulSet", "postgres"),
		mk("istio-system", "istio-gateway", "Deployment", "istio-ingressgateway"),
		mk("kube-system", "kube-dns", "Deployment", "kube-dns"),
	}
	pairs := [][2]int{{0, 1}, {0, 2}, {0, 3}, {0, 7}, {1, 5}, {6, 0}, {4, 1}}
	median := []float64{4e6, 9e6, 15e6, 0.4e6, 1.5e6, 30e6, 0} // ns, per pair
	var routes []string
	for _, p := range []string{"/v1/checkout", "/v1/checkout/confirm", "/v1/ledger/entries", "/v1/score", "/v1/screen", "/healthz"} {
		routes = append(routes, "http://svc:8080"+p)
	}
	nodes := []string{"node-01", "node-02", "node-03"}
	dnsQuery, dnsA, dnsIP, dnsSrc := "ledger-svc.payments.svc.cluster.local.", []string{"A"}, []string{"10.0.1.10"}, "proxy"
	methods, proto11 := []string{"GET", "POST"}, "HTTP/1.1"
	t0 := int64(1_764_000_000_000_000_000)
	out := make([]schemas.Flow, n)
	for i := range out {
		pi := r.IntN(len(pairs))
		p := pairs[pi]
		s, d := wls[p[0]], wls[p[1]]
		sp, dp := r.IntN(len(s.pods)), r.IntN(4)
		ts := t0 + int64(i)*1e9/int64(n) + r.Int64N(1e6)
		count := 1
		switch x := r.IntN(100); {
		case x >= 85:
			count = 6 + r.IntN(45)
		case x >= 60:
			count = 2 + r.IntN(4)
		}
		f := schemas.Flow{
			TimeNs: ts, NodeName: nodes[p[0]%3],
			Verdict: flowpb.Verdict_FORWARDED, Direction: flowpb.TrafficDirection_EGRESS,
			ObservationPoint: flowpb.TraceObservationPoint_TO_ENDPOINT, EventType: 4,
			IsReply: schemas.False, IPVersion: flowpb.IPVersion_IPv4,
			SrcIP:   netip.AddrFrom4([4]byte{10, 0, byte(p[0]), byte(10 + sp)}),
			DstIP:   netip.AddrFrom4([4]byte{10, 0, byte(p[1]), byte(10 + dp)}),
			SrcPort: uint16(32768 + r.IntN(28000)), DstPort: 8080, L4Protocol: 6,
			TCPFlags: schemas.FlagSYN | schemas.FlagACK | schemas.FlagPSH | schemas.FlagFIN,
			Src: schemas.Endpoint{ID: uint32(100 + p[0]*10 + sp), Identity: uint32(20000 + p[0]), ClusterName: "prod-eu1",
				Namespace: s.ns, PodName: s.pods[sp], Workload: s.name, WorkloadKind: s.kind, Labels: s.labels},
			Dst: schemas.Endpoint{ID: uint32(100 + p[1]*10 + dp), Identity: uint32(20000 + p[1]), ClusterName: "prod-eu1",
				Namespace: d.ns, PodName: d.pods[dp], Workload: d.name, WorkloadKind: d.kind, Labels: d.labels},
			DstService: d.svc,
			BytesFwd:   uint64(count * (200 + r.IntN(2000))), BytesRev: uint64(count * (200 + r.IntN(20000))),
			PacketsFwd: uint64(count * (2 + r.IntN(8))), PacketsRev: uint64(count * (2 + r.IntN(20))),
			FirstSeenNs: ts - r.Int64N(1e9), LastSeenNs: ts, Count: uint64(count),
			IfIndex: uint32(10 + p[1]), IfName: d.ifName,
		}
		if m := median[pi]; m > 0 {
			for range count {
				lat := uint64(m * math.Exp(0.5*r.NormFloat64()))
				f.LatencyHist.Add(lat, 1)
				f.LatencyNs = max(f.LatencyNs, lat)
			}
		}
		switch {
		case p[1] == 7:
			f.DstPort, f.L4Protocol, f.TCPFlags = 53, 17, 0
			f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7DNS, DNSQuery: dnsQuery,
				DNSQTypes: dnsA, DNSRRTypes: dnsA, DNSIPs: dnsIP, DNSTTL: 30, DNSObservationSource: dnsSrc}
			f.EventType = 129
		case p[0] == 4:
			f.Verdict, f.DropReason, f.EventType, f.TCPFlags = flowpb.Verdict_DROPPED, flowpb.DropReason_POLICY_DENIED, 1, schemas.FlagSYN
			f.BytesRev, f.PacketsRev = 0, 0
		case r.IntN(3) == 0:
			f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP, HTTPMethod: methods[r.IntN(2)],
				HTTPURL: routes[r.IntN(len(routes))], HTTPStatus: []uint32{200, 200, 200, 201, 404, 503}[r.IntN(6)],
				HTTPProtocol: proto11}
			f.EventType = 129
		}
		out[i] = f
	}
	return out
}

// DiffFlows reports, as a test error, the first field in which got differs
// from want (flow i of a batch); it reports nothing for equal flows.
func DiffFlows(t testing.TB, i int, got, want *schemas.Flow) {
	t.Helper()
	gv, wv := reflect.ValueOf(*got), reflect.ValueOf(*want)
	for k := 0; k < gv.NumField(); k++ {
		if !reflect.DeepEqual(gv.Field(k).Interface(), wv.Field(k).Interface()) {
			t.Errorf("flow %d: field %s = %#v, want %#v", i, gv.Type().Field(k).Name, gv.Field(k).Interface(), wv.Field(k).Interface())
			return
		}
	}
}
