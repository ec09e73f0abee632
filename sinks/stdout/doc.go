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
//   - Flows become flow.Flow with schemas.ToProto; the fields Hubble has no
//     place for (bytes, packets, count, first/last seen, histogram) are in
//     flow.extensions as a google.protobuf.Struct, which protojson prints
//     without our own proto types.
//   - As an agent publisher, Publish decodes each bus message and prints its
//     flows. A message that does not decode is skipped and reported in the
//     returned error (wrapping the schemas decode error); the good messages
//     beside it are still printed.
//   - Output is buffered and flushed at the end of every Write and Publish,
//     so lines appear promptly and are never split across calls.
package stdout
