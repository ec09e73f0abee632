//go:build !cgo

package ducktest

const haveDuckDB = false
