package main

import (
	"context"
	"fmt"
	"io"

	"github.com/flowbus/flowbus/aggregator/report"
)

// newSQLFlags returns the flags of `flowbus sql`: none of its own.
func newSQLFlags(io cmdIO) *flagSet {
	return newFlagSet("sql", "sql [flags]", "Print flowbus.sql, the DuckDB macros for the Parquet the aggregator "+
		"writes: flowbus_quantile(hist, q), flowbus_hist_merge(latency_hist), flowbus_pairs(dir), flowbus_routes(dir), "+
		"flowbus_flows(dir) and the rest, each described in the file. Use: flowbus sql > flowbus.sql; "+
		"duckdb -init flowbus.sql.", io)
}

func runSQL(ctx context.Context, args []string, cio cmdIO) error {
	fs := newSQLFlags(cio)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	_, err := io.WriteString(cio.Stdout, report.MacrosSQL)
	return err
}
