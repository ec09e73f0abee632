//go:build cgo

package report

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/parquet"
)

// oldDayP99SQL is the README's p99 query as it was written before
// flowbus.sql: the histograms unnested and merged with sum(count) GROUP BY
// bucket, the rank found with window sums, the bucket's value a CASE.
const oldDayP99SQL = `WITH hist AS (
  SELECT dst_workload, method, route, h.bucket AS bucket, sum(h.count) AS n
  FROM read_parquet('flowbus-data/route_rollup/*/*/*.parquet', hive_partitioning = true) r,
       unnest(r.latency_hist) AS u(h)
  WHERE date = '2026-11-25'
  GROUP BY ALL
), cum AS (
  SELECT *, sum(n) OVER (PARTITION BY dst_workload, method, route ORDER BY bucket) AS c,
            sum(n) OVER (PARTITION BY dst_workload, method, route) AS total
  FROM hist
), p99 AS (
  SELECT dst_workload, method, route, any_value(total) AS requests,
         min(bucket) FILTER (WHERE c >= greatest(1, ceil(0.99 * total::DOUBLE))) AS bucket
  FROM cum GROUP BY ALL
)
SELECT dst_workload, method, route, requests,
       (CASE WHEN bucket <= 0 THEN 512
       WHEN bucket >= 833 THEN CAST(1 AS BIGINT) << 36
       ELSE ((32 + (bucket - 1) % 32) * (CAST(1 AS BIGINT) << (5 + (bucket - 1) // 32)))
            + (CAST(1 AS BIGINT) << (4 + (bucket - 1) // 32)) END) / 1e6 AS p99_ms
FROM p99 ORDER BY p99_ms DESC, dst_workload, method, route;`

// readmeQueries returns the SQL of every `duckdb -init flowbus.sql -c "…"`
// in README.md (but the placeholder "<SQL>").
func readmeQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var qs []string
	for _, m := range regexp.MustCompile(`duckdb -init flowbus\.sql -c "([^"]+)"`).FindAllStringSubmatch(string(b), -1) {
		if q := strings.TrimSpace(m[1]); q != "<SQL>" {
			qs = append(qs, q)
		}
	}
	return qs
}

