// Package hubble converts flow records to and from Hubble's flow.Flow
// (github.com/cilium/cilium/api/v1/flow): ToProto for everything that
// serves or prints Hubble flows (the Observer API, the relay, the stdout
// sink), FromProto for everything that reads them (the Hubble sources), and
// CountAs, the count-once rule for Hubble's own events.
// FromProto(ToProto(f)) equals f for every schemas.Flow, within the limits
// ToProto documents. It imports schemas and Hubble's flow API only: no
// Arrow, no zstd, no cgo.
//
// Which Hubble field carries each column is in the column table of
// schemas/README.md; the fields Hubble has no place for travel as the
// flowbus extension keys (Ext*), listed there under "Hubble extensions".
//
// Files: hubble.go (ToProto, FromProto, the extension keys), extwire.go
// (the extension's protobuf wire form), decode.go and decode_l4l7.go
// (Decoder: flow.Flow's wire form read straight into a schemas.Flow, as
// FromProto reads the message), countas.go (which of Hubble's events counts
// a connection), vocab.go (Cilium's vocabulary).
//
// Decisions:
//
//   - ToProto maps onto Hubble's own fields wherever Hubble has one; the rest
//     (bytes, packets, count, count_as, first/last seen, L4 latency,
//     histogram, Kafka client ID, L4 protocols Layer4 cannot name) goes into
//     flow.extensions as a google.protobuf.Struct, readable by protojson and
//     the hubble CLI.
//   - The extension is marshalled by hand (extwire.go), keys in sorted
//     order: byte for byte what deterministic protobuf marshalling of the
//     same Struct gives (tested), and an order of magnitude cheaper than
//     building a structpb.Struct for every flow the Observer API serves.
//   - Protobuf cannot tell an empty list from an absent one: FromProto
//     returns nil for both.
//   - The mapping is written by hand, not generated from the column
//     declaration (schemas.Flow): which Hubble field carries a column, and
//     when it is present, is a decision per column. Tests walk every field
//     of schemas.Flow by reflection (Endpoint, Service and L7 included) and
//     prove that each one, set alone, changes ToProto's result, survives
//     FromProto(ToProto(f)), and is held by one of the Hubble fields its
//     hubble tag names (the Hubble column of schemas/README.md); so a new
//     column fails the tests until it is mapped here.
//   - Decision: Hubble's events count each connection once by the same rule
//     as flowbus's own records (CountAs): the receiver's to-endpoint event,
//     the sender's from-endpoint event only toward what is not a cluster
//     endpoint, drops where they happen, L7 responses; replies, requests,
//     policy verdicts and the other observation points count nothing. It is
//     decided per event, from Cilium's identity ranges, so every reader of
//     the same events agrees. For Hubble input a pair's flows are therefore
//     its opening events at the receiver (one per connection for TCP, one
//     per Hubble event for UDP and ICMP, whose events Cilium's monitor
//     aggregation reports per connection and interval), its drops and its
//     L7 responses; pair_rollup's connections column counts connections
//     alone. Events that already carry flowbus's extension were counted by
//     the flowbus agent that served them and keep its decision.
package hubble
