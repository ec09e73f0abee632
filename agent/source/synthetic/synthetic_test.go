package synthetic

import (
	"context"
	"reflect"
	"regexp"
	"syscall"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func generate(t *testing.T, cfg Config, n int) ([]schemas.Flow, Totals) {
	t.Helper()
	if cfg.Start.IsZero() {
		cfg.Start = t0
	}
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var all []schemas.Flow
	for len(all) < n {
		b := make([]schemas.Flow, min(300, n-len(all)))
		g.Fill(b)
		all = append(all, b...)
	}
	return all, g.Totals()
}

func TestSameSeedSameFlows(t *testing.T) {
	a, ta := generate(t, Config{Seed: 7, Rate: 1000}, 5000)
	b, tb := generate(t, Config{Seed: 7, Rate: 1000}, 5000)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two generators with seed 7 produced different flows")
	}
	if !reflect.DeepEqual(ta, tb) {
		t.Fatal("two generators with seed 7 produced different totals")
	}
	c, _ := generate(t, Config{Seed: 8, Rate: 1000}, 5000)
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 7 and 8 produced the same flows")
	}
	if a[1].TimeNs-a[0].TimeNs != int64(time.Millisecond) || a[0].TimeNs != t0.UnixNano() {
		t.Errorf("timestamps %d, %d: want Start and Start+1ms at 1000 flows/s", a[0].TimeNs, a[1].TimeNs)
	}
}

func wl(e *schemas.Endpoint) string {
	if e.Identity == hubble.IdentityWorld {
		return "reserved:world"
	}
	return e.Namespace + "/" + e.Workload
}

func TestTotalsMatchTheFlows(t *testing.T) {
	flows, tot := generate(t, Config{Seed: 1, RecordLatencies: true}, 20000)
	pairs := map[Pair]PairTotals{}
	routes := map[Route]uint64{}
	var lat []uint64
	uuid := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)
	tmpl := regexp.MustCompile(`/[0-9]{6}(/|$)`)
	for i := range flows {
		f := &flows[i]
		p := Pair{wl(&f.Src), wl(&f.Dst), f.Verdict, f.DropReason}
		pt := pairs[p]
		pt.Flows++
		pt.BytesFwd += f.BytesFwd
		pt.BytesRev += f.BytesRev
		pt.PacketsFwd += f.PacketsFwd
		pt.PacketsRev += f.PacketsRev
		pairs[p] = pt
		if f.L7.Protocol == schemas.L7HTTP {
			path := uuid.ReplaceAllString(f.L7.HTTPURL, "{uuid}")
			path = tmpl.ReplaceAllString(path, "/{id}$1")
			routes[Route{wl(&f.Dst), f.L7.HTTPMethod, path, f.L7.HTTPStatus}]++
			if f.L7.HTTPMethod == "GET" && path == "/api/v1/orders/{id}" && f.L7.HTTPStatus == 200 {
				lat = append(lat, f.LatencyNs)
			}
		}
		if !uuid.MatchString(f.UUID) || len(f.UUID) != 36 {
			t.Fatalf("flow %d UUID %q is not a v4 UUID", i, f.UUID)
		}
	}
	if tot.Flows != 20000 {
		t.Errorf("Totals.Flows = %d, want 20000", tot.Flows)
	}
	if !reflect.DeepEqual(tot.Pairs, pairs) {
		t.Errorf("pair totals differ from the flows:\n got %v\nwant %v", tot.Pairs, pairs)
	}
	for r, n := range routes {
		if got := tot.Routes[r].Flows; got != n {
			t.Errorf("route %v: totals say %d flows, flows have %d", r, got, n)
		}
	}
	orders := Route{"payments/checkout-api", "GET", "/api/v1/orders/{id}", 200}
	if !reflect.DeepEqual(tot.Routes[orders].LatenciesNs, lat) {
		t.Errorf("recorded latencies of %v differ from the flows'", orders)
	}
}

