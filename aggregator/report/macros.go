package report

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
)

// MacrosSQL is flowbus.sql, the DuckDB macros for flowbus's Parquet that
// `flowbus sql` prints (`flowbus sql > flowbus.sql; duckdb -init
// flowbus.sql`) and that every query of this package uses:
//
//	flowbus_bucket_ns(bucket)           schemas.HistValue: the ns a bucket reads as
//	flowbus_hist_total(hist)            observations in a latency_hist
//	flowbus_quantile(hist, q)           schemas.Histogram.Quantile, in ns (0 if empty)
//	flowbus_hist_merge(latency_hist)    aggregate: a group's histograms as one, for flowbus_quantile
//	flowbus_hist_compact(hist)          one element per bucket, in order (Histogram.Merge)
//	flowbus_pairs(dir)                  table: pair_rollup under --data-dir dir, with date and hour
//	flowbus_routes(dir)                 table: route_rollup
//	flowbus_flows(dir)                  table: flows (--raw-flows)
//
// They are TEMP macros: loading them writes nothing into a database file.
//
//go:embed flowbus.sql
var MacrosSQL string

// LoadMacros creates the macros of MacrosSQL on conn. TEMP macros belong to
// one connection, so the queries that use them must run on conn too.
func LoadMacros(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, MacrosSQL); err != nil {
		return fmt.Errorf("duckdb: load flowbus.sql: %w", err)
	}
	return nil
}
