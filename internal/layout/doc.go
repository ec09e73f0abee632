// Package layout holds no code: its tests check that the repository keeps
// the shape ARCHITECTURE.md describes. The node agent and the aggregator
// tier meet only on the bus (neither imports the other), the contract every
// package imports stays small (no Arrow, zstd or cgo in schemas,
// schemas/hubble, sinks/stdout; no Arrow or zstd in the Observer API's
// packages), and ARCHITECTURE.md's package table lists exactly the
// packages `go list ./...` finds.
package layout
