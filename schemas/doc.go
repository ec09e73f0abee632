// Package schemas holds what every other flowbus package agrees on: the flow
// record (Flow), the lossless conversion to and from Hubble's flow.Flow
// (ToProto, FromProto), the latency histogram (Histogram), the bus message
// contract (Message, headers, PartitionOf) and the Parquet rows (FlowRow,
// PairRollup, RouteRollup). It imports nothing of flowbus. Every column is
// documented in schemas/README.md; the Arrow schema flow.v1 and its codec
// are internal/flowcodec.
//
// Files: flow.go (the record), flowrow.go (the raw flow as a Parquet row),
// rollup.go, hubble.go + extwire.go (flow.Flow), histogram.go, bus.go.
//
// Decisions:
//
//   - ToProto maps onto Hubble's own fields wherever Hubble has one; the rest
//     (bytes, packets, count, first/last seen, L4 latency, histogram, Kafka
//     client ID, L4 protocols Layer4 cannot name) goes into flow.extensions as
//     a google.protobuf.Struct, readable by protojson and the hubble CLI.
//     Protobuf cannot tell an empty list from an absent one: FromProto returns
//     nil for both.
package schemas
