package aggregator

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/aggregator/report"
	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/schemas"
)

// The acceptance runs use the agent's synthetic payments fleet and its own
// exact totals. It is generated once per test binary and shared by the
// Kafka and the NATS run.

type fleetData struct {
	msgs   []schemas.Message
	totals synthetic.Totals
	n      int
}

var (
	fleetOnce sync.Once
	fleet     fleetData
	fleetErr  error
)

const fleetPartitions = 4

func fleetRun(t testing.TB) fleetData {
	t.Helper()
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	fleetOnce.Do(func() {
		g, err := synthetic.NewGenerator(synthetic.Config{Seed: 42, Rate: 2000, Count: uint64(n),
			Start: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC), RecordLatencies: true})
		if err != nil {
			fleetErr = err
			return
		}
		flows := make([]schemas.Flow, n)
		for i := 0; i < n; i += 1000 {
			g.Fill(flows[i:min(i+1000, n)])
		}
		fleet = fleetData{msgs: encodeAll(t, split(flows, fleetPartitions, 1000)), totals: g.Totals(), n: n}
	})
	if fleetErr != nil {
		t.Fatal(fleetErr)
	}
	return fleet
}

// checkFleet compares DuckDB's per-pair sums with the generator's totals,
// exactly, and DuckDB's per-route p50/p99 of HTTP with the exact quantiles
// of the generated latencies, within the histogram's 2 %.
func checkFleet(t *testing.T, out string, fd fleetData) {
	t.Helper()
	db := ducktest.Open(t)
	rows, err := db.Query(`SELECT src_namespace, src_workload, dst_namespace, dst_workload, verdict, drop_reason,
		sum(flows)::UBIGINT, sum(bytes_fwd)::UBIGINT, sum(bytes_rev)::UBIGINT, sum(packets_fwd)::UBIGINT, sum(packets_rev)::UBIGINT
		FROM read_parquet('` + filepath.Join(out, PairTable, "*", "*", "*.parquet") + `') GROUP BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[synthetic.Pair]synthetic.PairTotals{}
	var flows uint64
	for rows.Next() {
		var sns, swl, dns, dwl, verdict, drop string
		var p synthetic.PairTotals
		if err := rows.Scan(&sns, &swl, &dns, &dwl, &verdict, &drop, &p.Flows, &p.BytesFwd, &p.BytesRev, &p.PacketsFwd, &p.PacketsRev); err != nil {
			t.Fatal(err)
		}
		k := synthetic.Pair{Src: sns + "/" + swl, Dst: dns + "/" + dwl, Verdict: flowpb.Verdict(flowpb.Verdict_value[verdict])}
		if sns == "" && swl == "" {
			k.Src = "reserved:world"
		}
		if drop != "" {
			k.DropReason = flowpb.DropReason(flowpb.DropReason_value[drop])
		}
		g := got[k]
		g.Flows += p.Flows
		g.BytesFwd += p.BytesFwd
		g.BytesRev += p.BytesRev
		g.PacketsFwd += p.PacketsFwd
		g.PacketsRev += p.PacketsRev
		got[k] = g
		flows += p.Flows
	}
	rows.Close()
	if flows != fd.totals.Flows || flows != uint64(fd.n) {
		t.Errorf("DuckDB flows = %d, generator %d", flows, fd.totals.Flows)
	}
	if len(got) != len(fd.totals.Pairs) {
		t.Errorf("DuckDB has %d pairs, generator %d", len(got), len(fd.totals.Pairs))
	}
	for k, want := range fd.totals.Pairs {
		if got[k] != want {
			t.Errorf("pair %+v: DuckDB %+v, generator %+v", k, got[k], want)
		}
	}

	lats := map[routeID][]uint64{}
	for k, r := range fd.totals.Routes {
		// The generator names UUID segments {uuid}; the aggregator writes
		// every identifier as {id}.
		id := routeID{k.Method, strings.ReplaceAll(k.Path, "{uuid}", RouteID)}
		lats[id] = append(lats[id], r.LatenciesNs...)
	}
	rr, _, err := report.Routes(context.Background(), out, "l7_protocol = 'http'")
	if err != nil {
		t.Fatal(err)
	}
	if len(rr) != len(lats) {
		t.Errorf("DuckDB has %d HTTP routes, generator %d", len(rr), len(lats))
	}
	for _, r := range rr {
		s := slices.Clone(lats[routeID{r.Method, r.Route}])
		if int64(len(s)) != r.Requests {
			t.Errorf("route %s %s: DuckDB %d requests, generator %d", r.Method, r.Route, r.Requests, len(s))
			continue
		}
		slices.Sort(s)
		for _, q := range []struct {
			q   float64
			got time.Duration
		}{{0.5, r.P50}, {0.99, r.P99}} {
			exact := float64(s[schemas.QuantileRank(q.q, int64(len(s)))-1])
			if d := float64(q.got) - exact; d > 0.02*exact || -d > 0.02*exact {
				t.Errorf("route %s %s p%g: DuckDB %v, exact %.0f ns (error %.2f%%)", r.Method, r.Route, 100*q.q, q.got, exact, 100*d/exact)
			}
		}
	}
}
