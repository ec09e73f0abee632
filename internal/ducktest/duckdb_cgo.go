//go:build cgo

package ducktest

import _ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" driver

const haveDuckDB = true
