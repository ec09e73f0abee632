package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/aggregator/report"
	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/parquet"
)

// `flowbus sql` prints the embedded flowbus.sql, and what it prints, loaded
// into DuckDB as `duckdb -init` does, runs the demo's drill-down query.
func TestSQLPrintsTheMacrosDuckDBLoads(t *testing.T) {
	code, out, errOut := runCommand("sql")
	if code != 0 || errOut != "" || out != report.MacrosSQL {
		t.Fatalf("flowbus sql: exit %d, stderr %q, stdout %d bytes (want flowbus.sql, %d bytes)", code, errOut, len(out), len(report.MacrosSQL))
	}
	for _, m := range []string{"flowbus_quantile(hist, q)", "flowbus_hist_merge(latency_hist)", "flowbus_pairs(dir)", "flowbus_routes(dir)"} {
		if !strings.Contains(out, "MACRO "+m) {
			t.Errorf("flowbus sql does not define %s", m)
		}
	}
	if code, _, _ := runCommand("sql", "extra"); code != 2 {
		t.Errorf("flowbus sql extra: exit %d, want 2", code)
	}

	dir := t.TempDir()
	w := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var h schemas.Histogram
	for _, v := range []uint64{1_000_000, 2_000_000, 3_000_000, 40_000_000} {
		h.Add(v, 1)
	}
	rows := []schemas.RouteRollup{{WindowStartUs: w.UnixMicro(), DstWorkload: "api", L7Protocol: "http", Method: "GET", Route: "/a",
		Status: 200, Requests: 4, LatencyHist: schemas.HistRows(nil, h)}}
	if _, err := parquet.WriteFile(dir+"/route_rollup/date=2026-11-25/hour=10/p0.parquet", rows, parquet.Options{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := ducktest.Open(t).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, out); err != nil {
		t.Fatalf("loading the output of flowbus sql: %v", err)
	}
	var method, route string
	var requests, errs int64
	var p50, p99, p999 float64
	if err := conn.QueryRowContext(ctx, report.RouteSQL(dir, "")).Scan(&method, &route, &requests, &errs, &p50, &p99, &p999); err != nil {
		t.Fatal(err)
	}
	if requests != 4 || time.Duration(p50*1e6+0.5) != time.Duration(h.Quantile(0.5)) || time.Duration(p99*1e6+0.5) != time.Duration(h.Quantile(0.99)) {
		t.Errorf("drill-down: %d requests, p50 %v ms, p99 %v ms; want 4, %d ns, %d ns", requests, p50, p99, h.Quantile(0.5), h.Quantile(0.99))
	}
}
