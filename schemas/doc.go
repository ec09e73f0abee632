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
// Files: flow.go (the record), flowrow.go + flowrow_gen.go (the raw flow
// as a Parquet row), rollup.go, histogram.go, bus.go.
//
// Decisions:
//
//   - Flow is the one declaration of the flow.v1 columns: each field is a
//     column, in field order, its flowv1 tag gives the column's name and
//     kind, its hubble tag the Hubble field that carries it, its comment
//     the column's documentation. internal/gencols (go generate ./schemas,
//     make generate-schemas) writes from it everything that is per column
//     and mechanical: the codec's column code (internal/flowcodec/*_gen.go),
//     FlowRow (flowrow_gen.go) and the column table of schemas/README.md;
//     a test fails when a committed file is not what it writes. The Flow
//     struct stays hand-written, so that its documentation and field types
//     are read where they are declared, and the tags keep a column's name
//     and storage on the field's own line.
//   - The Hubble conversion (schemas/hubble) is written by hand, proved
//     complete by tests that walk every field of Flow.
//   - Enumerations of our own (CountAs, L7Protocol) export their names
//     (CountAsNames, L7ProtocolNames), which the codec writes and reads as
//     column values, as it does Hubble's enum names.
//   - Latency is a sparse histogram over fixed log-linear buckets
//     (histogram.go), so that any set of records, windows and nodes merges
//     exactly by adding the counts of equal buckets, in Go and in SQL; why
//     not quantiles or a sketch: README.md, "Why fixed log-linear buckets".
package schemas
