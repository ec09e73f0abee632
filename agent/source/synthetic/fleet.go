package synthetic

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// workload is one workload of the fleet and its pods.
type workload struct {
	ns, name, kind, app string
	identity            uint32
	service             string // Kubernetes service in front of it, "" if none
	replicas            int
	pods                []pod
}

type pod struct {
	ep schemas.Endpoint
	ip netip.Addr
}

// route is one HTTP route of an edge.
type route struct {
	method   string
	path     string // template: {id} is a numeric id, {uuid} a UUID
	weight   int
	medianMs float64 // log-normal latency median
	sigma    float64 // log-normal shape
	statuses []weighted[uint32]
	base     int // flat index of (this route, statuses[0]) in fleet.routeKeys
}

// dnsQuery is one DNS name clients resolve.
type dnsQuery struct {
	name   string
	rcode  uint32 // 0 NOERROR, 3 NXDOMAIN
	weight int
	ips    []string
}

type weighted[T any] struct {
	v T
	w int
}

// edge is one kind of traffic from a source workload to a destination.
type edge struct {
	src, dst   *workload
	weight     int
	port       uint16
	proto      uint8 // 6 TCP, 17 UDP
	verdict    flowpb.Verdict
	dropReason flowpb.DropReason
	srcWorld   bool // the source is outside the cluster (reserved:world)
	l7         schemas.L7Protocol
	routes     []route
	queries    []dnsQuery
	bytesFwd   float64 // log-normal medians
	bytesRev   float64
	rttUs      float64 // TCP handshake median, µs, for L4-only edges

	srcKey, dstKey string // "namespace/workload", for Totals
	pair           Pair
}

// fleet is the payments fleet (see doc.go).
type fleet struct {
	workloads []*workload
	edges     []*edge
	total     int      // sum of edge weights
	routeKeys []Route  // every (edge, route, status), indexed by route.base+status index
	customers []string // customer UUIDs for {uuid} in URLs
}

