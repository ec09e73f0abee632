package http2

import (
	"bytes"
	"encoding/binary"
	"strconv"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"golang.org/x/net/http2/hpack"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

// Options bound what one connection's parser keeps.
type Options struct {
	// MaxStreams caps the streams waiting for their end (default 256);
	// a request past it is counted (ReasonStateCap) and not followed.
	MaxStreams int
	// MaxTableSize caps each direction's HPACK dynamic table, whatever
	// SETTINGS_HEADER_TABLE_SIZE says (default 65536 bytes).
	MaxTableSize uint32
	// MaxStringLength caps one decoded header name or value (default
	// 16384 bytes); a longer one is malformed and loses the connection.
	MaxStringLength int
}

const (
	defaultMaxStreams   = 256
	defaultMaxTableSize = 65536
	defaultMaxString    = 16384
	initialTableSize    = 4096
	initialMaxFrame     = 16384
	maxFrameLimit       = 1<<24 - 1
	ctlCap              = 128 // bytes of a control frame's payload kept (SETTINGS: 21 parameters)
)

const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Frame types and flags (RFC 9113 section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	frameGoAway       = 0x7
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// direction is the framing state of one direction's byte stream.
type direction struct {
	off     uint64 // next stream offset expected
	preface int    // bytes of the client preface still to come

	hdr     [9]byte
	hdrN    int
	frameNs int64 // time of the current frame's first byte

	// the current frame
	ftype, flags uint8
	stream       uint32
	flen, fpos   uint32
	pre          uint32 // bytes before a header block fragment (pad length, priority, promised id)
	pad          uint32 // padding after it
	padKnown     bool

	// a header block in progress (HEADERS or PUSH_PROMISE and its CONTINUATIONs)
	inBlock    bool
	blkStream  uint32
	blkFlags   uint8
	blkNs      int64
	blkIgnored bool // PUSH_PROMISE: decoded for the table only

	maxFrame uint32 // the peer's SETTINGS_MAX_FRAME_SIZE: the cap on this direction's frames
	maxID    uint32 // the highest stream a client HEADERS opened

	ctl        []byte // a control frame's captured payload (up to ctlCap)
	ctlMissing bool

	dec *hpack.Decoder
}

// fields are what a header block says that an exchange keeps.
type fields struct {
	method, path, authority, scheme string
	status                          uint32
	grpcStatus, grpcMessage         string
	hasGRPCStatus, hasGRPCMessage   bool
}

type stream struct {
	id            uint32
	reqNs, respNs int64
	method, url   string
	status        uint32
	grpcStatus    string
	grpcMessage   string
	hasGRPC       bool
	hasGRPCMsg    bool
	reqEnd        bool
	respEnd       bool
	answered      bool
}

type parser struct {
	stats *l7.Stats
	opts  Options
	dir   [2]direction
	dead  bool

	cur     fields
	streams []stream
	scratch []byte

	ex   l7.Exchange
	hdrs [2]string
	// the last URL built and its parts: gRPC clients call the same few
	// methods, so the string is shared between exchanges.
	lastScheme, lastAuthority, lastPath, lastURL string
}

// New returns the parser of one HTTP/2 connection; stats counts what it
// could not follow (it may be shared by the connections of one goroutine).
func New(stats *l7.Stats, opts Options) l7.Parser {
	if stats == nil {
		stats = new(l7.Stats)
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = defaultMaxStreams
	}
	if opts.MaxTableSize == 0 {
		opts.MaxTableSize = defaultMaxTableSize
	}
	if opts.MaxStringLength <= 0 {
		opts.MaxStringLength = defaultMaxString
	}
	p := &parser{stats: stats, opts: opts}
	for i := range p.dir {
		d := &p.dir[i]
		d.maxFrame = initialMaxFrame
		d.dec = hpack.NewDecoder(initialTableSize, p.emitField)
		d.dec.SetMaxStringLength(opts.MaxStringLength)
	}
	p.dir[l7.FromClient].preface = len(preface)
	return p
}

func (p *parser) emitField(f hpack.HeaderField) {
	c := &p.cur
	switch f.Name {
	case ":method":
		c.method = f.Value
	case ":path":
		c.path = f.Value
	case ":authority":
		c.authority = f.Value
	case ":scheme":
		c.scheme = f.Value
	case ":status":
		if v, err := strconv.ParseUint(f.Value, 10, 16); err == nil {
			c.status = uint32(v)
		}
	case "grpc-status":
		c.grpcStatus, c.hasGRPCStatus = f.Value, true
	case "grpc-message":
		c.grpcMessage, c.hasGRPCMessage = f.Value, true
	}
}

// lose gives the connection up: nothing more of it is parsed; the streams
// it was following are emitted at Close.
func (p *parser) lose() {
	if !p.dead {
		p.dead = true
		p.stats.Add(l7.ReasonLost)
	}
}

func (p *parser) fail(r l7.Reason) {
	p.stats.Add(r)
	p.lose()
}

func (p *parser) Feed(c *l7.Chunk, emit func(*l7.Exchange)) {
	if p.dead || c == nil {
		return
	}
	dir := c.Dir & 1
	d := &p.dir[dir]
	start, end := c.Offset, c.Offset+uint64(c.Len)
	if end < start { // wrapped: not a stream position
		p.fail(l7.ReasonMalformed)
		return
	}
	if start > d.off {
		p.fail(l7.ReasonGap)
		return
	}
	if end <= d.off {
		return
	}
	head := c.Head
	if uint64(len(head)) > uint64(c.Len) {
		head = head[:c.Len]
	}
	var data []byte
	if skip := d.off - start; skip < uint64(len(head)) {
		data = head[skip:]
	}
	p.walk(d, l7.Direction(dir), c.TimeNs, data, end-d.off, emit)
}

// walk consumes n bytes of the direction's stream, of which data (a prefix)
// were captured.
func (p *parser) walk(d *direction, dir l7.Direction, t int64, data []byte, n uint64, emit func(*l7.Exchange)) {
	for n > 0 && !p.dead {
		var k uint64
		switch {
		case d.preface > 0:
			k = min(n, uint64(d.preface))
			m := min(uint64(len(data)), k)
			at := len(preface) - d.preface
			if !bytes.Equal(data[:m], []byte(preface[at:at+int(m)])) {
				p.fail(l7.ReasonMalformed)
				return
			}
			d.preface -= int(k)
		case d.hdrN < 9:
			if len(data) == 0 {
				// a frame header the heads did not capture: the framing
				// of the connection is lost
				p.fail(l7.ReasonTruncated)
				return
			}
			if d.hdrN == 0 {
				d.frameNs = t
			}
			k = uint64(copy(d.hdr[d.hdrN:], data))
			d.hdrN += int(k)
			if d.hdrN == 9 && !p.beginFrame(d) {
				return
			}
		default:
			k = min(n, uint64(d.flen-d.fpos))
			captured := data[:min(uint64(len(data)), k)]
			p.payload(d, captured, uint32(k)-uint32(len(captured)))
			d.fpos += uint32(k)
		}
		n -= k
		data = data[min(k, uint64(len(data))):]
		d.off += k
		if p.dead {
			return
		}
		if d.hdrN == 9 && d.fpos == d.flen {
			p.endFrame(d, dir, emit)
			d.hdrN, d.fpos, d.flen = 0, 0, 0
			d.ctl, d.ctlMissing = d.ctl[:0], false
		}
	}
}

func (p *parser) beginFrame(d *direction) bool {
	h := d.hdr[:]
	d.flen = uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
	d.ftype, d.flags = h[3], h[4]
	d.stream = binary.BigEndian.Uint32(h[5:9]) & 0x7fffffff
	d.fpos, d.pre, d.pad, d.padKnown = 0, 0, 0, true
	if d.flen > d.maxFrame {
		p.fail(l7.ReasonMalformed)
		return false
	}
	if d.inBlock && d.ftype != frameContinuation || !d.inBlock && d.ftype == frameContinuation ||
		d.ftype == frameContinuation && d.stream != d.blkStream {
		p.fail(l7.ReasonMalformed)
		return false
	}
	switch d.ftype {
	case frameHeaders, framePushPromise:
		if d.flags&flagPadded != 0 {
			d.pre, d.padKnown = 1, false
		}
		if d.ftype == frameHeaders && d.flags&flagPriority != 0 {
			d.pre += 5
		}
		if d.ftype == framePushPromise {
			d.pre += 4
		}
		if d.pre > d.flen {
			p.fail(l7.ReasonMalformed)
			return false
		}
		d.inBlock, d.blkStream, d.blkFlags, d.blkNs = true, d.stream, d.flags, d.frameNs
		d.blkIgnored = d.ftype == framePushPromise
		p.cur = fields{}
	}
	return true
}

// payload takes the next bytes of the current frame's payload: captured,
// then missing bytes the heads did not hold.
func (p *parser) payload(d *direction, captured []byte, missing uint32) {
	switch d.ftype {
	case frameHeaders, framePushPromise, frameContinuation:
		if !d.padKnown && d.fpos == 0 && len(captured) > 0 {
			d.pad, d.padKnown = uint32(captured[0]), true
			if d.pad > d.flen-d.pre {
				p.fail(l7.ReasonMalformed)
				return
			}
		}
		blockEnd := d.flen - d.pad
		lo, hi := max(d.fpos, d.pre), min(d.fpos+uint32(len(captured)), blockEnd)
		if lo < hi {
			p.scratch = append(p.scratch[:0], captured[lo-d.fpos:hi-d.fpos]...)
			if _, err := d.dec.Write(p.scratch); err != nil {
				p.fail(l7.ReasonMalformed)
				return
			}
		}
		if missing > 0 && d.fpos+uint32(len(captured)) < blockEnd {
			// part of a header block was not captured: the HPACK
			// state of this direction is lost, and with it the
			// connection's headers
			p.fail(l7.ReasonTruncated)
		}
	case frameSettings, frameRSTStream, frameGoAway:
		if room := ctlCap - len(d.ctl); room > 0 {
			d.ctl = append(d.ctl, captured[:min(room, len(captured))]...)
		}
		if missing > 0 {
			d.ctlMissing = true
		}
	}
}

func (p *parser) endFrame(d *direction, dir l7.Direction, emit func(*l7.Exchange)) {
	switch d.ftype {
	case frameData:
		if d.flags&flagEndStream != 0 && d.stream != 0 {
			p.end(dir, d.stream, emit)
		}
	case frameHeaders, framePushPromise, frameContinuation:
		if d.flags&flagEndHeaders == 0 {
			return
		}
		d.inBlock = false
		if err := d.dec.Close(); err != nil {
			p.fail(l7.ReasonMalformed)
			return
		}
		if !d.blkIgnored {
			p.headers(dir, d.blkStream, d.blkFlags, d.blkNs, emit)
		}
	case frameRSTStream:
		if i := p.find(d.stream); i >= 0 {
			p.finish(i, emit)
		}
	case frameSettings:
		if d.flags&flagAck != 0 {
			return
		}
		// this side's settings bound what the other side sends
		o := &p.dir[dir^1]
		if d.ctlMissing || len(d.ctl) < int(d.flen) {
			// settings not all captured: allow what the protocol allows
			o.maxFrame = maxFrameLimit
			o.dec.SetAllowedMaxDynamicTableSize(p.opts.MaxTableSize)
		}
		for b := d.ctl; len(b) >= 6; b = b[6:] {
			v := binary.BigEndian.Uint32(b[2:6])
			switch binary.BigEndian.Uint16(b) {
			case 0x1: // SETTINGS_HEADER_TABLE_SIZE
				o.dec.SetAllowedMaxDynamicTableSize(min(v, p.opts.MaxTableSize))
			case 0x5: // SETTINGS_MAX_FRAME_SIZE
				if v < initialMaxFrame || v > maxFrameLimit {
					p.fail(l7.ReasonMalformed)
					return
				}
				o.maxFrame = v
			}
		}
	case frameGoAway:
		if dir != l7.FromServer || len(d.ctl) < 4 {
			return
		}
		// streams above the last one the server processed will not be
		// answered
		last := binary.BigEndian.Uint32(d.ctl) & 0x7fffffff
		for i := 0; i < len(p.streams); {
			if p.streams[i].id > last {
				p.finish(i, emit)
				continue
			}
			i++
		}
	}
}

func (p *parser) find(id uint32) int {
	for i := range p.streams {
		if p.streams[i].id == id {
			return i
		}
	}
	return -1
}

// headers applies a decoded header block of stream id.
func (p *parser) headers(dir l7.Direction, id uint32, flags uint8, ns int64, emit func(*l7.Exchange)) {
	if id == 0 {
		p.stats.Add(l7.ReasonMalformed)
		return
	}
	c := &p.cur
	d := &p.dir[dir]
	if dir == l7.FromClient {
		if id <= d.maxID { // trailers of a request, or a stream already ended
			if flags&flagEndStream != 0 {
				p.end(dir, id, emit)
			}
			return
		}
		d.maxID = id
		if len(p.streams) >= p.opts.MaxStreams {
			p.stats.Add(l7.ReasonStateCap)
			return
		}
		p.streams = append(p.streams, stream{
			id: id, reqNs: ns, method: c.method, url: p.url(c),
			reqEnd: flags&flagEndStream != 0,
		})
		return
	}
	i := p.find(id)
	if i < 0 {
		p.stats.Add(l7.ReasonUnpaired)
		return
	}
	s := &p.streams[i]
	if !s.answered {
		s.answered, s.respNs = true, ns
	}
	if c.status != 0 {
		s.status = c.status
	}
	if c.hasGRPCStatus {
		s.grpcStatus, s.hasGRPC = c.grpcStatus, true
	}
	if c.hasGRPCMessage {
		s.grpcMessage, s.hasGRPCMsg = c.grpcMessage, true
	}
	if flags&flagEndStream != 0 {
		p.end(dir, id, emit)
	}
}

// url is the request's URL as Hubble shows Envoy's: scheme://authority/path,
// or the path alone without an authority.
func (p *parser) url(c *fields) string {
	if c.scheme == p.lastScheme && c.authority == p.lastAuthority && c.path == p.lastPath && p.lastURL != "" {
		return p.lastURL
	}
	u := c.path
	if c.authority != "" {
		scheme := c.scheme
		if scheme == "" {
			scheme = "http"
		}
		u = scheme + "://" + c.authority + c.path
	}
	p.lastScheme, p.lastAuthority, p.lastPath, p.lastURL = c.scheme, c.authority, c.path, u
	return u
}

// end marks the end of one side of a stream; a stream ended both ways is
// an exchange.
func (p *parser) end(dir l7.Direction, id uint32, emit func(*l7.Exchange)) {
	i := p.find(id)
	if i < 0 {
		return
	}
	s := &p.streams[i]
	if dir == l7.FromClient {
		s.reqEnd = true
	} else {
		s.respEnd = true
	}
	if s.reqEnd && s.respEnd {
		p.finish(i, emit)
	}
}

var grpcStatusHeaders [17]string

func init() {
	for i := range grpcStatusHeaders {
		grpcStatusHeaders[i] = "Grpc-Status: " + strconv.Itoa(i)
	}
}

func grpcStatusHeader(v string) string {
	if n, err := strconv.Atoi(v); err == nil && n >= 0 && n < len(grpcStatusHeaders) {
		return grpcStatusHeaders[n]
	}
	return "Grpc-Status: " + v
}

// finish emits stream i and forgets it.
func (p *parser) finish(i int, emit func(*l7.Exchange)) {
	s := &p.streams[i]
	ex := &p.ex
	*ex = l7.Exchange{RequestNs: s.reqNs}
	ex.L7.Protocol = schemas.L7HTTP
	ex.L7.Type = flowpb.L7FlowType_REQUEST
	ex.L7.HTTPMethod = s.method
	ex.L7.HTTPURL = s.url
	ex.L7.HTTPProtocol = "HTTP/2"
	if s.answered {
		ex.ResponseNs = s.respNs
		ex.L7.Type = flowpb.L7FlowType_RESPONSE
		ex.L7.HTTPStatus = s.status
		h := p.hdrs[:0]
		if s.hasGRPCMsg && s.grpcMessage != "" { // Hubble sorts headers by key
			h = append(h, "Grpc-Message: "+s.grpcMessage)
		}
		if s.hasGRPC {
			h = append(h, grpcStatusHeader(s.grpcStatus))
		}
		if len(h) > 0 {
			ex.L7.HTTPHeaders = h
		}
	}
	emit(ex)
	p.streams = append(p.streams[:i], p.streams[i+1:]...)
	p.streams[len(p.streams):cap(p.streams)][0] = stream{} // drop the strings
}

func (p *parser) Close(emit func(*l7.Exchange)) {
	for len(p.streams) > 0 {
		p.finish(0, emit)
	}
}
