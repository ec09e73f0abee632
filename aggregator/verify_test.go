package aggregator

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/aggregator/report"
	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/internal/promtest"
	"github.com/flowbus/flowbus/schemas"
)

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func newTestAggregator(t testing.TB, cfg Config) (*Aggregator, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := New(cfg, testLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	return a, reg
}

// duckPairs reads the per-pair totals from the pair_rollup files with DuckDB.
func duckPairs(t testing.TB, out string) (map[string]pairTotal, pairTotal) {
	t.Helper()
	db := ducktest.Open(t)
	glob := filepath.Join(out, PairTable, "*", "*", "*.parquet")
	rows, err := db.Query(`SELECT src_namespace, src_workload, dst_namespace, dst_workload, dst_port, verdict,
		sum(flows)::BIGINT, sum(bytes_fwd + bytes_rev)::BIGINT, sum(packets_fwd + packets_rev)::BIGINT
		FROM read_parquet('` + glob + `', hive_partitioning = true) GROUP BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := make(map[string]pairTotal)
	var total pairTotal
	for rows.Next() {
		var sns, swl, dns, dwl, verdict string
		var port int32
		var p pairTotal
		if err := rows.Scan(&sns, &swl, &dns, &dwl, &port, &verdict, &p.flows, &p.bytes, &p.packets); err != nil {
			t.Fatal(err)
		}
		got[pairName(sns, swl, dns, dwl, port, verdict)] = p
		total.flows += p.flows
		total.bytes += p.bytes
		total.packets += p.packets
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got, total
}

// checkExact compares DuckDB's pair totals with the generator's, exactly.
func checkExact(t *testing.T, out string, g genResult) {
	t.Helper()
	got, total := duckPairs(t, out)
	if total != g.total {
		t.Errorf("DuckDB total = %+v, generator total = %+v", total, g.total)
	}
	if len(got) != len(g.pairs) {
		t.Errorf("DuckDB has %d pairs, generator %d", len(got), len(g.pairs))
	}
	for k, want := range g.pairs {
		if got[k] != *want {
			t.Errorf("pair %s: DuckDB %+v, generator %+v", k, got[k], *want)
		}
	}
}

// checkQuantiles compares DuckDB's per-route p50/p99 with the exact
// quantiles of the raw latencies: within the histogram's 2 % error.
func checkQuantiles(t *testing.T, out string, g genResult) {
	t.Helper()
	rows, _, err := report.Routes(context.Background(), out, "")
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[routeID]report.RouteRow)
	for _, r := range rows {
		got[routeID{r.Method, r.Route}] = r
	}
	if len(got) != len(g.latencies) {
		t.Errorf("DuckDB has %d routes, generator %d: %v", len(got), len(g.latencies), rows)
	}
	for id, lats := range g.latencies {
		r, ok := got[id]
		if !ok {
			t.Errorf("route %v missing in DuckDB", id)
			continue
		}
		if r.Requests != int64(len(lats)) {
			t.Errorf("route %v: %d requests, generator %d", id, r.Requests, len(lats))
		}
		s := slices.Clone(lats)
		slices.Sort(s)
		for _, q := range []struct {
			q   float64
			got int64
		}{{0.5, int64(r.P50)}, {0.99, int64(r.P99)}} {
			exact := float64(s[schemas.QuantileRank(q.q, int64(len(s)))-1])
			if d := float64(q.got) - exact; d > 0.02*exact || -d > 0.02*exact {
				t.Errorf("route %v p%g: DuckDB %d ns, exact %.0f ns (error %.2f%% > 2%%)", id, q.q*100, q.got, exact, 100*d/exact)
			}
		}
	}
}

func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	v, _, err := promtest.Value(reg, name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
