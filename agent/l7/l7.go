// Package l7 turns what the kernel captured of a connection's byte streams
// into L7 exchanges (an HTTP request and its response, a gRPC call, a DNS
// query and its answer, a Kafka request and its response) with their
// latency, without a proxy and without a policy: the userspace half of L7
// visibility on the real datapath.
//
// # What the parsers get
//
// The kernel does not copy whole streams. For a connection on an enabled
// port it captures, per TCP segment with payload (or per UDP datagram), the
// segment's place in its direction's byte stream, its length, the kernel
// time it was seen, and only its first bytes (the head, a configured
// number of bytes). A Chunk is one such capture. So a parser sees every
// byte offset and length of a stream, but the bytes themselves only at the
// start of each chunk: it must find message boundaries from headers it
// reads (a Content-Length, a chunk size, a frame length, a length prefix)
// and skip the bytes it was not given by offset, never by buffering them.
// A header that is longer than the heads it falls in cannot be read: the
// parser counts it (Stats) and finds its feet again at the next message it
// can recognise, or gives the connection up and counts that.
//
// Chunks of one direction arrive in stream order and never overlap (the
// capture drops retransmitted bytes); a gap between two chunks (bytes the
// kernel did not capture: its ring was full) is visible as an offset jump
// and is counted, never misparsed.
//
// # What the parsers give
//
// An Exchange per request and its response: the request's first byte's time
// and the response's first byte's time (kernel times: the latency is what
// the server took as the node saw it), and the L7 fields of schemas.L7.
// A request without a response when the connection ends is an Exchange
// with ResponseNs 0.
//
// # Subpackages
//
// One parser per protocol: http1 (HTTP/1.1), http2 (HTTP/2 with HPACK, gRPC),
// dns (DNS over UDP and TCP) and kafka; each has fuzz targets with seed
// corpora and a benchmark beside its floor.
package l7

import (
	"net/netip"

	"github.com/flowbus/flowbus/schemas"
)

// Direction is the side of a connection that sent a chunk.
type Direction uint8

// Directions.
const (
	// FromClient is the side that opened the connection (requests).
	FromClient Direction = iota
	// FromServer is the side that accepted it (responses).
	FromServer
)

func (d Direction) String() string {
	if d == FromServer {
		return "server"
	}
	return "client"
}

// Conn identifies a connection: its client and server addresses and its
// transport (6 TCP, 17 UDP).
type Conn struct {
	Client, Server netip.AddrPort
	Proto          uint8
}

// Chunk is what the kernel captured of one segment (TCP) or datagram (UDP)
// of a connection.
type Chunk struct {
	Dir Direction
	// TimeNs is when the kernel saw it (CLOCK_MONOTONIC ns, as every
	// kernel timestamp of the agent).
	TimeNs int64
	// Offset is where it starts in its direction's byte stream, from 0 at
	// the first byte captured (TCP); for UDP, each datagram is its own
	// message and Offset counts datagrams' bytes the same way.
	Offset uint64
	// Len is its whole length in the stream.
	Len uint32
	// Head is its first bytes as captured: len(Head) <= Len. The parser
	// must not keep Head after Feed returns (the capture reuses it).
	Head []byte
}

// Exchange is one request and its response.
type Exchange struct {
	// RequestNs is the time of the request's first byte; ResponseNs that
	// of the response's first byte, 0 when none came.
	RequestNs, ResponseNs int64
	// L7 holds the protocol's fields (Protocol, Type RESPONSE when
	// answered, else REQUEST, and the protocol's block).
	L7 schemas.L7
}

// LatencyNs is the response's time less the request's, 0 when unanswered.
func (e *Exchange) LatencyNs() int64 {
	if e.ResponseNs == 0 || e.ResponseNs < e.RequestNs {
		return 0
	}
	return e.ResponseNs - e.RequestNs
}

// Parser follows one connection of one protocol. It is not safe for
// concurrent use; the agent runs one per connection on one goroutine.
type Parser interface {
	// Feed takes the next chunk of either direction and calls emit for
	// every exchange it completes (the Exchange is only valid during the
	// call).
	Feed(c *Chunk, emit func(*Exchange))
	// Close ends the connection: requests still waiting for a response are
	// emitted unanswered.
	Close(emit func(*Exchange))
}

// Reason is why a parser could not follow part of a stream.
type Reason uint8

// Reasons, each a counter of Stats.
const (
	ReasonGap       Reason = iota // bytes the capture missed (an offset jump)
	ReasonTruncated               // a header longer than the heads it fell in
	ReasonMalformed               // bytes that are not the protocol
	ReasonUnpaired                // a response with no request waiting for it
	ReasonStateCap                // per-connection state over its cap (pending requests, tables)
	ReasonLost                    // a connection given up: its later bytes are not parsed
	NumReasons
)

var reasonNames = [NumReasons]string{"gap", "truncated", "malformed", "unpaired", "state_cap", "lost"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Stats counts, per reason, the times a parser could not follow a stream.
// Parsers of one protocol may share one Stats (it is not synchronised: one
// goroutine).
type Stats [NumReasons]uint64

// Add counts one event of reason r.
func (s *Stats) Add(r Reason) {
	if r < NumReasons {
		s[r]++
	}
}
