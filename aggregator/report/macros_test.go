//go:build cgo

package report

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/schemas"
)

// macroConn returns a connection of an in-memory DuckDB with flowbus.sql
// loaded, as `duckdb -init flowbus.sql` has it.
func macroConn(t *testing.T) *sql.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := ducktest.Open(t).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := LoadMacros(ctx, conn); err != nil {
		t.Fatal(err)
	}
	return conn
}

// histLiteral is h as a DuckDB latency_hist value.
func histLiteral(h []schemas.HistBucketRow) string {
	if h == nil {
		return "[]::STRUCT(bucket SMALLINT, count BIGINT)[]"
	}
	var b strings.Builder
	b.WriteString("[")
	for i, e := range h {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{'bucket': %d::SMALLINT, 'count': %d::BIGINT}", e.Bucket, e.Count)
	}
	b.WriteString("]::STRUCT(bucket SMALLINT, count BIGINT)[]")
	return b.String()
}

var quantiles = []float64{0, 0.001, 0.1, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1}

// testHists are the histograms the macros are checked on: empty, one
// bucket, the edge buckets, a spread, and random ones.
func testHists() []schemas.Histogram {
	hs := []schemas.Histogram{
		nil,
		hist(1_000_000),
		{{Index: 0, Count: 3}},
		{{Index: schemas.HistOverflow, Count: 1}},
		{{Index: 0, Count: 1}, {Index: schemas.HistOverflow, Count: 1}},
		{{Index: 300, Count: 5}, {Index: 310, Count: 4}, {Index: 400, Count: 1}},
		{{Index: 1, Count: 1 << 40}, {Index: 832, Count: 7}},
		hist(1_000_000, 2_000_000, 3_000_000, 50_000_000, 900_000_000, 70_000_000_000),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		var h schemas.Histogram
		for range 1 + r.IntN(200) {
			h.Add(uint64(r.ExpFloat64()*float64(r.IntN(1e8)+1)), 1+r.Int64N(50))
		}
		hs = append(hs, h)
	}
	return hs
}

