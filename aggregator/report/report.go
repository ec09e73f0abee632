// Package report reads the aggregator's Parquet rollups with DuckDB, the way
// a user would, and returns both the rows and the SQL that produced them so
// that the demo can print the SQL for the user to run again in the duckdb CLI:
// Routes (per method and route: requests, errors, p50/p99/p99.9), Pairs (who
// talks to whom: flows, bytes, packets per verdict) and DayP99SQL (the README
// query).
//
// Quantiles are read from the merged latency histograms, never averaged:
// every row's latency_hist is unnested, counts are summed per bucket across
// windows, files and late rows, and the q-quantile is the midpoint of the
// first bucket whose cumulative count reaches rank ceil(q·total) (at least
// 1) — the rule of schemas.Histogram.Quantile, so SQL and Go agree exactly.
//
// DuckDB is a C++ library linked through cgo. In a build without cgo (any
// cross-compiled flowbus, e.g. for macOS or Windows) the SQL functions work,
// and Routes and Pairs return ErrNoDuckDB whenever there is a file to read.
package report

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// ErrNoDuckDB is returned by the queries of a flowbus built without cgo,
// which has no DuckDB.
var ErrNoDuckDB = errors.New("DuckDB needs a cgo build of flowbus (this one was built with CGO_ENABLED=0); run the SQL in the duckdb CLI instead")

// BucketMidpointSQL is the SQL expression of schemas.HistValue for a column
// named bucket: the midpoint of the bucket in nanoseconds (bucket 0 → 512 ns,
// the overflow bucket 833 → its lower bound 2^36 ns; bucket i in between has
// k = (i-1)/32, s = (i-1)%32 and covers [(32+s)·2^(k+5), (33+s)·2^(k+5))).
const BucketMidpointSQL = `CASE WHEN bucket <= 0 THEN 512
       WHEN bucket >= 833 THEN CAST(1 AS BIGINT) << 36
       ELSE ((32 + (bucket - 1) % 32) * (CAST(1 AS BIGINT) << (5 + (bucket - 1) // 32)))
            + (CAST(1 AS BIGINT) << (4 + (bucket - 1) // 32)) END`

// RouteSQL returns the DuckDB query of the per-(method, route) drill-down
// over every route_rollup file under out: requests, errors, p50, p99 and
// p99.9 in milliseconds, merged over all windows. where, if not empty, is a
// SQL condition on the route_rollup columns and the Hive partition columns
// date and hour (e.g. "date = '2026-11-25'").
func RouteSQL(out, where string) string {
	glob := quote(filepath.ToSlash(filepath.Join(out, "route_rollup", "*", "*", "*.parquet")))
	cond := ""
	if where != "" {
		cond = "\n  WHERE " + where
	}
	mid := func(col string) string {
		return "(" + strings.ReplaceAll(BucketMidpointSQL, "bucket", col) + ") / 1e6"
	}
	return `WITH r AS (
  SELECT * FROM read_parquet(` + glob + `, hive_partitioning = true)` + cond + `
), hist AS (
  SELECT method, route, h.bucket AS bucket, sum(h.count) AS n
  FROM r, unnest(r.latency_hist) AS u(h)
  GROUP BY ALL
), cum AS (
  SELECT method, route, bucket,
         sum(n) OVER (PARTITION BY method, route ORDER BY bucket) AS c,
         sum(n) OVER (PARTITION BY method, route) AS total
  FROM hist
), q AS (
  SELECT method, route,
         min(bucket) FILTER (WHERE c >= greatest(1, ceil(0.5 * total::DOUBLE))) AS b50,
         min(bucket) FILTER (WHERE c >= greatest(1, ceil(0.99 * total::DOUBLE))) AS b99,
         min(bucket) FILTER (WHERE c >= greatest(1, ceil(0.999 * total::DOUBLE))) AS b999
  FROM cum GROUP BY method, route
), counts AS (
  SELECT method, route, sum(requests) AS requests, sum(errors) AS errors
  FROM r GROUP BY method, route
)
SELECT method, route, requests, errors,
       ` + mid("b50") + ` AS p50_ms,
       ` + mid("b99") + ` AS p99_ms,
       ` + mid("b999") + ` AS p999_ms
FROM counts LEFT JOIN q USING (method, route)
ORDER BY requests DESC, method, route;`
}

// DayP99SQL returns the README query: one day (date "YYYY-MM-DD", UTC) of
// route_rollup windows under out merged, p99 per (destination workload,
// method, route) in milliseconds, slowest first.
func DayP99SQL(out, date string) string {
	glob := quote(filepath.ToSlash(filepath.Join(out, "route_rollup", "*", "*", "*.parquet")))
	return `WITH hist AS (
  SELECT dst_workload, method, route, h.bucket AS bucket, sum(h.count) AS n
  FROM read_parquet(` + glob + `, hive_partitioning = true) r,
       unnest(r.latency_hist) AS u(h)
  WHERE date = ` + quote(date) + `
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
       (` + BucketMidpointSQL + `) / 1e6 AS p99_ms
FROM p99 ORDER BY p99_ms DESC, dst_workload, method, route;`
}

// RouteRow is one row of the drill-down. Quantiles are zero for a route
// without latency measurements.
type RouteRow struct {
	Method, Route    string
	Requests, Errors int64
	P50, P99, P999   time.Duration
}

// Routes runs RouteSQL(out, where) in an in-memory DuckDB and returns the
// rows and the SQL text. With no route_rollup file under out it returns no
// rows and no error.
func Routes(ctx context.Context, out, where string) ([]RouteRow, string, error) {
	q := RouteSQL(out, where)
	rows, err := query(ctx, out, "route_rollup", q, func(rs *sql.Rows) (RouteRow, error) {
		var r RouteRow
		var p50, p99, p999 sql.NullFloat64
		err := rs.Scan(&r.Method, &r.Route, &r.Requests, &r.Errors, &p50, &p99, &p999)
		r.P50, r.P99, r.P999 = ms(p50), ms(p99), ms(p999)
		return r, err
	})
	return rows, q, err
}

// query runs q in an in-memory DuckDB and scans every row with scan. With no
// Parquet file under <out>/<table> it returns no rows and no error.
func query[T any](ctx context.Context, out, table, q string, scan func(*sql.Rows) (T, error)) ([]T, error) {
	files, err := filepath.Glob(filepath.Join(out, table, "*", "*", "*.parquet"))
	if err != nil || len(files) == 0 {
		return nil, nil
	}
	if !HaveDuckDB {
		return nil, ErrNoDuckDB
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, fmt.Errorf("open duckdb: %w", err)
	}
	defer db.Close()
	rs, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("duckdb %s query: %w", table, err)
	}
	defer rs.Close()
	var rows []T
	for rs.Next() {
		r, err := scan(rs)
		if err != nil {
			return nil, fmt.Errorf("duckdb %s row: %w", table, err)
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("duckdb %s rows: %w", table, err)
	}
	return rows, nil
}

func ms(v sql.NullFloat64) time.Duration {
	if !v.Valid {
		return 0
	}
	return time.Duration(v.Float64*1e6 + 0.5)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
