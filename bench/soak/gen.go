package main

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// The soak's traffic, as the Hubble JSON lines (`hubble observe -o json`)
// a busy node's Cilium would print: a cluster of many workloads, each
// calling a few others and the cluster DNS; every TCP connection is a SYN,
// its SYN-ACK reply, a few data segments and a FIN spread over its life
// (log-normal, median 1.5 s, some for minutes), so connections open and
// close all the time and thousands are open at once; DNS queries and their
// answers; policy drops. Pods are replaced as a rolling update would (a new
// name and IP every few seconds somewhere in the cluster), so keys keyed by
// pod come and go over the run.
//
// Each record is counted by Hubble's rule (hubble.CountAs): a non-reply SYN
// seen at the server's endpoint, a non-reply UDP query and a drop each count
// one flow; the rest (replies, data, FIN) count traffic or nothing. gen
// counts the flows it wrote that way, so the Parquet's sum(flows) must equal
// it exactly.

type genWorkload struct {
	ns, name string
	identity uint32
	port     uint16
	pods     []genPod
	calls    []*genWorkload // servers it calls
	weight   float64        // client weight (Zipf-like)
}

type genPod struct {
	name string
	ip   string
	id   uint32 // endpoint ID
}

// conn is one open TCP connection: its remaining records.
type conn struct {
	due      time.Time
	cli, srv genPod
	cw, sw   *genWorkload
	sport    uint16
	left     int // data segments still to send before the FIN
	gap      time.Duration
	synAcked bool
}

type connHeap []*conn