func TestMacroBucketNsMatchesHistValue(t *testing.T) {
	conn := macroConn(t)
	rows, err := conn.QueryContext(context.Background(), `SELECT bucket, flowbus_bucket_ns(bucket::SMALLINT) FROM range(0, 834) t(bucket)`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var b int16
		var v int64
		if err := rows.Scan(&b, &v); err != nil {
			t.Fatal(err)
		}
		if uint64(v) != schemas.HistValue(b) {
			t.Errorf("bucket %d: flowbus_bucket_ns %d, HistValue %d", b, v, schemas.HistValue(b))
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != schemas.HistNumBuckets {
		t.Errorf("checked %d buckets, want %d", n, schemas.HistNumBuckets)
	}
}

// flowbus_quantile and flowbus_hist_total of one histogram equal
// Histogram.Quantile and Total, for every q, in any order of its buckets; a
// NULL latency_hist reads as empty.
func TestMacroQuantileMatchesHistogramQuantile(t *testing.T) {
	conn := macroConn(t)
	ctx := context.Background()
	hs := testHists()
	if _, err := conn.ExecContext(ctx, `CREATE TEMP TABLE h (i INTEGER, reversed BOOLEAN, latency_hist STRUCT(bucket SMALLINT, count BIGINT)[])`); err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		rows := schemas.HistRows(nil, h)
		rev := append([]schemas.HistBucketRow(nil), rows...)
		for a, b := 0, len(rev)-1; a < b; a, b = a+1, b-1 {
			rev[a], rev[b] = rev[b], rev[a]
		}
		if _, err := conn.ExecContext(ctx, fmt.Sprintf(`INSERT INTO h VALUES (%d, false, %s), (%d, true, %s)`, i, histLiteral(rows), i, histLiteral(rev))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO h VALUES (-1, false, NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, q := range quantiles {
		rows, err := conn.QueryContext(ctx, fmt.Sprintf(`SELECT i, reversed, flowbus_hist_total(latency_hist), flowbus_quantile(latency_hist, %v) FROM h ORDER BY i, reversed`, q))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var i int
			var reversed bool
			var total, got int64
			if err := rows.Scan(&i, &reversed, &total, &got); err != nil {
				t.Fatal(err)
			}
			n++
			if i < 0 {
				if total != 0 || got != 0 {
					t.Errorf("NULL hist: total %d, quantile %d; want 0, 0", total, got)
				}
				continue
			}
			h := hs[i]
			if total != h.Total() || uint64(got) != h.Quantile(q) {
				t.Errorf("hist %d %v (reversed %v), q=%v: flowbus_hist_total %d, flowbus_quantile %d; Total %d, Quantile %d",
					i, h, reversed, q, total, got, h.Total(), h.Quantile(q))
			}
		}
		rows.Close()
		if n != 2*len(hs)+1 {
			t.Errorf("q=%v: %d rows, want %d", q, n, 2*len(hs)+1)
		}
	}
}

// Merged across rows in a GROUP BY (flowbus_hist_merge, and flatten(list(…)))
// the quantiles are those of Histogram.Merge, and flowbus_hist_compact is the
// merged histogram itself.
func TestMacroHistMergeMatchesHistogramMerge(t *testing.T) {
	conn := macroConn(t)
	ctx := context.Background()
	hs := testHists()
	if _, err := conn.ExecContext(ctx, `CREATE TEMP TABLE w (k INTEGER, latency_hist STRUCT(bucket SMALLINT, count BIGINT)[])`); err != nil {
		t.Fatal(err)
	}
	// Group k holds the windows hs[k], hs[k+1], hs[k+2] (and one NULL row).
	want := map[int]schemas.Histogram{}
	for k := range len(hs) - 2 {
		var m schemas.Histogram
		for _, h := range hs[k : k+3] {
			m.Merge(h)
			if _, err := conn.ExecContext(ctx, fmt.Sprintf(`INSERT INTO w VALUES (%d, %s)`, k, histLiteral(schemas.HistRows(nil, h)))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.ExecContext(ctx, fmt.Sprintf(`INSERT INTO w VALUES (%d, NULL)`, k)); err != nil {
			t.Fatal(err)
		}
		want[k] = m
	}
	for _, q := range quantiles {
		rows, err := conn.QueryContext(ctx, fmt.Sprintf(`SELECT k, flowbus_quantile(flowbus_hist_merge(latency_hist), %[1]v),
			flowbus_quantile(flatten(list(latency_hist)), %[1]v), flowbus_hist_total(flowbus_hist_merge(latency_hist))
			FROM w GROUP BY k ORDER BY k`, q))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var k int
			var a, b, total int64
			if err := rows.Scan(&k, &a, &b, &total); err != nil {
				t.Fatal(err)
			}
			if w := want[k].Quantile(q); uint64(a) != w || uint64(b) != w || total != want[k].Total() {
				t.Errorf("group %d q=%v: merged quantile %d and %d, total %d; Go %d, total %d", k, q, a, b, total, w, want[k].Total())
			}
			n++
		}
		rows.Close()
		if n != len(want) {
			t.Errorf("q=%v: %d groups, want %d", q, n, len(want))
		}
	}
	rows, err := conn.QueryContext(ctx, `SELECT k, to_json(flowbus_hist_compact(flowbus_hist_merge(latency_hist)))::VARCHAR FROM w GROUP BY k ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k int
		var got string
		if err := rows.Scan(&k, &got); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		b.WriteString("[")
		for i, e := range want[k] {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"bucket":%d,"count":%d}`, e.Index, e.Count)
		}
		b.WriteString("]")
		if got != b.String() {
			t.Errorf("group %d: flowbus_hist_compact = %s, Histogram.Merge = %s", k, got, b.String())
		}
	}
}

// The table macros read what the aggregator's files hold, with the Hive
// partition columns.
func TestMacroTablesReadTheRollups(t *testing.T) {
	out := t.TempDir()
	day := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	writeRoutes(t, out, day, []schemas.RouteRollup{{DstWorkload: "api", Method: "GET", Route: "/a", Requests: 3}})
	writeRoutes(t, out, day.Add(time.Hour), []schemas.RouteRollup{{DstWorkload: "api", Method: "GET", Route: "/a", Requests: 4}})
	conn := macroConn(t)
	var n, requests int64
	var date string
	if err := conn.QueryRowContext(context.Background(), `SELECT count(*), sum(requests), any_value(date)::VARCHAR FROM flowbus_routes(`+dirSQL(out)+`) WHERE hour = 11`).Scan(&n, &requests, &date); err != nil {
		t.Fatal(err)
	}
	if n != 1 || requests != 4 || date != "2026-11-25" {
		t.Errorf("flowbus_routes: %d rows, %d requests, date %s; want 1, 4, 2026-11-25", n, requests, date)
	}
}
