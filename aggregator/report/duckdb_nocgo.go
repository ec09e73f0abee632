//go:build !cgo

package report

// HaveDuckDB reports whether this build links DuckDB: DuckDB is a cgo
// library, and this build has no cgo.
const HaveDuckDB = false