// writeReadmeData writes a data directory with the three tables: two days of
// route_rollup windows, pair_rollup windows with late rows, raw flows.
func writeReadmeData(t *testing.T, dir string) {
	t.Helper()
	day := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i, w := range []time.Time{day, day.Add(time.Minute), day.Add(2 * time.Hour), day.Add(24 * time.Hour)} {
		var routes []schemas.RouteRollup
		var pairs []schemas.PairRollup
		for j, r := range []string{"/v1/orders/{id}", "/v1/orders", "/healthz"} {
			var h schemas.Histogram
			for k := range 5 + 7*i + j {
				h.Add(uint64(200_000+k*k*(j+1)*(i+1)*37_000), int64(1+k%3))
			}
			routes = append(routes, schemas.RouteRollup{WindowStartUs: w.UnixMicro(), DstWorkload: "checkout-api", L7Protocol: "http",
				Method: "GET", Route: r, Status: 200, Requests: h.Total(), LatencyHist: schemas.HistRows(nil, h)})
			pairs = append(pairs, schemas.PairRollup{WindowStartUs: w.UnixMicro(), SrcWorkload: "istio-gateway", DstWorkload: []string{"checkout-api", "ledger-svc", "kube-dns"}[j],
				DstPort: int32(8080 + j), Protocol: "TCP", Verdict: "FORWARDED", Flows: h.Total(), Late: i == 1, LatencyHist: schemas.HistRows(nil, h)})
		}
		routes = append(routes, schemas.RouteRollup{WindowStartUs: w.UnixMicro(), DstWorkload: "ledger-svc", L7Protocol: "http", Method: "POST", Route: "/ledger", Status: 503, Requests: 2, Errors: 2})
		part := filepath.Join(w.Format("date=2006-01-02"), w.Format("hour=15"), fmt.Sprintf("p0-w%d.parquet", i))
		if _, err := parquet.WriteFile(filepath.Join(dir, "route_rollup", part), routes, parquet.Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := parquet.WriteFile(filepath.Join(dir, "pair_rollup", part), pairs, parquet.Options{}); err != nil {
			t.Fatal(err)
		}
		var flows []schemas.FlowRow
		for k := range 4 {
			f := schemas.Flow{TimeNs: w.Add(time.Duration(k) * time.Second).UnixNano(), DstPort: 5432, Count: uint64(1 + k), BytesFwd: uint64(100 * k),
				Src:     schemas.Endpoint{Namespace: "payments", PodName: fmt.Sprintf("rewards-cron-%d", k), Workload: "rewards-cron"},
				Dst:     schemas.Endpoint{Namespace: "payments", PodName: "ledger-svc-0", Workload: "ledger-svc"},
				Verdict: flowpb.Verdict_FORWARDED, CountAs: schemas.CountAs(k % 3)}
			if k%2 == 0 {
				f.Verdict, f.DropReason = flowpb.Verdict_DROPPED, flowpb.DropReason_POLICY_DENIED
			}
			flows = schemas.AppendFlowRow(flows, &f)
		}
		if _, err := parquet.WriteFile(filepath.Join(dir, "flows", part), flows, parquet.Options{}); err != nil {
			t.Fatal(err)
		}
	}
}

// queryRows runs q and returns its rows as text, one string a row, the
// values separated by "|".
func queryRows(t *testing.T, conn *sql.Conn, q string) []string {
	t.Helper()
	rs, err := conn.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatalf("%v\n%s", err, q)
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []string
	for rs.Next() {
		v := make([]any, len(cols))
		p := make([]any, len(cols))
		for i := range v {
			p[i] = &v[i]
		}
		if err := rs.Scan(p...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(v))
		for i := range v {
			parts[i] = fmt.Sprint(v[i])
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The README's DuckDB examples, read from README.md, run with flowbus.sql
// loaded and give the numbers of the long forms they replace: the p99 query
// the p99 of the old unnest/window/CASE query (and its requests, which that
// query counted as the histogram's observations), the pair query Go's
// merged quantiles, the raw-flow queries those of read_parquet itself. And
// DayP99SQL is the README's query.
func TestReadmeExamplesUseTheMacrosAndGiveTheOldNumbers(t *testing.T) {
	dir := filepath.ToSlash(t.TempDir())
	writeReadmeData(t, dir)
	conn := macroConn(t)
	qs := readmeQueries(t)
	if len(qs) < 4 {
		t.Fatalf("found %d `duckdb -init flowbus.sql -c` queries in README.md, want at least 4: %q", len(qs), qs)
	}
	at := func(q string) string { return strings.ReplaceAll(q, "'flowbus-data", "'"+dir) }
	checked := 0
	for _, q := range qs {
		if !strings.Contains(q, "flowbus_") {
			t.Errorf("README query uses no macro:\n%s", q)
		}
		got := queryRows(t, conn, at(q))
		if len(got) == 0 {
			t.Errorf("README query returned no rows:\n%s", q)
		}
		switch {
		case strings.Contains(q, "flowbus_routes("):
			if q != DayP99SQL("flowbus-data", "2026-11-25") {
				t.Errorf("README's p99 query is not DayP99SQL:\n%s\nwant\n%s", q, DayP99SQL("flowbus-data", "2026-11-25"))
			}
			// The old form leaves out routes without latencies and counted
			// the histograms' observations, which here are the requests.
			old := queryRows(t, conn, at(oldDayP99SQL))
			var withLatency []string
			for _, r := range got {
				if !strings.Contains(r, "/ledger") {
					withLatency = append(withLatency, r)
				}
			}
			if strings.Join(withLatency, "\n") != strings.Join(old, "\n") || len(old) != 3 {
				t.Errorf("p99 per route:\n%s\nthe old query:\n%s", strings.Join(got, "\n"), strings.Join(old, "\n"))
			}
			checked++
		case strings.Contains(q, "flowbus_pairs("):
			want := readmePairsWant(t, dir)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("pairs:\n%s\nwant (Go's merged histograms):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			checked++
		case strings.Contains(q, "flowbus_flows("):
			old := strings.ReplaceAll(q, "flowbus_flows('flowbus-data')", "read_parquet('flowbus-data/flows/*/*/*.parquet', hive_partitioning = true)")
			if want := queryRows(t, conn, at(old)); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s\n= %q\nread_parquet gives %q", q, got, want)
			}
			checked++
		}
	}
	if checked != len(qs) {
		t.Errorf("checked %d of the README's %d queries", checked, len(qs))
	}
}

// readmePairsWant is the README's pair query computed in Go from the files:
// the pairs of 2026-11-25 hour 10, flows summed, histograms merged with
// Histogram.Merge, p50 and p99 by Histogram.Quantile.
func readmePairsWant(t *testing.T, dir string) []string {
	t.Helper()
	conn := macroConn(t)
	// The rows as written, read back one by one (no SQL aggregation).
	rs := queryRows(t, conn, `SELECT dst_workload, flows, to_json(latency_hist)::VARCHAR FROM read_parquet('`+dir+`/pair_rollup/date=2026-11-25/hour=10/*.parquet')`)
	type agg struct {
		flows int64
		h     schemas.Histogram
	}
	byDst := map[string]*agg{}
	var order []string
	re := regexp.MustCompile(`\{"bucket":(\d+),"count":(\d+)\}`)
	for _, r := range rs {
		f := strings.Split(r, "|")
		dst, js := f[0], f[2]
		var flows int64
		if _, err := fmt.Sscan(f[1], &flows); err != nil {
			t.Fatalf("%q: %v", r, err)
		}
		a := byDst[dst]
		if a == nil {
			a = &agg{}
			byDst[dst] = a
			order = append(order, dst)
		}
		a.flows += flows
		var h schemas.Histogram
		for _, m := range re.FindAllStringSubmatch(js, -1) {
			var b int16
			var c int64
			fmt.Sscan(m[1], &b)
			fmt.Sscan(m[2], &c)
			h = append(h, schemas.Bucket{Index: b, Count: c})
		}
		a.h.Merge(h)
	}
	ports := map[string]int{"checkout-api": 8080, "ledger-svc": 8081, "kube-dns": 8082}
	// ORDER BY flows DESC, src_workload, dst_workload, dst_port
	for i := range order {
		for j := i + 1; j < len(order); j++ {
			a, b := byDst[order[i]], byDst[order[j]]
			if b.flows > a.flows || b.flows == a.flows && order[j] < order[i] {
				order[i], order[j] = order[j], order[i]
			}
		}
	}
	var want []string
	for _, d := range order {
		a := byDst[d]
		want = append(want, fmt.Sprintf("istio-gateway|%s|%d|%d|%v|%v", d, ports[d], a.flows, float64(a.h.Quantile(0.5))/1e6, float64(a.h.Quantile(0.99))/1e6))
	}
	return want
}
