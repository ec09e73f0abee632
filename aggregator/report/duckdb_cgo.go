//go:build cgo

package report

import _ "github.com/duckdb/duckdb-go/v2" // database/sql driver "duckdb"

// HaveDuckDB reports whether this build links DuckDB (a cgo build).
const HaveDuckDB = true
