// Package stdout is the flowbus sink that prints flows as JSON lines in the
// exact shape of `hubble observe -o json`: one observer.GetFlowsResponse
// {flow, node_name, time} per line.
//
// Decisions:
//   - The bytes are produced the way the hubble CLI produces them
//     (hubble/pkg/printer, JSONPBOutput): encoding/json's Encoder over the
//     GetFlowsResponse, whose MarshalJSON is protojson with UseProtoNames.
//     So the output is compact, HTML-escaped like encoding/json, and
//     newline-terminated, and any tool that parses Hubble's JSON export
//     (including flowbus's own hubble-json source) reads it.
//   - The GetFlowsResponse is written without the Observer API's stubs
//     (AppendResponse: protojson of the flow, the node name and the time,
//     in the message's field order), because those link gRPC and with it
//     net and cgo; a test checks every line against the stubs' output. Of
//     flowbus, the package imports schemas and schemas/hubble only.
//   - Flows become flow.Flow with hubble.ToProto; the fields Hubble has no
//     place for (bytes, packets, count, first/last seen, histogram) are in
//     flow.extensions as a google.protobuf.Struct, which protojson prints
//     without our own proto types.
//   - As an agent publisher (agent/export.Publisher), Publish decodes each
//     bus message with the Decoder it was given (internal/flowcodec's, passed
//     in by cmd/flowbus, so that the sink links no Arrow) and prints its
//     flows. A message that does not decode is skipped, counted (Skipped)
//     and logged with its ID and the error, and the good messages beside it
//     are printed; Publish still returns nil, since the exporter retries
//     failed calls and retrying cannot fix a bad message.
//   - Flows are printed in the order the agent's pipeline produced them: the
//     Writer implements agent/export's OneStream, so the exporter batches
//     every partition together instead of sending per-partition batches in
//     turn, and aggregation windows come out sorted by time. A time-ordered
//     source (synthetic, a Hubble export, Hubble itself) is therefore printed
//     exactly in time order, aggregated or not, and `hubble observe --since`
//     over a replay misses nothing; the eBPF source's records are printed in
//     the order the kernel reports them.
//   - Output is buffered and flushed at the end of every Write and Publish,
//     so lines appear promptly and are never split across calls.
package stdout
