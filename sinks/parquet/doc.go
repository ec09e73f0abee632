// Package parquet writes Parquet files the way flowbus's rollups need them:
// zstd-compressed, dictionary-encoded strings (per the `dict` struct tags of
// the row types in schemas), row groups of at most DefaultRowGroupRows rows
// (DuckDB's row-group size, so one Parquet row group feeds one DuckDB
// thread), and committed atomically.
//
// # Atomic commit
//
// WriteFile writes to a hidden temporary file beside the final name
// (".<name>.tmp", which the usual `*.parquet` glob of DuckDB, Spark and
// pandas does not match), fsyncs it, renames it onto the final name and
// fsyncs the directory. A crash at any point therefore leaves either no file
// or the whole file under its final name, plus possibly a stale temporary
// that RemoveTemp deletes on the next start. Choosing the final name, and
// committing bus offsets after WriteFile returns, is the caller's protocol
// (see package aggregator).
//
// The package name shadows github.com/parquet-go/parquet-go, which this
// package imports as pq; callers import only this package.
package parquet
