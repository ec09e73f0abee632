// Package dns is the DNS parser of agent/l7: it follows one connection's
// DNS messages over UDP (a message per datagram) or TCP (messages with a
// 2-byte length prefix, RFC 1035 §4.2.2) and emits an l7.Exchange per query
// and its response, with the fields Hubble gives a DNS record.
//
// # Fields, as Hubble fills them
//
// Cilium's DNS proxy (pkg/fqdn/dnsproxy ExtractResponseMsgDetails) and
// Hubble's parser (pkg/hubble/parser/seven/dns.go) decide the form:
//
//   - DNSQuery: the first question's name, lower-cased, with its trailing
//     dot ("ledger-svc.payments.svc.cluster.local."). Only the first
//     question counts (there is one in practice).
//   - DNSQTypes: the first question's type only, named as gopacket names
//     DNS types ("A", "AAAA", "Unknown" for a type it does not name).
//   - DNSRRTypes: the type of every answer record, in order (CNAME, A, MX,
//     …); authority and additional records are not read.
//   - DNSIPs: the addresses of the A and AAAA answers, in order.
//   - DNSCNAMEs: the targets of the CNAME answers, in order, as the server
//     wrote them (not lower-cased, as Cilium).
//   - DNSTTL: the minimum TTL of the A, AAAA and CNAME answers (the chain's
//     lowest TTL bounds the whole answer). With none of these (NXDOMAIN,
//     NODATA, an MX answer) it stays 4294967295, as Cilium leaves it; the
//     synthetic source writes 0 there.
//   - DNSRCode: the header's 4-bit RCODE (an OPT record's extended bits are
//     not added).
//   - DNSObservationSource: Options.ObservationSource, by default "ebpf"
//     (Cilium's proxy says "proxy", so Hubble's summary says "Query").
//
// # Exchanges
//
// Decision: one Exchange per query and its response, Type RESPONSE with the
// response's fields, RequestNs the query's time and ResponseNs the
// response's, so its latency is the server's as the node saw it. Hubble
// writes two records (a REQUEST when the proxy forwards the query, a
// RESPONSE when it forwards the answer); the l7 contract folds them into
// one, and the RESPONSE carries everything the REQUEST had. A query with
// no response at Close (or pushed out by the pending cap) is an Exchange of
// Type REQUEST with the query's fields and ResponseNs 0.
//
// Decision: a response with no query waiting for it (its query was sent
// before the capture started, or missed) is counted ReasonUnpaired and
// still emitted, Type RESPONSE with RequestNs = ResponseNs (latency 0):
// Hubble writes a RESPONSE record for every answer, and the answer's
// addresses are what the FQDN cache (agent/l7/fqdn) needs.
//
// Queries and responses pair by ID and question (name case-insensitively,
// type and class) within the connection, whichever direction they came
// from: the QR bit says which is which. A query repeated with the same ID
// and question (a retransmission) is one query: the first one's time
// stands. At most Options.MaxPending queries wait (default 64); over it the
// oldest is emitted unanswered and ReasonStateCap counted. Pending queries
// have no timeout of their own: they go at Close or by the cap.
//
// # What is counted
//
//   - ReasonTruncated: a message whose captured bytes end inside the part
//     the parser reads (header, question, answers). What was read before
//     the cut is used: a query with its question whole still waits for its
//     answer; a response with its question whole is emitted with the
//     answers before the cut. A cut inside the authority or additional
//     sections (an EDNS OPT record) loses nothing and counts nothing.
//     Over TCP, a length prefix past the end of a head is also counted
//     (and the direction is lost).
//   - ReasonMalformed: a message that does not parse though whole, one
//     without a question, a zero-length TCP message. A response whose
//     answers stop parsing is still emitted with those before.
//   - ReasonGap: an offset jump (UDP: datagrams missed; TCP: bytes missed).
//     Over TCP, a gap inside a message cuts that message (it is parsed as
//     cut at its end, known from its prefix); a gap over a length prefix
//     loses the message boundaries.
//   - ReasonLost: a TCP direction whose boundaries are gone (a prefix not
//     captured). Decision: no resynchronisation: DNS over TCP carries
//     little (zone transfers, large answers, DoT is encrypted anyway) and a
//     guessed boundary would misparse; the direction's later bytes are
//     ignored and its pending queries go unanswered at Close.
//   - ReasonUnpaired and ReasonStateCap: above.
//
// # Bytes and memory
//
// UDP datagrams and TCP messages whole in one head are parsed in place. A
// TCP message spanning segments is copied, up to Options.MaxMessage bytes
// (default 4096; past it the message is parsed as cut), into a buffer the
// parser reuses; no Chunk.Head is kept after Feed. The strings of an
// Exchange's lists are the parser's and only valid during emit (the
// one-element DNSQTypes lists are shared by all exchanges): copy to keep.
//
// # Cost
//
// BenchmarkParserUDP and BenchmarkParserTCP (1,000 queries and answers)
// against BenchmarkFloorDNSMessage, dnsmessage.Parser reading the same
// sections of the same messages without pairing or strings: the parser's
// extra is the strings (names, addresses) an Exchange must carry.
package dns
