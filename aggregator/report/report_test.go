//go:build cgo

package report

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/parquet"
)

// writeRoutes writes one route_rollup file per window as the aggregator does.
func writeRoutes(t *testing.T, out string, start time.Time, rows []schemas.RouteRollup) {
	t.Helper()
	for i := range rows {
		rows[i].WindowStartUs = start.UnixMicro()
	}
	p := filepath.Join(out, "route_rollup", start.Format("date=2006-01-02"), start.Format("hour=15"), "p0-w"+start.Format("150405")+".parquet")
	if _, err := parquet.WriteFile(p, rows, parquet.Options{}); err != nil {
		t.Fatal(err)
	}
}

func hist(vals ...uint64) schemas.Histogram {
	var h schemas.Histogram
	for _, v := range vals {
		h.Add(v, 1)
	}
	return h
}

func TestRoutesMergeHistogramsAcrossWindowsExactly(t *testing.T) {
	out := t.TempDir()
	day := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	h1 := hist(1_000_000, 2_000_000, 3_000_000, 50_000_000)
	h2 := hist(1_500_000, 900_000_000)
	writeRoutes(t, out, day, []schemas.RouteRollup{
		{DstWorkload: "api", L7Protocol: "http", Method: "GET", Route: "/v1/orders/{id}", Status: 200, Requests: 4, LatencyHist: schemas.HistRows(nil, h1)},
		{DstWorkload: "api", L7Protocol: "http", Method: "POST", Route: "/v1/orders", Status: 503, Requests: 2, Errors: 2},
	})
	writeRoutes(t, out, day.Add(time.Minute), []schemas.RouteRollup{
		{DstWorkload: "api", L7Protocol: "http", Method: "GET", Route: "/v1/orders/{id}", Status: 500, Requests: 2, Errors: 2, LatencyHist: schemas.HistRows(nil, h2)},
	})
	writeRoutes(t, out, day.Add(24*time.Hour), []schemas.RouteRollup{
		{DstWorkload: "api", L7Protocol: "http", Method: "GET", Route: "/v1/orders/{id}", Status: 200, Requests: 1000, LatencyHist: schemas.HistRows(nil, hist(1))},
	})
	rows, q, err := Routes(context.Background(), out, "date = '2026-11-25'")
	if err != nil {
		t.Fatalf("%v\n%s", err, q)
	}
	merged := h1.Clone()
	merged.Merge(h2)
	want := []RouteRow{
		{Method: "GET", Route: "/v1/orders/{id}", Requests: 6, Errors: 2,
			P50: time.Duration(merged.Quantile(0.5)), P99: time.Duration(merged.Quantile(0.99)), P999: time.Duration(merged.Quantile(0.999))},
		{Method: "POST", Route: "/v1/orders", Requests: 2, Errors: 2},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows = %+v, want %+v", rows, want)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	if !strings.Contains(q, "flowbus_hist_merge(latency_hist)") || !strings.Contains(q, "date = '2026-11-25'") {
		t.Errorf("SQL does not show the histogram merge and the filter:\n%s", q)
	}

	// The README query gives the same p99 for the day.
	conn := macroConn(t)
	var wl, method, route string
	var requests int64
	var p99 float64
	if err := conn.QueryRowContext(context.Background(), DayP99SQL(out, "2026-11-25")).Scan(&wl, &method, &route, &requests, &p99); err != nil {
		t.Fatal(err)
	}
	if wl != "api" || route != "/v1/orders/{id}" || requests != 6 || time.Duration(p99*1e6+0.5) != want[0].P99 {
		t.Errorf("README query: %s %s %s %d p99 %v ms, want p99 %v", wl, method, route, requests, p99, want[0].P99)
	}
}

func TestRoutesWithNoFilesReturnsNoRowsAndTheSQL(t *testing.T) {
	rows, q, err := Routes(context.Background(), t.TempDir(), "")
	if err != nil || len(rows) != 0 || !strings.Contains(q, "flowbus_routes(") {
		t.Errorf("Routes on an empty dir = %v, %v, %q", rows, err, q)
	}
}
