// Package http1 is the HTTP/1.x parser of agent/l7: it follows one
// connection from the heads of its segments (l7.Chunk) and gives an
// l7.Exchange per request and its response.
//
// # Messages
//
// Requests are read from the client's chunks, responses from the server's,
// and paired in order (HTTP/1.1 answers in request order): keep-alive and
// pipelining (several messages in one chunk) follow from it. A header may
// span chunks only while every chunk it falls in was captured whole
// (len(Head) == Len): those bytes are joined in a per-direction buffer of
// at most Options.MaxHeaderBytes. Bodies are never read nor buffered: they
// are skipped by offset, by Content-Length, by the chunked coding (the
// chunk-size lines are read, so they must lie in captured heads too), or
// until the connection closes for a response with neither. Responses to
// HEAD and 1xx, 204 and 304 responses have no body. Interim responses (100
// Continue, 102, 103) are skipped: the exchange's response is the final
// one, and ResponseNs is the time of the chunk holding its first byte;
// RequestNs that of the chunk holding the request's first byte. Only CRLF
// line ends are recognised as a header's end (what clients and servers
// send); the start line must be "HTTP/1.0" or "HTTP/1.1".
//
// An exchange carries the method, the request-target as sent (HTTPURL),
// the request's protocol ("HTTP/1.1", "HTTP/1.0"), the status, Type
// RESPONSE and Protocol http; a request without a response (still waiting
// at Close, or given up, below) is emitted with Type REQUEST, ResponseNs 0
// and status 0. HTTPHeaders holds the request's header fields named in
// Options.Headers (case-insensitive; none by default), in order, as
// "Key: value" with the key in Go's canonical form; values are replaced by
// "HIDDEN" (Hubble's placeholder for redacted values) unless
// Options.HeaderValues. Response headers are not kept.
//
// # Upgrades
//
// A request with an Upgrade header, or CONNECT, holds the client's
// direction until its response: a 101, or a 2xx to CONNECT, is emitted as
// the exchange and the rest of the connection is not parsed (nor counted);
// any other response releases the client, whose next request is found at
// the start of a later chunk.
//
// # When the parser cannot follow (l7.Stats)
//
//   - Gap (an offset jump in one direction): that direction drops its
//     state and resynchronises at the next chunk whose head starts a
//     message (one of the methods of RFC 9110 and WebDAV's and a space, or
//     "HTTP/1."; a chunk that begins inside a request line must not pass;
//     a whole chunk of 2 bytes or more too short to tell passes if it
//     begins one, and if the message turns out not to be one, nothing is
//     counted); the chunks before are skipped without being counted again. A gap in the server's direction
//     may have swallowed responses: at the next response read, every
//     waiting request but the newest is emitted unanswered and the
//     response answers the newest (right for clients that do not pipeline:
//     browsers, Go's net/http, curl). A gap in the client's direction needs
//     nothing: the responses of the requests it swallowed find no request
//     waiting (or only newer ones, sent after the response: a response is
//     never paired with a request later than itself) and count Unpaired.
//   - Truncated (a header that continues past a head that was cut, or a
//     chunk-size or trailer line not in a head): the direction
//     resynchronises as after a gap. What could be read is kept: a
//     request whose start line was captured is queued (without headers); a
//     request whose start line was not (but whose first bytes can begin
//     one) leaves a place holder that consumes its response without an
//     exchange; a response answers its request, with status 0 when its
//     status line was not captured (but what was begins "HTTP/1.").
//   - StateCap: over Options.MaxPending waiting requests the oldest is
//     emitted unanswered and its response, when it comes, is consumed
//     without an exchange; a header over Options.MaxHeaderBytes is handled
//     like a truncated one (its start line kept if within the cap).
//   - Malformed: a header that is not HTTP/1.x (start line, field
//     syntax, conflicting Content-Lengths, chunk size): the direction
//     resynchronises (the server's re-aligns its responses as after a
//     gap), and until then every chunk skipped counts Malformed
//     too; Options.MaxMalformed in a row (reset by any message read) give
//     the connection up (Lost): nothing more of it is parsed.
//   - Unpaired: a response with no request waiting for it (or only later
//     ones).
//
// A response to a request that was not read (unpaired, or answering a
// place holder) may have no body although it has a length (HEAD): while
// its body is skipped, a chunk whose head starts with "HTTP/1." is taken
// as the next response.
//
// # Bounds
//
// Per connection: two header buffers of at most MaxHeaderBytes and at most
// MaxPending requests (their method, URL and kept headers are copies:
// nothing refers to a chunk's Head after Feed returns). Common methods and
// the protocols are not allocated; a request costs its URL string.
package http1
