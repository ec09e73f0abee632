package http1

import (
	"bytes"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

// Options configure a parser. The zero value is the defaults.
type Options struct {
	// MaxPending caps the requests waiting for their response on one
	// connection (DefaultMaxPending when 0). Over it the oldest is emitted
	// unanswered and counted (ReasonStateCap); its response, when it comes,
	// is consumed without an exchange so the later ones still pair.
	MaxPending int
	// MaxHeaderBytes caps a message header, or a chunk-size or trailer line,
	// including what is assembled across chunks (DefaultMaxHeaderBytes when
	// 0). Over it the message is counted (ReasonStateCap) and skipped.
	MaxHeaderBytes int
	// MaxMalformed is the number of malformed messages in a row after which
	// the connection is given up (ReasonLost) (DefaultMaxMalformed when 0).
	MaxMalformed int
	// Headers names the request headers kept in L7.HTTPHeaders
	// (case-insensitive); none when empty.
	Headers []string
	// HeaderValues keeps the kept headers' values; when false (the default)
	// each value is replaced by Redacted.
	HeaderValues bool
}

// Defaults of Options.
const (
	DefaultMaxPending     = 64
	DefaultMaxHeaderBytes = 8 << 10
	DefaultMaxMalformed   = 4
	// Redacted replaces a kept header's value unless Options.HeaderValues
	// (Hubble's placeholder for redacted values).
	Redacted = "HIDDEN"
)

// state is what a direction expects at its next byte.
type state uint8

const (
	stHeader    state = iota // a message header (possibly begun in an earlier chunk: dir.buf)
	stBody                   // remain bytes of body, then a header
	stChunkLine              // a chunk-size line
	stChunkData              // remain bytes of chunk data and its CRLF, then a chunk-size line
	stTrailer                // a trailer line (an empty one ends the message)
	stClose                  // body until the connection closes: nothing more to parse
	stResync                 // skipping to a chunk whose head starts a message
)

type dir struct {
	next    uint64 // the stream offset expected next
	seen    bool
	st      state
	remain  uint64
	buf     []byte // a header or line begun in an earlier, fully captured chunk
	startNs int64  // time of the chunk holding the current message's first byte
	quiet   bool   // stResync does not count the chunks it skips as malformed
	hold    bool   // client: after an Upgrade or CONNECT request, until its response
	flush   bool   // server: responses were missed; re-align at the next one
	unsure  bool   // server: the body of a response to a request not read (HEAD?)
	guess   bool   // the message was started on a chunk too short to tell
}

// request is a request waiting for its response.
type request struct {
	method, url, proto string
	headers            []string
	timeNs             int64
	head, connect      bool
	upgrade            bool // Upgrade header or CONNECT: the client holds until the response
	absorb             bool // a request whose start line was not captured: its response is consumed silently
}

type parser struct {
	stats   *l7.Stats
	opts    Options
	allow   []string // lower-case allowlisted header names
	dirs    [2]dir
	ring    []request
	first   int
	n       int
	owed    int // responses owed to requests dropped over MaxPending
	bad     int // malformed messages in a row
	stopped bool
	ex      l7.Exchange
	out     func(*l7.Exchange) // Feed's or Close's emit, during the call
}

// New returns a parser following one HTTP/1.x connection, counting into
// stats (which may be shared by the parsers of one goroutine; nil: not
// counted).
func New(stats *l7.Stats, opts Options) l7.Parser {
	if stats == nil {
		stats = new(l7.Stats)
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.MaxMalformed <= 0 {
		opts.MaxMalformed = DefaultMaxMalformed
	}
	p := &parser{stats: stats, opts: opts}
	for _, h := range opts.Headers {
		p.allow = append(p.allow, strings.ToLower(h))
	}
	return p
}

var crlf, crlfcrlf, httpSlash = []byte("\r\n"), []byte("\r\n\r\n"), []byte("HTTP/1.")

type result uint8

const (
	got result = iota
	more
	truncated
	overflow
)

// collect finds the bytes from pos up to and including term, joining them
// to those buffered from earlier chunks. n is what it consumed of the chunk.
func (d *dir) collect(head []byte, pos, end uint64, term []byte, limit int) (msg []byte, n uint64, r result) {
	var avail []byte
	if pos < uint64(len(head)) {
		avail = head[pos:]
	}
	captured := uint64(len(avail)) == end-pos
	if len(d.buf) == 0 {
		if i := bytes.Index(avail, term); i >= 0 {
			if i+len(term) > limit {
				return avail, 0, overflow
			}
			return avail[:i+len(term)], uint64(i + len(term)), got
		}
		if !captured {
			return avail, 0, truncated
		}
		if len(avail) >= limit {
			return avail, 0, overflow
		}
		d.buf = append(d.buf, avail...)
		return nil, uint64(len(avail)), more
	}
	old := len(d.buf)
	take := avail
	if old+len(take) > limit {
		take = take[:limit-old]
	}
	d.buf = append(d.buf, take...)
	from := max(0, old-len(term)+1)
	if i := bytes.Index(d.buf[from:], term); i >= 0 {
		e := from + i + len(term)
		return d.buf[:e], uint64(e - old), got
	}
	if len(take) < len(avail) || len(d.buf) >= limit {
		return d.buf, 0, overflow
	}
	if !captured {
		return d.buf, 0, truncated
	}
	return nil, uint64(len(avail)), more
}

// Feed implements l7.Parser.
func (p *parser) Feed(c *l7.Chunk, emit func(*l7.Exchange)) {
	if p.stopped || c == nil || c.Dir > l7.FromServer {
		return
	}
	server := c.Dir == l7.FromServer
	p.out = emit
	defer func() { p.out = nil }()
	d := &p.dirs[c.Dir]
	head := c.Head
	end := uint64(c.Len)
	if uint64(len(head)) > end {
		head = head[:end]
	}
	var pos uint64
	if d.seen {
		switch {
		case c.Offset > d.next:
			p.stats.Add(l7.ReasonGap)
			p.resync(d, server, true)
		case c.Offset < d.next: // overlap: not expected from the capture; skip what was seen
			if d.next-c.Offset >= end {
				return
			}
			pos = d.next - c.Offset
		}
	}
	d.seen = true
	d.next = c.Offset + end
	if d.unsure && pos == 0 && d.st != stHeader && statusStart(head, uint64(len(head)) == end) {
		// The response whose body this was answered a request that was
		// not read: it may have had none (HEAD). A chunk that starts
		// with a status line is the next response.
		d.st = stHeader
		d.buf = d.buf[:0]
	}
	if d.st == stResync {
		if pos != 0 || !looksLikeStart(head, server, uint64(len(head)) == end) {
			if !d.quiet {
				p.malformed(d, server)
			}
			return
		}
		d.st = stHeader
		d.buf = d.buf[:0]
		d.guess = d.quiet && !bytes.HasPrefix(head, httpSlash) && bytes.IndexByte(head, ' ') < 0
	}
	limit := p.opts.MaxHeaderBytes
	for pos < end && !p.stopped {
		switch d.st {
		case stBody, stChunkData:
			n := min(d.remain, end-pos)
			pos += n
			d.remain -= n
			if d.remain == 0 {
				if d.st == stBody {
					p.done(d)
				} else {
					d.st = stChunkLine
				}
			}
		case stHeader, stChunkLine, stTrailer:
			term := crlf
			if d.st == stHeader {
				term = crlfcrlf
				if len(d.buf) == 0 {
					d.startNs = c.TimeNs
					if pos < uint64(len(head)) { // the fast way: a header within the head
						if n, ok := p.header(d, server, head[pos:min(uint64(len(head)), pos+uint64(limit))]); ok {
							pos += uint64(n)
							continue
						}
					}
				}
			}
			msg, n, r := d.collect(head, pos, end, term, limit)
			switch r {
			case more:
				pos += n
			case got:
				pos += n
				p.message(d, server, msg)
				d.buf = d.buf[:0]
			case truncated, overflow:
				reason := l7.ReasonTruncated
				if r == overflow {
					reason = l7.ReasonStateCap
				}
				p.stats.Add(reason)
				if d.st == stHeader && !d.guess { // a guess may not have been a message
					p.partial(server, msg)
				}
				d.buf = d.buf[:0]
				p.resync(d, server, true)
				return
			}
		default: // stClose, stResync
			return
		}
	}
}

// done ends a message: the next is a header, or for a client that asked
// for an upgrade, nothing until the response says whether it happened.
func (p *parser) done(d *dir) {
	d.st = stHeader
	d.unsure = false
	if d.hold {
		d.st = stResync
		d.quiet = true
	}
}

// resync drops the direction's state: its next message is found at the
// start of a later chunk. quiet: the chunks skipped until then are not
// malformed (after a gap or a truncation they are the rest of a message).
func (p *parser) resync(d *dir, server, quiet bool) {
	d.st = stResync
	d.quiet = quiet
	d.buf = d.buf[:0]
	d.remain = 0
	d.unsure = false
	d.guess = false
	if server {
		d.flush = true
	}
}

func (p *parser) malformed(d *dir, server bool) {
	if d.guess { // it was not a message's start after all
		p.resync(d, server, true)
		return
	}
	p.stats.Add(l7.ReasonMalformed)
	p.bad++
	if p.bad >= p.opts.MaxMalformed {
		p.stats.Add(l7.ReasonLost)
		p.stopped = true
		return
	}
	p.resync(d, server, false)
}

// message handles a complete header or line.
func (p *parser) message(d *dir, server bool, msg []byte) {
	switch d.st {
	case stChunkLine:
		size, ok := chunkSize(msg)
		switch {
		case !ok:
			p.malformed(d, server)
		case size == 0:
			d.st = stTrailer
		default:
			d.st = stChunkData
			d.remain = size + 2
		}
	case stTrailer:
		if len(msg) == 2 {
			p.done(d)
		}
	default:
		if _, ok := p.header(d, server, msg); !ok {
			p.malformed(d, server)
		}
	}
}

// framing is what a header says of its body.
type framing struct {
	length  uint64
	hasLen  bool
	chunked bool
	upgrade bool
	bad     bool
	end     int  // the header's length from the fields (with the empty line)
	more    bool // the header goes on past the bytes given
}

// headers reads the header fields after the start line: the framing, and
// for requests the allowlisted fields into *keep.
func (p *parser) headers(b []byte, keep *[]string) (f framing) {
	for {
		i := bytes.IndexByte(b[f.end:], '\n')
		if i < 0 {
			f.more = true
			return
		}
		line := b[f.end : f.end+i]
		f.end += i + 1
		if len(line) == 0 || line[len(line)-1] != '\r' { // CRLF only
			f.bad = true
			return
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			return
		}
		if line[0] == ' ' || line[0] == '\t' { // obsolete line folding: ignored
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			f.bad = true
			return
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		switch {
		case equalFold(name, "content-length"):
			v, ok := decimal(value)
			if !ok || (f.hasLen && v != f.length) {
				f.bad = true
				return
			}
			f.length, f.hasLen = v, true
		case equalFold(name, "transfer-encoding"):
			// chunked when it is the last coding (RFC 9112 6.1)
			f.chunked = len(value) >= 7 && equalFold(value[len(value)-7:], "chunked")
		case equalFold(name, "upgrade"):
			f.upgrade = true
		}
		if keep != nil {
			for _, a := range p.allow {
				if equalFold(name, a) {
					v := Redacted
					if p.opts.HeaderValues {
						v = string(value)
					}
					*keep = append(*keep, canonicalKey(name)+": "+v)
					break
				}
			}
		}
	}
}

// request reads the request header at the start of msg and returns its
// length; false: msg holds only its beginning (nothing was done).
func (p *parser) request(d *dir, msg []byte) (int, bool) {
	if bytes.IndexByte(msg, '\n') < 0 {
		return 0, false
	}
	req, rest, ok := requestLine(msg)
	if !ok {
		p.malformed(d, false)
		return 0, true
	}
	var keep *[]string
	if len(p.allow) > 0 {
		keep = &req.headers
	}
	f := p.headers(rest, keep)
	if f.more {
		return 0, false
	}
	if f.bad {
		p.malformed(d, false)
		return 0, true
	}
	n := len(msg) - len(rest) + f.end
	p.bad = 0
	d.guess = false
	req.timeNs = d.startNs
	req.upgrade = f.upgrade || req.connect
	p.push(req)
	if req.upgrade {
		d.hold = true
	}
	switch {
	case f.chunked:
		d.st = stChunkLine
	case f.hasLen && f.length > 0:
		d.st = stBody
		d.remain = f.length
	default:
		p.done(d)
	}
	return n, true
}

// response reads the response header at the start of msg, as request.
func (p *parser) response(d *dir, msg []byte) (int, bool) {
	if bytes.IndexByte(msg, '\n') < 0 {
		return 0, false
	}
	status, rest, ok := statusLine(msg)
	if !ok {
		p.malformed(d, true)
		return 0, true
	}
	f := p.headers(rest, nil)
	if f.more {
		return 0, false
	}
	if f.bad {
		p.malformed(d, true)
		return 0, true
	}
	n := len(msg) - len(rest) + f.end
	p.bad = 0
	d.guess = false
	if status >= 100 && status < 200 && status != 101 { // interim (100 Continue): the final response follows
		d.st = stHeader
		return n, true
	}
	req, paired := p.pair(d)
	d.unsure = !paired || req.absorb
	if paired && !req.absorb {
		p.answered(&req, d.startNs, status)
	}
	if status == 101 || (req.connect && status >= 200 && status < 300) {
		p.stopped = true // the connection is no longer HTTP/1
		return n, true
	}
	if req.upgrade {
		p.release()
	}
	switch {
	case req.head || status < 200 || status == 204 || status == 304:
		p.done(d)
	case f.chunked:
		d.st = stChunkLine
	case f.hasLen:
		if f.length == 0 {
			p.done(d)
		} else {
			d.st = stBody
			d.remain = f.length
		}
	default:
		d.st = stClose
	}
	return n, true
}

// header reads the header of a message at the start of msg, as request.
func (p *parser) header(d *dir, server bool, msg []byte) (int, bool) {
	if server {
		return p.response(d, msg)
	}
	return p.request(d, msg)
}

// partial handles a header that was truncated: if its start line was
// captured, a request is still queued (without headers) and a response
// still answers its request; if not, a request leaves a place holder that
// absorbs its response, and a response answers its request with status 0.
func (p *parser) partial(server bool, msg []byte) {
	d := &p.dirs[0]
	if server {
		d = &p.dirs[1]
	}
	nl := bytes.IndexByte(msg, '\n')
	if !server {
		req := request{absorb: true}
		if nl >= 0 {
			r, _, ok := requestLine(msg[:nl+1])
			if !ok {
				return // not a request
			}
			req = r
		} else if !methodStart(msg) {
			return
		}
		req.timeNs = d.startNs
		p.push(req)
		return
	}
	var status uint32
	if nl >= 0 {
		s, _, ok := statusLine(msg[:nl+1])
		if !ok {
			return // not a response
		}
		status = s
	} else if !bytes.HasPrefix(msg, httpSlash) && !bytes.HasPrefix(httpSlash, msg) {
		return
	}
	if status >= 100 && status < 200 {
		return
	}
	if req, ok := p.pair(d); ok && !req.absorb {
		p.answered(&req, d.startNs, status)
	}
}

// methodStart says whether b (without a line end) can begin a request
// line: a token, then a space or nothing.
func methodStart(b []byte) bool {
	for i, c := range b {
		if c == ' ' {
			return i > 0
		}
		if !tchar[c] || i >= 20 {
			return false
		}
	}
	return len(b) > 0
}

// release ends a client's hold after a response that did not upgrade.
func (p *parser) release() {
	p.dirs[0].hold = false
}

// push queues a request, dropping the oldest over MaxPending.
func (p *parser) push(req request) {
	if p.n == p.opts.MaxPending {
		p.stats.Add(l7.ReasonStateCap)
		old := p.pop()
		p.owed++
		p.unanswered(&old)
	}
	if p.n == len(p.ring) {
		grown := make([]request, min(max(4, 2*len(p.ring)), p.opts.MaxPending))
		for i := 0; i < p.n; i++ {
			grown[i] = p.ring[(p.first+i)%len(p.ring)]
		}
		p.ring, p.first = grown, 0
	}
	p.ring[(p.first+p.n)%len(p.ring)] = req
	p.n++
}

func (p *parser) pop() request {
	r := p.ring[p.first]
	p.ring[p.first] = request{}
	p.first = (p.first + 1) % len(p.ring)
	p.n--
	return r
}

// pair takes the request a response answers.
func (p *parser) pair(d *dir) (request, bool) {
	if d.flush {
		// Responses were missed (a gap, a truncated header): the
		// requests but the newest are taken as unanswered, the one a
		// client that does not pipeline waits for.
		d.flush = false
		p.owed = 0
		for p.n > 1 {
			old := p.pop()
			p.unanswered(&old)
		}
	}
	if p.owed > 0 {
		p.owed--
		return request{absorb: true}, true
	}
	if p.n == 0 || p.ring[p.first].timeNs > d.startNs {
		p.stats.Add(l7.ReasonUnpaired)
		return request{}, false
	}
	return p.pop(), true
}

// answered emits the exchange of req and its response.
func (p *parser) answered(req *request, respNs int64, status uint32) {
	if p.out == nil {
		return
	}
	p.ex = l7.Exchange{
		RequestNs:  req.timeNs,
		ResponseNs: respNs,
		L7: schemas.L7{
			Type:         flowpb.L7FlowType_RESPONSE,
			Protocol:     schemas.L7HTTP,
			HTTPMethod:   req.method,
			HTTPURL:      req.url,
			HTTPStatus:   status,
			HTTPProtocol: req.proto,
			HTTPHeaders:  req.headers,
		},
	}
	p.out(&p.ex)
}

// unanswered emits req as a request without a response (a place holder:
// nothing).
func (p *parser) unanswered(req *request) {
	if req.absorb || p.out == nil {
		return
	}
	p.ex = l7.Exchange{
		RequestNs: req.timeNs,
		L7: schemas.L7{
			Type:         flowpb.L7FlowType_REQUEST,
			Protocol:     schemas.L7HTTP,
			HTTPMethod:   req.method,
			HTTPURL:      req.url,
			HTTPProtocol: req.proto,
			HTTPHeaders:  req.headers,
		},
	}
	p.out(&p.ex)
}

// Close implements l7.Parser: the requests still waiting are emitted
// unanswered, and the parser is reset.
func (p *parser) Close(emit func(*l7.Exchange)) {
	p.out = emit
	for p.n > 0 {
		r := p.pop()
		p.unanswered(&r)
	}
	p.out = nil
	p.owed, p.bad, p.stopped = 0, 0, false
	p.dirs = [2]dir{{buf: p.dirs[0].buf[:0]}, {buf: p.dirs[1].buf[:0]}}
}

// methods are the common methods' names, kept without allocating.
var methods = [...]string{"GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "PURGE"}

// requestLine parses "METHOD SP request-target SP HTTP/1.x CRLF" at the
// start of msg and returns the request and the header fields after it.
func requestLine(msg []byte) (req request, rest []byte, ok bool) {
	nl := bytes.IndexByte(msg, '\n')
	if nl < 0 {
		return req, nil, false
	}
	line, rest := msg[:nl], msg[nl+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return req, nil, false
	}
	method := line[:sp]
	for _, b := range method {
		if !tchar[b] {
			return req, nil, false
		}
	}
	line = line[sp+1:]
	sp = bytes.LastIndexByte(line, ' ')
	if sp <= 0 {
		return req, nil, false
	}
	uri, version := line[:sp], line[sp+1:]
	proto, ok := protoName(version)
	if !ok {
		return req, nil, false
	}
	for _, b := range uri {
		if !target[b] {
			return req, nil, false
		}
	}
	req.proto = proto
	req.method = ""
	for _, m := range methods {
		if string(method) == m {
			req.method = m
			break
		}
	}
	if req.method == "" {
		req.method = string(method)
	}
	req.url = string(uri)
	req.head = req.method == "HEAD"
	req.connect = req.method == "CONNECT"
	return req, rest, true
}

// statusLine parses "HTTP/1.x SP 3DIGIT [SP reason] CRLF".
func statusLine(msg []byte) (status uint32, rest []byte, ok bool) {
	nl := bytes.IndexByte(msg, '\n')
	if nl < 0 {
		return 0, nil, false
	}
	line, rest := msg[:nl], msg[nl+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) < 12 || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, nil, false
	}
	if _, ok := protoName(line[:8]); !ok {
		return 0, nil, false
	}
	for _, b := range line[9:12] {
		if b < '0' || b > '9' {
			return 0, nil, false
		}
		status = status*10 + uint32(b-'0')
	}
	if status < 100 {
		return 0, nil, false
	}
	return status, rest, true
}

// protoName returns "HTTP/1.1" or "HTTP/1.0" without allocating.
func protoName(v []byte) (string, bool) {
	switch string(v) {
	case "HTTP/1.1":
		return "HTTP/1.1", true
	case "HTTP/1.0":
		return "HTTP/1.0", true
	}
	return "", false
}

// looksLikeStart says whether head starts a message: "HTTP/1." from a
// server, one of the known methods and a space from a client (a chunk
// that starts inside a request line, "T /x HTTP/1.1", must not pass). A
// chunk captured whole that is too short to tell (a segment of "HEA")
// passes if it begins one.
func looksLikeStart(head []byte, server, whole bool) bool {
	if server {
		return bytes.HasPrefix(head, httpSlash) || (whole && len(head) > 1 && bytes.HasPrefix(httpSlash, head))
	}
	sp := bytes.IndexByte(head[:min(len(head), 16)], ' ')
	for _, m := range methods {
		if sp > 0 && string(head[:sp]) == m || sp < 0 && whole && len(head) > 1 && len(head) < len(m) && m[:len(head)] == string(head) {
			return true
		}
	}
	return false
}

// statusStart says whether head starts with "HTTP/1." (or is the whole
// chunk and begins it).
func statusStart(head []byte, whole bool) bool {
	return looksLikeStart(head, true, whole)
}

// chunkSize parses "HEX[;ext]CRLF".
func chunkSize(line []byte) (uint64, bool) {
	var n uint64
	digits := 0
	for _, b := range line {
		var v byte
		switch {
		case b >= '0' && b <= '9':
			v = b - '0'
		case b >= 'a' && b <= 'f':
			v = b - 'a' + 10
		case b >= 'A' && b <= 'F':
			v = b - 'A' + 10
		default:
			return n, digits > 0 && (b == ';' || b == '\r' || b == ' ' || b == '\t')
		}
		if digits == 15 {
			return 0, false
		}
		n = n<<4 | uint64(v)
		digits++
	}
	return n, false
}

// decimal parses a Content-Length.
func decimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b to the lower-case ASCII lower.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// canonicalKey is Go's canonical form of a header name (Content-Type).
func canonicalKey(name []byte) string {
	b := []byte(string(name))
	upper := true
	for i, c := range b {
		switch {
		case upper && 'a' <= c && c <= 'z':
			b[i] = c - ('a' - 'A')
		case !upper && 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
	return string(b)
}

// tchar marks the bytes of a token (RFC 9110 5.6.2); target those of a
// request-target (visible ASCII and beyond).
var tchar, target [256]bool

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		tchar[c] = 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
		target[c] = b > ' ' && b != 0x7f
	}
}
