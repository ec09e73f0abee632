// Package ducktest gives tests an in-memory DuckDB, the independent reader
// the Parquet files flowbus writes are checked with. DuckDB is a cgo
// library: without cgo, Open skips the test.
package ducktest

import (
	"database/sql"
	"testing"
)

// Open returns an in-memory DuckDB database, closed when the test ends. In
// a build without cgo it skips the test.
func Open(t testing.TB) *sql.DB {
	t.Helper()
	if !haveDuckDB {
		t.Skip("DuckDB needs a cgo build (CGO_ENABLED=1)")
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// ColumnTypes returns the DuckDB type of each column of the Parquet file(s)
// at path (a path or glob read_parquet accepts), by column name.
func ColumnTypes(t testing.TB, db *sql.DB, path string) map[string]string {
	t.Helper()
	rows, err := db.Query(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))`, path)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	types := map[string]string{}
	for rows.Next() {
		var c, ty string
		if err := rows.Scan(&c, &ty); err != nil {
			t.Fatal(err)
		}
		types[c] = ty
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return types
}
