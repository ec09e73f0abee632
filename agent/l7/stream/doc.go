// Package stream is the per-connection tracker between the kernel's
// captures and the L7 parsers: it turns the segments of the connections on
// the configured ports (Segment: a TCP segment's sequence number, length,
// flags and head, or a UDP datagram) into the parsers' chunks (l7.Chunk)
// and their exchanges into records (Record: the connection, its protocol
// and the exchange). It is pure Go; one goroutine owns a Tracker.
//
// # Connections
//
// A connection is keyed by its l7.Conn (client, server, transport) and
// looked up in one map. Its protocol is its server port's (Config.Ports,
// filled from a flag such as "http:80,8080 grpc:9090 dns:53 kafka:9092
// auto:7000"; see Ports). It ends on a FIN from both sides, an RST, a SYN
// that reuses its ports, after Config.IdleTimeout without a segment
// (Expire), at Close, or evicted at Config.MaxConns; each time its parser
// is closed, so its pending requests are emitted unanswered. A bare FIN or
// RST of a connection not followed starts nothing.
//
// Decision: offsets come from the TCP sequence numbers, per direction:
// offset 0 is the byte after the SYN's ISN when the SYN was seen, else the
// first byte seen (the agent started mid-stream). A segment's offset is
// its sequence number's signed 32-bit distance from the next expected
// byte added to that byte's 64-bit offset, so numbers wrap past 2^32 and
// streams pass 4 GiB. A lost segment (the kernel's ring was full) is a
// jump the parser sees and counts as a gap; with the SYN seen, even a
// lost first segment is one. UDP has no sequence: a datagram's offset is
// the direction's bytes before it, each datagram its own chunk.
//
// Decision: retransmissions are dropped, not merged. A payload wholly
// before the next expected byte is counted (Stats.Retransmits) and
// dropped; one that overlaps it is trimmed to the new bytes (offset
// advanced, length and head cut; Stats.Trimmed). The parsers take each
// direction in order and never buffer a stream, and the kernel's one ring
// delivers segments nearly in order, so there is nothing to merge into: a
// segment reordered behind a later one shows as a gap, then as a
// retransmission.
//
// Decision: at Config.MaxConns a new connection evicts the least recently
// active one (a doubly linked list in segment order: a map lookup and a
// few pointer moves per segment). The evicted connection's pending
// requests are emitted unanswered, EventEvicted and its protocol's
// l7.ReasonStateCap are counted. Expire walks the same list from its
// least recently active end and stops at the first connection not idle.
// State is bounded: MaxConns connections, each with its parser (bounded by
// the parser's options) and, before its protocol is decided, at most four
// server payloads with heads of at most Config.HeadBytes.
//
// # Detection
//
// Decision: on an auto port the protocol is detected from the client's
// first payload: the HTTP/2 preface "PRI * HTTP/2.0" is http2; an HTTP/1
// method (RFC 9110's, PATCH, WebDAV's, the http1 parser's list) followed
// by a space and a request-target byte is http; a plausible Kafka request
// header (a size from 8 bytes to the Kafka parser's MaxFrame, an API key
// and version franz-go's kmsg knows, a correlation ID of 0 or more, a
// client ID length that fits the frame and printable client ID bytes
// where captured) is kafka; a length prefix of at least 17 and a DNS
// query header (QR 0, an opcode in use, one question, no answer; the
// question must parse when the message was captured whole) is dns over
// TCP; on a UDP port the datagram's DNS query header is dns. The rules
// need nothing a client might not send first, and each rejects the
// others' starts. A client payload that matches none is dropped (counted
// Unparsed) and the next one tried, up to four, unless it was the stream's
// very start (offset 0 after a SYN): then, or after four, the connection
// is undetected (EventUndetected) and kept as a map entry with no parser,
// so its later segments cost a lookup. On an http port, a client whose
// first bytes are the HTTP/2 preface (h2c with prior knowledge) goes to
// the HTTP/2 parser (EventDetected, protocol http2).
//
// Decision: until the client's first payload decides, the server's
// payloads are held (heads copied), at most four, and fed to the parser
// first once it exists: an HTTP/2 server may send its SETTINGS before the
// client's preface arrives (grpc-go does), and the parser needs that
// frame. Past four, an http port's connection is taken as HTTP/1 seen
// mid-stream (a long response) and an auto port's later server payloads
// are dropped (Unparsed; the parser counts the gap).
//
// # What is counted (Stats, Collector)
//
// Segments fed, rejected (no configured port), retransmits, trimmed and
// unparsed; connection events by protocol (opened, closed, expired and
// evicted under the port's protocol, so opened less the rest is Live;
// detected under the protocol found; undetected under auto); exchanges
// emitted; and each protocol's l7.Stats, one shared by all its parsers.
// Collector exports a snapshot that the tracker's goroutine hands it as
// Prometheus metrics (flowbus_l7_segments_total,
// flowbus_l7_parse_errors_total{protocol,reason},
// flowbus_l7_connections_total{protocol,event} and the others it lists).
//
// A connection seen mid-stream starts each direction wherever its first
// segment falls. The http1 parser reads a first server segment that is the
// end of a body as the start of a header, so the response after it is
// lost (counted malformed) and its request emitted unanswered; the
// exchanges after are whole. An HTTP/2 connection cannot be followed
// mid-stream (its HPACK state is gone): on an http2 port its first bytes
// are not the preface, counted malformed, and the connection is lost; on
// an auto port nothing detects it.
//
// # Cost
//
// BenchmarkTrackerHTTP1 feeds the segments of 64 interleaved keep-alive
// HTTP/1.1 connections through the tracker and the http1 parser, beside
// the parser alone on the same chunks as its floor.
package stream