func (h connHeap) Len() int           { return len(h) }
func (h connHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h connHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *connHeap) Push(x any)        { *h = append(*h, x.(*conn)) }
func (h *connHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

type generator struct {
	rng       *rand.Rand
	wls       []*genWorkload
	cum       []float64 // cumulative client weights
	dns       *genWorkload
	open      connHeap
	node      string
	nextID    uint32
	nextIP    int
	lastChurn time.Time
	churn     time.Duration

	// Totals of what was written.
	Records     uint64 // lines
	Flows       uint64 // records that count as a flow (Hubble's rule)
	Connections uint64 // TCP connections opened (their SYN) + DNS queries
	Drops       uint64
	DNS         uint64 // DNS queries
	Replaced    uint64 // pods replaced
	PeakOpen    int
}

// newGenerator builds a cluster of namespaces × workloads (plus coredns).
func newGenerator(seed uint64, namespaces, perNS int, node string, churn time.Duration) *generator {
	g := &generator{rng: rand.New(rand.NewPCG(seed, 0x50a4)), node: node, nextID: 100, churn: churn}
	apps := []string{"api", "web", "worker", "cache", "db", "search", "auth", "billing", "ledger", "notify", "gateway", "profile"}
	ports := []uint16{8080, 8080, 9000, 6379, 5432, 9200, 8443, 8080, 8080, 8081, 443, 8080}
	id := uint32(20000)
	for n := range namespaces {
		ns := fmt.Sprintf("team-%02d", n)
		for w := range perNS {
			a := w % len(apps)
			wl := &genWorkload{ns: ns, name: fmt.Sprintf("%s-%d", apps[a], w/len(apps)), identity: id, port: ports[a]}
			id++
			for range 2 + g.rng.IntN(5) {
				wl.pods = append(wl.pods, g.newPod(wl))
			}
			g.wls = append(g.wls, wl)
		}
	}
	g.dns = &genWorkload{ns: "kube-system", name: "coredns", identity: 102, port: 53}
	g.dns.pods = []genPod{g.newPod(g.dns), g.newPod(g.dns)}
	total := 0.0
	for i, wl := range g.wls {
		// Callers: mostly within the namespace, some across.
		for range 2 + g.rng.IntN(4) {
			var s *genWorkload
			if g.rng.IntN(4) == 0 {
				s = g.wls[g.rng.IntN(len(g.wls))]
			} else {
				base := i - i%perNS
				s = g.wls[base+g.rng.IntN(perNS)]
			}
			if s != wl {
				wl.calls = append(wl.calls, s)
			}
		}
		wl.weight = 1 / math.Pow(float64(1+g.rng.IntN(len(g.wls))), 0.8)
		total += wl.weight
		g.cum = append(g.cum, total)
	}
	return g
}

func (g *generator) newPod(wl *genWorkload) genPod {
	g.nextID++
	g.nextIP++
	const alnum = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	for i := range b {
		b[i] = alnum[g.rng.IntN(len(alnum))]
	}
	return genPod{name: wl.name + "-7d9f8b6c4-" + string(b), id: g.nextID,
		ip: fmt.Sprintf("10.%d.%d.%d", 40+g.nextIP>>16&0xff, g.nextIP>>8&0xff, g.nextIP&0xff)}
}

func (g *generator) pick() *genWorkload {
	x := g.rng.Float64() * g.cum[len(g.cum)-1]
	lo, hi := 0, len(g.cum)-1
	for lo < hi {
		m := (lo + hi) / 2
		if g.cum[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return g.wls[lo]
}

func (g *generator) lognormal(median time.Duration, sigma float64) time.Duration {
	return time.Duration(float64(median) * math.Exp(sigma*g.rng.NormFloat64()))
}

// Fill appends n lines (or n+1) stamped now to b: records of open connections that
// are due first, new connections, queries and drops for the rest.
func (g *generator) Fill(b []byte, n int, now time.Time) []byte {
	if g.churn > 0 && now.Sub(g.lastChurn) >= g.churn {
		g.lastChurn = now
		wl := g.wls[g.rng.IntN(len(g.wls))]
		wl.pods[g.rng.IntN(len(wl.pods))] = g.newPod(wl)
		g.Replaced++
	}
	ts := now.UTC().AppendFormat(nil, time.RFC3339Nano)
	// A DNS query writes two lines: the count of lines may pass n by one,
	// which the pacer's next call takes back.
	for start := g.Records; g.Records-start < uint64(n); {
		if len(g.open) > 0 && !g.open[0].due.After(now) {
			c := g.open[0]
			switch {
			case !c.synAcked:
				c.synAcked = true
				b = g.tcp(b, ts, c, true, `"SYN":true,"ACK":true`)
				c.due = now.Add(c.gap)
				heap.Fix(&g.open, 0)
			case c.left > 0:
				c.left--
				b = g.tcp(b, ts, c, false, `"ACK":true,"PSH":true`)
				c.due = now.Add(c.gap)
				heap.Fix(&g.open, 0)
			default:
				b = g.tcp(b, ts, c, false, `"ACK":true,"FIN":true`)
				heap.Pop(&g.open)
			}
			continue
		}
		cw := g.pick()
		r := g.rng.IntN(100)
		switch {
		case r < 15: // a DNS query (its answer follows on the next line)
			b = g.dnsQuery(b, ts, cw)
		case r < 17 || len(cw.calls) == 0: // a policy drop
			b = g.drop(b, ts, cw)
		default:
			sw := cw.calls[g.rng.IntN(len(cw.calls))]
			life := min(g.lognormal(1500*time.Millisecond, 1.3), 5*time.Minute)
			c := &conn{cw: cw, sw: sw, cli: cw.pods[g.rng.IntN(len(cw.pods))], srv: sw.pods[g.rng.IntN(len(sw.pods))],
				sport: uint16(32768 + g.rng.IntN(28232)), left: g.rng.IntN(4)}
			c.gap = life / time.Duration(c.left+2)
			c.due = now.Add(time.Millisecond + g.lognormal(300*time.Microsecond, 0.5))
			b = g.tcp(b, ts, c, false, `"SYN":true`)
			heap.Push(&g.open, c)
			g.Connections++
			g.PeakOpen = max(g.PeakOpen, len(g.open))
		}
	}
	return b
}

// tcp writes one TCP record of c: client → server seen at the server's
// endpoint, or the server's reply seen at the client's.
func (g *generator) tcp(b, ts []byte, c *conn, reply bool, flags string) []byte {
	g.Records++
	if !reply && flags == `"SYN":true` {
		g.Flows++
	}
	src, dst, sw, dw, sp, dp := c.cli, c.srv, c.cw, c.sw, c.sport, c.sw.port
	if reply {
		src, dst, sw, dw, sp, dp = dst, src, dw, sw, dp, sp
	}
	b = g.head(b, ts, "FORWARDED", src, dst)
	b = append(b, `"l4":{"TCP":{"source_port":`...)
	b = strconv.AppendUint(b, uint64(sp), 10)
	b = append(b, `,"destination_port":`...)
	b = strconv.AppendUint(b, uint64(dp), 10)
	b = append(b, `,"flags":{`...)
	b = append(b, flags...)
	b = append(b, `}}},`...)
	return g.tail(b, ts, src, dst, sw, dw, reply, 4, 0)
}

func (g *generator) dnsQuery(b, ts []byte, cw *genWorkload) []byte {
	cli, srv := cw.pods[g.rng.IntN(len(cw.pods))], g.dns.pods[g.rng.IntN(len(g.dns.pods))]
	sport := uint64(32768 + g.rng.IntN(28232))
	g.Records += 2
	g.Flows++
	g.Connections++
	g.DNS++
	b = g.head(b, ts, "FORWARDED", cli, srv)
	b = append(b, `"l4":{"UDP":{"source_port":`...)
	b = strconv.AppendUint(b, sport, 10)
	b = append(b, `,"destination_port":53}},`...)
	b = g.tail(b, ts, cli, srv, cw, g.dns, false, 4, 0)
	b = g.head(b, ts, "FORWARDED", srv, cli)
	b = append(b, `"l4":{"UDP":{"source_port":53,"destination_port":`...)
	b = strconv.AppendUint(b, sport, 10)
	b = append(b, `}},`...)
	return g.tail(b, ts, srv, cli, g.dns, cw, true, 4, 0)
}

func (g *generator) drop(b, ts []byte, cw *genWorkload) []byte {
	sw := g.wls[g.rng.IntN(len(g.wls))]
	cli, srv := cw.pods[g.rng.IntN(len(cw.pods))], sw.pods[g.rng.IntN(len(sw.pods))]
	g.Records++
	g.Flows++
	g.Drops++
	b = g.head(b, ts, "DROPPED", cli, srv)
	b = append(b, `"l4":{"TCP":{"source_port":`...)
	b = strconv.AppendUint(b, uint64(32768+g.rng.IntN(28232)), 10)
	b = append(b, `,"destination_port":`...)
	b = strconv.AppendUint(b, uint64(sw.port), 10)
	b = append(b, `,"flags":{"SYN":true}}},"drop_reason":133,"drop_reason_desc":"POLICY_DENIED",`...)
	return g.tail(b, ts, cli, srv, cw, sw, false, 1, 133)
}

func (g *generator) head(b, ts []byte, verdict string, src, dst genPod) []byte {
	b = append(b, `{"flow":{"time":"`...)
	b = append(b, ts...)
	b = append(b, `","verdict":"`...)
	b = append(b, verdict...)
	b = append(b, `","IP":{"source":"`...)
	b = append(b, src.ip...)
	b = append(b, `","destination":"`...)
	b = append(b, dst.ip...)
	return append(b, `","ipVersion":"IPv4"},`...)
}

func (g *generator) tail(b, ts []byte, src, dst genPod, sw, dw *genWorkload, reply bool, typ, sub int) []byte {
	b = append(b, `"source":`...)
	b = endpoint(b, src, sw)
	b = append(b, `,"destination":`...)
	b = endpoint(b, dst, dw)
	b = append(b, `,"Type":"L3_L4","node_name":"`...)
	b = append(b, g.node...)
	b = append(b, `","event_type":{"type":`...)
	b = strconv.AppendInt(b, int64(typ), 10)
	if sub != 0 {
		b = append(b, `,"sub_type":`...)
		b = strconv.AppendInt(b, int64(sub), 10)
	}
	b = append(b, `},"destination_service":{"name":"`...)
	b = append(b, dw.name...)
	b = append(b, `","namespace":"`...)
	b = append(b, dw.ns...)
	if reply {
		b = append(b, `"},"traffic_direction":"EGRESS","trace_observation_point":"TO_ENDPOINT","is_reply":true},"node_name":"`...)
	} else {
		b = append(b, `"},"traffic_direction":"INGRESS","trace_observation_point":"TO_ENDPOINT","is_reply":false},"node_name":"`...)
	}
	b = append(b, g.node...)
	b = append(b, `","time":"`...)
	b = append(b, ts...)
	return append(b, "\"}\n"...)
}

func endpoint(b []byte, p genPod, wl *genWorkload) []byte {
	b = append(b, `{"ID":`...)
	b = strconv.AppendUint(b, uint64(p.id), 10)
	b = append(b, `,"identity":`...)
	b = strconv.AppendUint(b, uint64(wl.identity), 10)
	b = append(b, `,"cluster_name":"default","namespace":"`...)
	b = append(b, wl.ns...)
	b = append(b, `","labels":["k8s:app=`...)
	b = append(b, wl.name...)
	b = append(b, `","k8s:io.kubernetes.pod.namespace=`...)
	b = append(b, wl.ns...)
	b = append(b, `"],"pod_name":"`...)
	b = append(b, p.name...)
	b = append(b, `","workloads":[{"name":"`...)
	b = append(b, wl.name...)
	return append(b, `","kind":"Deployment"}]}`...)
}