func TestTheFleetHasItsTraffic(t *testing.T) {
	_, tot := generate(t, Config{Seed: 3}, 50000)
	fwd, drop := flowpb.Verdict_FORWARDED, flowpb.Verdict_DROPPED
	for _, p := range []Pair{
		{"istio-system/istio-ingressgateway", "payments/checkout-api", fwd, 0},
		{"payments/checkout-api", "payments/ledger-svc", fwd, 0},
		{"payments/checkout-api", "payments/fraud-detector", fwd, 0},
		{"payments/checkout-api", "payments/sanctions-svc", fwd, 0},
		{"payments/checkout-api", "kube-system/coredns", fwd, 0},
		{"payments/ledger-svc", "payments/postgres-primary", fwd, 0},
		{"payments/rewards-cron", "payments/ledger-svc", drop, flowpb.DropReason_POLICY_DENIED},
		{"reserved:world", "payments/checkout-api", drop, flowpb.DropReason_INVALID_SOURCE_IP},
		{"payments/fraud-detector", "payments/ledger-svc", drop, flowpb.DropReason_CT_MISSING_TCP_ACK_FLAG},
	} {
		if tot.Pairs[p].Flows == 0 {
			t.Errorf("no flows for %v", p)
		}
	}
	if n := tot.Routes[Route{"payments/checkout-api", "POST", "/api/v1/checkout", 503}].Flows; n == 0 {
		t.Error("no 503 responses on POST /api/v1/checkout")
	}
}

func TestFlowsLookLikeHubbleFlows(t *testing.T) {
	flows, _ := generate(t, Config{Seed: 5}, 3000)
	pod := regexp.MustCompile(`^[a-z-]+-[a-z0-9]{9}-[a-z0-9]{5}$|^postgres-primary-0$`)
	var sawDNS, sawNX, sawRST bool
	for i := range flows {
		f := &flows[i]
		if !pod.MatchString(f.Dst.PodName) {
			t.Fatalf("destination pod name %q does not look like a Kubernetes pod", f.Dst.PodName)
		}
		if f.Dst.Labels[0][:4] != "k8s:" || !f.DstIP.Is4() || f.DstIP.As4()[0] != 10 {
			t.Fatalf("flow %d: labels %v, IP %v", i, f.Dst.Labels, f.DstIP)
		}
		if f.L7.Protocol == schemas.L7DNS {
			sawDNS = true
			if f.L7.DNSRCode == 3 {
				sawNX = true
			}
		}
		if f.TCPFlags&schemas.FlagRST != 0 {
			sawRST = true
		}
		if f.Verdict == flowpb.Verdict_DROPPED && (f.EventType != 1 || f.EventSubType != int32(f.DropReason)) {
			t.Fatalf("drop flow %d has event type %d/%d", i, f.EventType, f.EventSubType)
		}
	}
	if !sawDNS || !sawNX || !sawRST {
		t.Errorf("DNS %v, NXDOMAIN %v, RST %v: want all", sawDNS, sawNX, sawRST)
	}
}

func TestRunSendsCountFlowsAtRate(t *testing.T) {
	s, err := New(Config{Seed: 1, Rate: 4000, Count: 400, Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan []schemas.Flow, 1000)
	begin := time.Now()
	if err := s.Run(context.Background(), out, nil); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(begin)
	close(out)
	var n int
	for b := range out {
		n += len(b)
		if len(b) != 40 {
			t.Errorf("batch of %d flows, want 40 (rate/100)", len(b))
		}
	}
	if n != 400 || s.Totals().Flows != 400 {
		t.Errorf("sent %d flows, totals %d; want 400", n, s.Totals().Flows)
	}
	// Pacing: flow 360 (the last batch) is not due before 90 ms.
	if elapsed < 90*time.Millisecond {
		t.Errorf("400 flows at 4000/s took %v, want at least 90ms", elapsed)
	}
}

func TestTotalsCountOnlyDeliveredBatches(t *testing.T) {
	s, _ := New(Config{Seed: 1, BatchSize: 10, Start: t0})
	out := make(chan []schemas.Flow) // unbuffered: the second batch never gets taken
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx, out, nil) }()
	<-out
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := s.Totals().Flows; got != 10 {
		t.Errorf("Totals.Flows = %d after one delivered batch of 10, want 10", got)
	}
}

// cpuTime is the CPU time the process used so far: on a shared machine it
// measures the work, where wall time also counts waiting for a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkFill(b *testing.B) {
	g, _ := NewGenerator(Config{Seed: 1, Start: t0})
	flows := make([]schemas.Flow, 512)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		g.Fill(flows)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*len(flows)), "cpu-ns/flow")
}
