// Package kafka is the Kafka parser of agent/l7: it follows one connection's
// two byte streams from the heads of their segments and gives an exchange
// per request and its response, with the fields of Hubble's Kafka record
// (schemas.L7: api key, api version, correlation ID, topic, error code) and
// the client ID.
//
// # Framing
//
// Kafka frames are a 4-byte big-endian length and that many bytes. The
// parser keeps, per direction, at most Options.MaxHeader (1 KiB) bytes of
// the current frame's start, gathered from the heads while they hold whole
// segments (so a length prefix or header split over segments is read), and
// skips the rest of the frame by offset: bodies are never buffered. The
// bytes kept are a copy; no Chunk.Head is kept past Feed.
//
// Decision: a connection whose framing is lost is given up, not resynced.
// A frame length over Options.MaxFrame (100 MiB) or negative is counted
// malformed and the connection is given up (lost): Kafka has no marker to
// find the next frame by. So is a length prefix no head holds (truncated,
// lost). A gap (bytes the capture missed) is counted; it is harmless when
// it falls in the body of a frame whose header was read and ends at or
// before the frame's end; anywhere else the framing is lost and so is the
// connection. After the connection is lost, its waiting requests are
// emitted unanswered at Close.
//
// # Requests
//
// The request header (v1, or v2 with tagged fields in the flexible versions
// of its api key; v0, without client ID, for ControlledShutdown v0) gives
// api key, api version, correlation ID and client ID. Which versions are
// flexible comes from github.com/twmb/franz-go/pkg/kmsg. A header cut by
// the head keeps what it held (a request without client ID) and is counted
// truncated; one without a correlation ID cannot be paired and is dropped
// (counted truncated).
//
// Decision: a Produce's topics are read from the head even when its
// records are not there (a walk of the lengths), other bodies only when
// they are whole.
// Topics come from Produce, Fetch and Metadata requests. When the whole
// frame is in the bytes kept, kmsg decodes the body (for any version kmsg
// knows; a body kmsg cannot read is counted malformed and the exchange
// kept without topic). When it is not, which is usual for Produce (its
// record batches follow the first topic's name), a Produce (versions 0 to
// 12) is walked from the bytes kept: the topic names read before the bytes
// end are kept, and if some are past them, the exchange keeps the ones read
// and counts truncated once. A Fetch or Metadata request longer than the
// bytes kept gives no topic and counts truncated. Produce and Fetch from
// version 13 name topics by ID only: no topic, not counted.
//
// Decision: one exchange per topic of a request, and one for none.
// Hubble's Kafka record has one topic: as Cilium's Kafka access log did
// ("log multiple entries for multiple Kafka topics in a single request",
// cilium/cilium#1815), a request with several topics gives one exchange
// per topic, with the same times, key, version, correlation ID and error
// code. Unlike Cilium, a request with no topic (ApiVersions, a Metadata
// for all topics, one whose topics were past the head) still gives one
// exchange, without topic: Cilium logged nothing for it.
//
// The api key is named as Cilium names it (Hubble's Kafka.api_key:
// "produce", "fetch", "metadata", "apiversions", ... the keys 0 to 33 of
// Cilium's APIKeyMap), a key past them by its number.
//
// # Responses
//
// Decision: responses are paired by correlation ID, in order.
// A response is paired with the waiting request of its correlation ID (the
// response header v0, or v1 with tagged fields when the request's version
// is flexible, except ApiVersions, always v0). Responses come in request
// order on a connection, so the requests waiting before the one answered
// are emitted unanswered then; a response that no waiting request matches
// is counted unpaired. A Produce with acks 0 is never answered: it is
// emitted unanswered at once. At most Options.MaxPending (256) requests
// wait; one over the cap is emitted unanswered at once and counted
// (state_cap).
//
// Decision: the error code is the first non-zero one the head holds.
// The error code comes from a response whose whole frame is in the bytes
// kept, decoded by kmsg: a Produce's first non-zero partition error code; a
// Fetch's top-level one if non-zero, else its first non-zero partition one;
// a Metadata's first non-zero topic error code; the top-level error code of
// ApiVersions, FindCoordinator (or its first non-zero coordinator's),
// JoinGroup, Heartbeat, SyncGroup, LeaveGroup, InitProducerId and
// SaslHandshake; 0 otherwise. A response longer than the bytes kept (a Fetch
// with records, usually) reports 0, not counted: 0 means "no error seen",
// not "no error".
package kafka
