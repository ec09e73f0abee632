// Package schemas holds what every other flowbus package agrees on: the flow
// record (Flow, with Endpoint, Service, L7, CountAs and Tristate), the
// latency histogram (Histogram), the bus message contract (Message,
// headers, PartitionOf) and the rows written to Parquet (FlowRow,
// PairRollup, RouteRollup). It imports nothing of flowbus, and links
// neither Arrow, zstd nor cgo, so that any package can import it cheaply.
// Every column is documented in schemas/README.md.
//
// Next to it: schemas/hubble converts a Flow to and from Hubble's
// flow.Flow; internal/flowcodec carries flows on the bus as Arrow
// (schema flow.v1).
//
// Files: flow.go (the record), flowrow.go (the raw flow as a Parquet row),
// rollup.go, histogram.go, bus.go.
package schemas