func newFleet(rng *rand.Rand) *fleet {
	w := func(ns, name, kind, app string, id uint32, svc string, replicas int) *workload {
		return &workload{ns: ns, name: name, kind: kind, app: app, identity: id, service: svc, replicas: replicas}
	}
	gateway := w("istio-system", "istio-ingressgateway", "Deployment", "istio-ingressgateway", 18211, "istio-ingressgateway", 2)
	checkout := w("payments", "checkout-api", "Deployment", "checkout-api", 48213, "checkout-api", 3)
	ledger := w("payments", "ledger-svc", "Deployment", "ledger-svc", 48290, "ledger-svc", 3)
	fraud := w("payments", "fraud-detector", "Deployment", "fraud-detector", 48301, "fraud-detector", 2)
	sanctions := w("payments", "sanctions-svc", "Deployment", "sanctions-svc", 48377, "sanctions-svc", 2)
	postgres := w("payments", "postgres-primary", "StatefulSet", "postgres", 48415, "postgres-primary", 1)
	rewards := w("payments", "rewards-cron", "CronJob", "rewards-cron", 48502, "", 1)
	dns := w("kube-system", "coredns", "Deployment", "kube-dns", 102, "kube-dns", 2)
	f := &fleet{workloads: []*workload{gateway, checkout, ledger, fraud, sanctions, postgres, rewards, dns}}

	ok := []weighted[uint32]{{200, 96}, {404, 2}, {500, 1}, {503, 1}}
	f.edges = []*edge{
		{src: gateway, dst: checkout, weight: 300, port: 8080, proto: 6, l7: schemas.L7HTTP, bytesFwd: 900, bytesRev: 2400, routes: []route{
			{method: "GET", path: "/api/v1/orders/{id}", weight: 50, medianMs: 12, sigma: 0.5, statuses: ok},
			{method: "POST", path: "/api/v1/checkout", weight: 25, medianMs: 85, sigma: 0.6,
				statuses: []weighted[uint32]{{201, 90}, {402, 5}, {502, 3}, {503, 2}}},
			{method: "GET", path: "/api/v1/customers/{uuid}/cards", weight: 15, medianMs: 20, sigma: 0.45, statuses: ok},
			{method: "GET", path: "/healthz", weight: 10, medianMs: 0.8, sigma: 0.3, statuses: []weighted[uint32]{{200, 1}}},
		}},
		{src: checkout, dst: ledger, weight: 200, port: 8080, proto: 6, l7: schemas.L7HTTP, bytesFwd: 700, bytesRev: 900, routes: []route{
			{method: "POST", path: "/v1/ledger/entries", weight: 60, medianMs: 9, sigma: 0.5, statuses: []weighted[uint32]{{201, 98}, {409, 1}, {500, 1}}},
			{method: "GET", path: "/v1/ledger/accounts/{id}/balance", weight: 40, medianMs: 4, sigma: 0.4, statuses: ok},
		}},
		{src: checkout, dst: fraud, weight: 120, port: 9000, proto: 6, l7: schemas.L7HTTP, bytesFwd: 1500, bytesRev: 300, routes: []route{
			{method: "POST", path: "/v2/score", weight: 1, medianMs: 35, sigma: 0.7, statuses: []weighted[uint32]{{200, 97}, {504, 3}}},
		}},
		{src: checkout, dst: sanctions, weight: 60, port: 8443, proto: 6, l7: schemas.L7HTTP, bytesFwd: 400, bytesRev: 350, routes: []route{
			{method: "GET", path: "/v1/screen/{uuid}", weight: 1, medianMs: 60, sigma: 0.8, statuses: []weighted[uint32]{{200, 99}, {500, 1}}},
		}},
		{src: checkout, dst: dns, weight: 150, port: 53, proto: 17, l7: schemas.L7DNS, bytesFwd: 90, bytesRev: 160, queries: []dnsQuery{
			{name: "ledger-svc.payments.svc.cluster.local.", weight: 40},
			{name: "fraud-detector.payments.svc.cluster.local.", weight: 25},
			{name: "sanctions-svc.payments.svc.cluster.local.", weight: 15},
			{name: "api.stripe.com.", weight: 10, ips: []string{"54.187.174.169", "54.187.205.235"}},
			{name: "ledger-svc.payments.svc.cluster.local.payments.svc.cluster.local.", rcode: 3, weight: 10},
		}},
		{src: ledger, dst: postgres, weight: 120, port: 5432, proto: 6, bytesFwd: 2200, bytesRev: 5200, rttUs: 120},
		{src: rewards, dst: ledger, weight: 25, port: 8080, proto: 6, verdict: flowpb.Verdict_DROPPED, dropReason: flowpb.DropReason_POLICY_DENIED, bytesFwd: 74},
		{src: gateway, dst: checkout, weight: 3, port: 8080, proto: 6, verdict: flowpb.Verdict_DROPPED, dropReason: flowpb.DropReason_INVALID_SOURCE_IP, srcWorld: true, bytesFwd: 60},
		{src: fraud, dst: ledger, weight: 4, port: 8080, proto: 6, verdict: flowpb.Verdict_DROPPED, dropReason: flowpb.DropReason_CT_MISSING_TCP_ACK_FLAG, bytesFwd: 52},
		{src: ledger, dst: postgres, weight: 2, port: 5432, proto: 6, verdict: flowpb.Verdict_DROPPED, dropReason: flowpb.DropReason_CT_MAP_INSERTION_FAILED, bytesFwd: 60},
	}
	// Resolve DNS answers to the services' cluster IPs.
	svcIP := map[string]string{}
	for i, wl := range f.workloads {
		svcIP[wl.name] = fmt.Sprintf("10.96.%d.%d", 10+i, 10+3*i)
	}
	for _, e := range f.edges {
		if e.verdict == 0 {
			e.verdict = flowpb.Verdict_FORWARDED
		}
		e.srcKey, e.dstKey = e.src.ns+"/"+e.src.name, e.dst.ns+"/"+e.dst.name
		e.pair = Pair{Src: e.srcKey, Dst: e.dstKey, Verdict: e.verdict, DropReason: e.dropReason}
		if e.srcWorld {
			e.pair.Src = hubble.LabelReservedWorld
		}
		for i := range e.routes {
			r := &e.routes[i]
			r.base = len(f.routeKeys)
			for _, st := range r.statuses {
				f.routeKeys = append(f.routeKeys, Route{Dst: e.dstKey, Method: r.method, Path: r.path, Status: st.v})
			}
		}
		for i := range e.queries {
			q := &e.queries[i]
			for _, wl := range f.workloads {
				if q.rcode == 0 && q.ips == nil && q.name == wl.name+"."+wl.ns+".svc.cluster.local." {
					q.ips = []string{svcIP[wl.name]}
				}
			}
		}
		f.total += e.weight
	}
	f.customers = make([]string, 20000)
	for i := range f.customers {
		f.customers[i] = string(appendUUID(nil, rng))
	}
	// Pods: names with Kubernetes-style hashes, IPs in 10.0.x.y.
	for i, wl := range f.workloads {
		hash := randName(rng, 9, "bcdfghjklmnpqrstvwxz2456789")
		for r := range wl.replicas {
			name := wl.name + "-" + hash + "-" + randName(rng, 5, "bcdfghjklmnpqrstvwxz2456789")
			if wl.kind == "StatefulSet" {
				name = fmt.Sprintf("%s-%d", wl.name, r)
			}
			labels := []string{"k8s:app=" + wl.app, "k8s:io.kubernetes.pod.namespace=" + wl.ns}
			if wl.ns == "kube-system" {
				labels[0] = "k8s:k8s-app=" + wl.app
			}
			sort.Strings(labels)
			wl.pods = append(wl.pods, pod{
				ip: netip.AddrFrom4([4]byte{10, 0, byte(i + 1), byte(10 + r)}),
				ep: schemas.Endpoint{
					ID: uint32(100 + 10*i + r), Identity: wl.identity, ClusterName: "default",
					Namespace: wl.ns, PodName: name, Workload: wl.name, WorkloadKind: wl.kind, Labels: labels,
				},
			})
		}
	}
	return f
}

func randName(rng *rand.Rand, n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// pick returns an index into items chosen by weight.
func pick[T any](rng *rand.Rand, items []T, weight func(*T) int, total int) int {
	if total <= 0 {
		for i := range items {
			total += weight(&items[i])
		}
	}
	r := rng.IntN(total)
	for i := range items {
		r -= weight(&items[i])
		if r < 0 {
			return i
		}
	}
	return len(items) - 1
}
