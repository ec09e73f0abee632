// Package http2 follows one HTTP/2 connection (cleartext, prior knowledge
// or h2c upgrade already done, as gRPC uses it) from the heads the kernel
// captured of its two byte streams, and emits an l7.Exchange per stream:
// an HTTP/2 request and its response, or a gRPC call.
//
// # Framing
//
// The client's stream starts with the 24-byte preface, checked where
// captured; then each direction is a run of frames, each a 9-byte header
// (length, type, flags, stream) and its payload. The parser reads every
// frame header (which may straddle chunks) and skips payloads by offset:
// DATA is never copied. A frame header that falls outside the heads loses
// the framing of the connection: counted ReasonTruncated, then ReasonLost,
// and the connection is not parsed further (its streams still pending are
// emitted at Close, answered or not as far as they got). So does a gap
// (ReasonGap, then ReasonLost). A frame longer than the receiver's
// SETTINGS_MAX_FRAME_SIZE (16384 until a captured SETTINGS raises it; up to
// 2^24-1 when a SETTINGS payload was not captured, since the value is then
// unknown), a CONTINUATION out of place or padding longer than its frame
// is ReasonMalformed, then ReasonLost.
//
// # HPACK
//
// Each direction has its own golang.org/x/net/http2/hpack Decoder whose
// dynamic table follows the encoder's: every header block (HEADERS or
// PUSH_PROMISE and its CONTINUATIONs) is decoded, those of pushes only to
// keep the table. The table's allowed size is the receiving side's
// SETTINGS_HEADER_TABLE_SIZE, capped by Options.MaxTableSize. A header
// block must be entirely in captured heads to be decoded: if any byte of
// it is missing, the direction's dynamic table can no longer be known, so
// the connection's header state is lost: counted ReasonTruncated then
// ReasonLost, and the connection is not parsed further. A connection whose
// header state was lost is recovered at its next connection (a new parser
// starts with fresh tables); this one is not resynchronised, since every
// later header block may refer to entries it missed. An HPACK decoding
// error (or a string over Options.MaxStringLength) is ReasonMalformed, then
// ReasonLost. Header block fragments are copied to a scratch buffer before
// decoding, so no reference to Chunk.Head outlives Feed.
//
// # Streams and exchanges
//
// A client HEADERS with a stream id above the highest seen opens a stream:
// :method, :scheme, :authority and :path are kept; the exchange's
// RequestNs is the time of the chunk holding the first byte of that
// HEADERS frame. The first server HEADERS of the stream gives ResponseNs
// (likewise its frame's first byte) and :status (a later one, after 1xx,
// replaces the status); any server HEADERS, the gRPC trailers in
// particular (HEADERS with END_STREAM after DATA, or a trailers-only
// response), may carry grpc-status and grpc-message. A stream is one
// exchange, streaming RPCs included: it is emitted when it has ended both
// ways (END_STREAM on HEADERS or DATA from each side), or at RST_STREAM from
// either side, or when a server GOAWAY says it was not processed (a stream
// above its last stream id: unanswered), or at Close. A server HEADERS on
// a stream not followed is ReasonUnpaired. Streams pending at once are
// capped by Options.MaxStreams: a request over the cap is ReasonStateCap and
// not followed (its response then counts ReasonUnpaired too).
//
// # Hubble's form
//
// Hubble shows HTTP/2 and gRPC as Cilium's Envoy proxy logs them
// (cilium pkg/envoy/accesslog_server.go and ParseURL, then
// pkg/hubble/parser/seven/http.go): an http record with the method (POST
// for gRPC), the URL scheme://authority/path (ParseURL of :scheme,
// :authority and :path, e.g.
// "http://10.0.0.7:50051/grpc.health.v1.Health/Check"), code the HTTP
// :status (200 for any gRPC call that got a response), protocol "HTTP/2",
// and headers as net/http.Header keys (canonical case), sorted by key. The
// gRPC outcome has no field of its own in Hubble; it is the grpc-status
// header, so an exchange carries the headers "Grpc-Message: …" (when not
// empty) and "Grpc-Status: N" in that (sorted) order, e.g. a failed call
// ["Grpc-Message: unknown service", "Grpc-Status: 5"]. Other headers are
// not kept (allocation per call; the agent has no header policy to feed).
// A call cancelled before its trailers (a Watch the client ends with
// RST_STREAM) has no Grpc-Status. Without :authority the URL is the path.
// Type is RESPONSE when answered, else REQUEST with ResponseNs 0.
package http2
