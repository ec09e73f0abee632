// Package parquet writes Parquet files the way flowbus's rollups need them:
// zstd-compressed, dictionary-encoded strings (per the `dict` struct tags of
// the row types in schemas), row groups of at most DefaultRowGroupRows rows
// (DuckDB's row-group size, so one Parquet row group feeds one DuckDB
// thread), and committed atomically.
//
// # Atomic commit
//
// Create opens a hidden temporary file beside the final name
// (".<name>.<random digits>.tmp", which the usual `*.parquet` glob of DuckDB,
// Spark and pandas does not match); FileWriter.Write streams rows into it,
// flushing a row group every Options.RowGroupRows rows, so a file of any
// size costs one row group of memory; Commit (or CommitAs, for a name known
// only at the end) writes the footer, fsyncs the file, renames it onto the
// final name and fsyncs the directory; Abort closes and removes it.
// WriteFile is Create, Write and Commit in one call: there is one commit
// path. A crash at any point therefore leaves either no file or the whole
// file under its final name, plus possibly a stale temporary that RemoveTemp
// (or a caller that maps it to its final name with TempTarget) deletes on
// the next start. The random part keeps two writers of one final name (a
// partition moving between processes) from writing into or deleting each
// other's temporary file. Choosing the final name, and committing bus
// offsets after the commit returns, is the caller's protocol (see package
// aggregator).
//
// The package name shadows github.com/parquet-go/parquet-go, which this
// package imports as pq; callers import only this package.
package parquet
