// Package report reads the aggregator's Parquet rollups with DuckDB, the way
// a user would, and returns both the rows and the SQL that produced them so
// that the demo can print the SQL for the user to run again in the duckdb CLI:
// Routes (per method and route: requests, errors, p50/p99/p99.9), Pairs (who
// talks to whom: flows, bytes, packets per verdict) and DayP99SQL (the README
// query).
//
// The queries are written with the DuckDB macros of flowbus.sql (MacrosSQL,
// embedded; `flowbus sql` prints it), which every query here loads first.
// Quantiles are read from the merged latency histograms, never averaged:
// flowbus_hist_merge gathers a group's histograms across windows, files and
// late rows, and flowbus_quantile takes the midpoint of the first bucket
// whose cumulative count reaches rank ceil(q·total) (at least 1) — the rule
// of schemas.Histogram.Quantile, so SQL and Go agree exactly.
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

// RouteSQL returns the DuckDB query of the per-(method, route) drill-down
// over every route_rollup file under out: requests, errors, p50, p99 and
// p99.9 in milliseconds, merged over all windows. where, if not empty, is a
// SQL condition on the route_rollup columns and the Hive partition columns
// date and hour (e.g. "date = '2026-11-25'"). It uses the macros of
// MacrosSQL (`duckdb -init flowbus.sql`).
func RouteSQL(out, where string) string {
	cond := ""
	if where != "" {
		cond = "\n  WHERE " + where
	}
	return `SELECT method, route, requests, errors,
       flowbus_quantile(hist, 0.5) / 1e6 AS p50_ms,
       flowbus_quantile(hist, 0.99) / 1e6 AS p99_ms,
       flowbus_quantile(hist, 0.999) / 1e6 AS p999_ms
FROM (
  SELECT method, route, sum(requests) AS requests, sum(errors) AS errors,
         flowbus_hist_merge(latency_hist) AS hist
  FROM flowbus_routes(` + dirSQL(out) + `)` + cond + `
  GROUP BY method, route
)
ORDER BY requests DESC, method, route;`
}

// DayP99SQL returns the README query: one day (date "YYYY-MM-DD", UTC) of
// route_rollup windows under out merged, requests and p99 per (destination
// workload, method, route) in milliseconds, slowest first. It uses the
// macros of MacrosSQL.
func DayP99SQL(out, date string) string {
	return `SELECT dst_workload, method, route, sum(requests) AS requests,
       flowbus_quantile(flowbus_hist_merge(latency_hist), 0.99) / 1e6 AS p99_ms
FROM flowbus_routes(` + dirSQL(out) + `)
WHERE date = ` + quote(date) + `
GROUP BY ALL ORDER BY p99_ms DESC, dst_workload, method, route;`
}

// dirSQL is out as the SQL string the table macros take.
func dirSQL(out string) string { return quote(filepath.ToSlash(out)) }

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
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("open duckdb: %w", err)
	}
	defer conn.Close()
	if err := LoadMacros(ctx, conn); err != nil {
		return nil, err
	}
	rs, err := conn.QueryContext(ctx, q)
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
