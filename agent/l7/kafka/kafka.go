package kafka

import (
	"encoding/binary"
	"strconv"
	"strings"
	"sync"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

// Defaults of Options.
const (
	DefaultMaxHeader  = 1024
	DefaultMaxPending = 256
	DefaultMaxFrame   = 100 << 20
)

// Options bound one connection's state.
type Options struct {
	// MaxHeader is how many bytes of a frame's start (length prefix
	// included) the parser keeps to decode its header and, when the whole
	// frame fits, its body. Default DefaultMaxHeader; at least 64.
	MaxHeader int
	// MaxPending is how many requests may wait for their responses; a
	// request over the cap is emitted unanswered at once and counted
	// (ReasonStateCap). Default DefaultMaxPending.
	MaxPending int
	// MaxFrame is the largest frame length believed; a larger one is
	// counted malformed and the connection is given up. Default
	// DefaultMaxFrame (100 MiB).
	MaxFrame int
}

// apiKeyNames are Cilium's names of the Kafka API keys (its Kafka policy
// and access log's APIKeyMap, which Hubble's Kafka.api_key carries): the
// keys 0 to 33. Keys past them are named by their number, as Cilium does.
var apiKeyNames = [...]string{
	"produce", "fetch", "offsets", "metadata", "leaderandisr", "stopreplica",
	"updatemetadata", "controlledshutdown", "offsetcommit", "offsetfetch",
	"findcoordinator", "joingroup", "heartbeat", "leavegroup", "syncgroup",
	"describegroups", "listgroups", "saslhandshake", "apiversions",
	"createtopics", "deletetopics", "deleterecords", "initproducerid",
	"offsetforleaderepoch", "addpartitionstotxn", "addoffsetstotxn", "endtxn",
	"writetxnmarkers", "txnoffsetcommit", "describeacls", "createacls",
	"deleteacls", "describeconfigs", "alterconfigs",
}

// APIKeyName is the name of Kafka API key k in Hubble records.
func APIKeyName(k int16) string {
	if k >= 0 && int(k) < len(apiKeyNames) {
		return apiKeyNames[k]
	}
	return strconv.Itoa(int(k))
}

// request is one request waiting for its response.
type request struct {
	timeNs   int64
	key, ver int16
	corr     int32
	clientID string
	topics   []string
}

// stream is one direction's framing state.
type stream struct {
	next    uint64 // where the next chunk must start
	started bool   // a chunk was seen
	inFrame bool
	start   uint64 // the current frame's first byte
	end     uint64 // its end, once its length is known
	known   bool   // its length is known
	parsed  bool   // its start was decoded
	cut     bool   // a head ended inside it: buf grows no more
	timeNs  int64  // its first byte's time
	buf     []byte // its first bytes, at most MaxHeader
}

type parser struct {
	stats   *l7.Stats
	opts    Options
	dirs    [2]stream
	pending []request
	lost    bool
	ex      l7.Exchange
	// lastClient caches the last client ID and names the last topic
	// names, so that a connection's requests share their strings.
	lastClient string
	names      []string
	// spare are topic slices of requests emitted, to reuse.
	spare [][]string
}

// maxSpare is how many topic slices a parser keeps to reuse.
const maxSpare = 8

func (p *parser) topicSlice() []string {
	if n := len(p.spare); n > 0 {
		t := p.spare[n-1]
		p.spare = p.spare[:n-1]
		return t
	}
	return nil
}

// done recycles the topic slice of a request emitted.
func (p *parser) done(r *request) {
	if cap(r.topics) > 0 && len(p.spare) < maxSpare {
		p.spare = append(p.spare, r.topics[:0])
	}
	r.topics = nil
}

// maxNames is how many topic names a parser keeps to share.
const maxNames = 16

// The kmsg messages decoded, per api key, reused across parsers (their
// slices are reused by ReadFrom).
var requests, responses = msgPool[kmsg.Request]{make: kmsg.RequestForKey}, msgPool[kmsg.Response]{make: kmsg.ResponseForKey}

// msgPool keeps kmsg requests or responses of api keys 0 to 3 (produce,
// fetch, offsets, metadata) for reuse.
type msgPool[M interface {
	Key() int16
	SetVersion(int16)
}] struct {
	pools [4]sync.Pool
	make  func(int16) M
}

// get returns a message of key at version ver, or the zero M (nil) for a
// key kmsg does not know.
func (mp *msgPool[M]) get(key, ver int16) M {
	if key >= 0 && int(key) < len(mp.pools) {
		if m, ok := mp.pools[key].Get().(M); ok {
			m.SetVersion(ver)
			return m
		}
	}
	m := mp.make(key)
	if any(m) != nil {
		m.SetVersion(ver)
	}
	return m
}

// put gives a message back for reuse.
func (mp *msgPool[M]) put(m M) {
	if k := m.Key(); k >= 0 && int(k) < len(mp.pools) {
		mp.pools[k].Put(m)
	}
}

// unsafeRead decodes b into m with strings pointing into b (every kmsg
// message has UnsafeReadFrom; ReadFrom is the fallback).
func unsafeRead(m interface{ ReadFrom([]byte) error }, b []byte) error {
	if u, ok := m.(interface{ UnsafeReadFrom([]byte) error }); ok {
		return u.UnsafeReadFrom(b)
	}
	return m.ReadFrom(b)
}

// name gives a copy of s (which may point into the bytes kept), shared
// with the connection's earlier requests naming the same topic.
func (p *parser) name(s string) string {
	for _, n := range p.names {
		if n == s {
			return n
		}
	}
	n := strings.Clone(s)
	if len(p.names) < maxNames {
		p.names = append(p.names, n)
	}
	return n
}

// nameBytes is name for bytes.
func (p *parser) nameBytes(b []byte) string {
	for _, n := range p.names {
		if n == string(b) {
			return n
		}
	}
	return p.name(string(b))
}

// New returns a parser of one Kafka connection counting into stats.
func New(stats *l7.Stats, opts Options) l7.Parser {
	if opts.MaxHeader <= 0 {
		opts.MaxHeader = DefaultMaxHeader
	}
	opts.MaxHeader = max(opts.MaxHeader, 64)
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = DefaultMaxFrame
	}
	if stats == nil {
		stats = new(l7.Stats)
	}
	p := &parser{stats: stats, opts: opts}
	for i := range p.dirs {
		p.dirs[i].buf = make([]byte, 0, opts.MaxHeader)
	}
	return p
}

func (p *parser) giveUp() {
	if !p.lost {
		p.lost = true
		p.stats.Add(l7.ReasonLost)
	}
}

// Feed implements l7.Parser.
func (p *parser) Feed(c *l7.Chunk, emit func(*l7.Exchange)) {
	if p.lost || c == nil || c.Dir > l7.FromServer || c.Len == 0 {
		return
	}
	s := &p.dirs[c.Dir]
	head := c.Head
	if len(head) > int(c.Len) {
		head = head[:c.Len]
	}
	if s.started && c.Offset != s.next {
		p.stats.Add(l7.ReasonGap)
		// A gap is harmless only inside the body of a frame whose start
		// is already decoded: the bytes missed are skipped anyway.
		if c.Offset < s.next || !s.inFrame || !s.parsed || c.Offset > s.end {
			p.giveUp()
			return
		}
		s.cut = true
	}
	s.started = true
	s.next = c.Offset + uint64(c.Len)
	pos, end := c.Offset, c.Offset+uint64(c.Len)
	headEnd := c.Offset + uint64(len(head))
	for pos < end {
		if !s.inFrame {
			s.inFrame, s.start, s.known, s.parsed, s.cut = true, pos, false, false, false
			s.timeNs, s.buf = c.TimeNs, s.buf[:0]
		}
		if !s.parsed {
			// Gather the frame's first bytes while the heads are whole.
			if pos >= headEnd || pos != s.start+uint64(len(s.buf)) {
				s.cut = true
			}
			if !s.cut {
				want := 4
				if s.known {
					want = int(min(s.end-s.start, uint64(cap(s.buf))))
				}
				n := min(want-len(s.buf), int(headEnd-pos))
				if n > 0 {
					s.buf = append(s.buf, head[pos-c.Offset:pos-c.Offset+uint64(n)]...)
					pos += uint64(n)
				}
			}
			if !s.known {
				if len(s.buf) < 4 {
					if s.cut {
						// The length prefix is not in the heads: the
						// frames cannot be followed.
						p.stats.Add(l7.ReasonTruncated)
						p.giveUp()
						return
					}
					continue // more of it in this chunk or the next
				}
				n := int32(binary.BigEndian.Uint32(s.buf))
				if n < 0 || int64(n) > int64(p.opts.MaxFrame) {
					p.stats.Add(l7.ReasonMalformed)
					p.giveUp()
					return
				}
				s.known, s.end = true, s.start+4+uint64(n)
				continue
			}
			full := len(s.buf) == int(min(s.end-s.start, uint64(cap(s.buf))))
			if !full && !s.cut {
				if pos < end {
					continue
				}
				return // the frame's start goes on in the next chunk
			}
			s.parsed = true
			complete := uint64(len(s.buf)) == s.end-s.start
			if c.Dir == l7.FromClient {
				p.onRequest(s.buf[4:], complete, s.timeNs, emit)
			} else {
				p.onResponse(s.buf[4:], complete, s.timeNs, emit)
			}
		}
		// Skip the rest of the frame by offset.
		pos = min(s.end, end)
		if pos == s.end {
			s.inFrame = false
		}
	}
}

// Close implements l7.Parser.
func (p *parser) Close(emit func(*l7.Exchange)) {
	for i := range p.pending {
		p.emit(&p.pending[i], 0, 0, emit)
		p.done(&p.pending[i])
	}
	p.pending = p.pending[:0]
	p.lost = true
}

// emit gives one exchange per topic of r (one without topic if it has none),
// as Cilium's Kafka access log records one entry per topic of a request.
func (p *parser) emit(r *request, respNs int64, errCode int16, emit func(*l7.Exchange)) {
	e := &p.ex
	*e = l7.Exchange{RequestNs: r.timeNs, ResponseNs: respNs}
	e.L7 = schemas.L7{
		Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7Kafka,
		KafkaAPIKey: APIKeyName(r.key), KafkaAPIVersion: int32(r.ver),
		KafkaCorrelationID: r.corr, KafkaClientID: r.clientID,
	}
	if respNs != 0 {
		e.L7.Type = flowpb.L7FlowType_RESPONSE
		e.L7.KafkaErrorCode = int32(errCode)
	}
	if len(r.topics) == 0 {
		emit(e)
		return
	}
	for _, t := range r.topics {
		e.L7.KafkaTopic = t
		emit(e)
	}
}

// reader reads Kafka's primitive types from a frame's first bytes; ok turns
// false at the first one that is not all there.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) take(n int) []byte {
	if !r.ok || n < 0 || n > len(r.b) {
		r.ok = false
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) int16() int16 {
	if v := r.take(2); v != nil {
		return int16(binary.BigEndian.Uint16(v))
	}
	return 0
}

func (r *reader) int32() int32 {
	if v := r.take(4); v != nil {
		return int32(binary.BigEndian.Uint32(v))
	}
	return 0
}

func (r *reader) uvarint() uint64 {
	if !r.ok {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.ok = false
		return 0
	}
	r.b = r.b[n:]
	return v
}

// length reads a string's, bytes' or array's length: int16 (strings) or
// int32 (bytes, arrays) before flexible versions, an unsigned varint of
// length+1 in them; -1 is null.
func (r *reader) length(flexible, wide bool) int {
	switch {
	case flexible:
		v := r.uvarint()
		if v > 1<<31 {
			r.ok = false
			return 0
		}
		return int(v) - 1
	case wide:
		return int(r.int32())
	default:
		return int(r.int16())
	}
}

// tags skips a tagged-fields section.
func (r *reader) tags() {
	n := r.uvarint()
	for i := uint64(0); i < n && r.ok; i++ {
		r.uvarint()
		r.take(int(min(r.uvarint(), 1<<31)))
	}
}

// short counts a header cut short: by the head (truncated) or by the
// frame's own end (malformed).
func (p *parser) short(complete bool) {
	if complete {
		p.stats.Add(l7.ReasonMalformed)
	} else {
		p.stats.Add(l7.ReasonTruncated)
	}
}

func (p *parser) clientID(b []byte) string {
	if string(b) != p.lastClient {
		p.lastClient = string(b)
	}
	return p.lastClient
}

// onRequest decodes a request frame's start (b: after the length prefix;
// complete: b is the whole frame).
func (p *parser) onRequest(b []byte, complete bool, timeNs int64, emit func(*l7.Exchange)) {
	r := reader{b: b, ok: true}
	key, ver, corr := r.int16(), r.int16(), r.int32()
	if !r.ok {
		p.short(complete) // no correlation ID: cannot pair
		return
	}
	req := request{timeNs: timeNs, key: key, ver: ver, corr: corr}
	msg := requests.get(key, ver)
	if msg != nil {
		defer requests.put(msg)
	}
	if key != 7 || ver != 0 { // ControlledShutdown v0 has header v0: no client ID
		if n := r.length(false, false); n > 0 {
			req.clientID = p.clientID(r.take(n))
		} else if n < -1 {
			r.ok = false
		}
	}
	if r.ok && msg != nil && msg.IsFlexible() {
		r.tags()
	}
	acks := int16(-1)
	switch {
	case !r.ok:
		p.short(complete) // the header ends past the head
	case msg == nil || ver < 0 || ver > msg.MaxVersion():
		// A key or version this parser does not know: header only.
	case complete:
		// Unsafe: the strings read point into the bytes kept; the ones
		// kept are copied (name).
		if err := unsafeRead(msg, r.b); err != nil {
			p.stats.Add(l7.ReasonMalformed)
			break
		}
		req.topics, acks = p.topicsOf(msg)
	case key == 0 && ver <= 12:
		var all bool
		req.topics, acks, all = p.produceTopics(r, ver)
		if !all {
			p.stats.Add(l7.ReasonTruncated)
		}
	case key == 1 && ver <= 12, key == 3:
		p.stats.Add(l7.ReasonTruncated) // topics past the head
	}
	if key == 0 && acks == 0 {
		p.emit(&req, 0, 0, emit) // acks 0: the broker does not answer
		p.done(&req)
		return
	}
	if len(p.pending) >= p.opts.MaxPending {
		p.stats.Add(l7.ReasonStateCap)
		p.emit(&req, 0, 0, emit)
		p.done(&req)
		return
	}
	p.pending = append(p.pending, req)
}

// topicsOf gives the topic names of a decoded Produce, Fetch or Metadata
// request, and a Produce's acks (-1 otherwise).
func (p *parser) topicsOf(msg kmsg.Request) (topics []string, acks int16) {
	acks, topics = -1, p.topicSlice()
	switch m := msg.(type) {
	case *kmsg.ProduceRequest:
		acks = m.Acks
		for i := range m.Topics {
			if m.Topics[i].Topic != "" {
				topics = append(topics, p.name(m.Topics[i].Topic))
			}
		}
	case *kmsg.FetchRequest:
		for i := range m.Topics {
			if m.Topics[i].Topic != "" {
				topics = append(topics, p.name(m.Topics[i].Topic))
			}
		}
	case *kmsg.MetadataRequest:
		for i := range m.Topics {
			if t := m.Topics[i].Topic; t != nil && *t != "" {
				topics = append(topics, p.name(*t))
			}
		}
	}
	return topics, acks
}

// produceTopics walks a Produce request (versions 0 to 12) that is longer
// than the bytes kept: its topic names up to the first one cut off (all
// false then), and its acks (-1 if cut before them). Record batches are
// skipped by their lengths.
func (p *parser) produceTopics(r reader, ver int16) (topics []string, acks int16, all bool) {
	flex := ver >= 9
	if ver >= 3 {
		r.take(max(r.length(flex, false), 0))
	}
	acks = r.int16()
	r.int32()
	n := r.length(flex, true)
	if !r.ok {
		return nil, -1, false
	}
	topics = p.topicSlice()
	for i := 0; i < n; i++ {
		name := r.take(r.length(flex, false))
		if !r.ok {
			return topics, acks, false
		}
		if len(name) > 0 {
			topics = append(topics, p.nameBytes(name))
		}
		parts := r.length(flex, true)
		for j := 0; j < parts && r.ok; j++ {
			r.int32()
			r.take(max(r.length(flex, true), 0))
			if flex {
				r.tags()
			}
		}
		if flex {
			r.tags()
		}
		if !r.ok && i+1 < n {
			return topics, acks, false
		}
	}
	return topics, acks, true
}

// onResponse pairs a response frame with its request.
func (p *parser) onResponse(b []byte, complete bool, timeNs int64, emit func(*l7.Exchange)) {
	r := reader{b: b, ok: true}
	corr := r.int32()
	if !r.ok {
		p.short(complete)
		return
	}
	i := 0
	for i < len(p.pending) && p.pending[i].corr != corr {
		i++
	}
	if i == len(p.pending) {
		p.stats.Add(l7.ReasonUnpaired)
		return
	}
	// Responses come in request order: the requests before this one
	// will not be answered.
	for j := 0; j < i; j++ {
		p.emit(&p.pending[j], 0, 0, emit)
		p.done(&p.pending[j])
	}
	req := p.pending[i]
	var code int16
	if complete {
		code = p.errorCode(&req, r)
	}
	p.emit(&req, timeNs, code, emit)
	p.done(&req)
	n := copy(p.pending, p.pending[i+1:])
	clear(p.pending[n:])
	p.pending = p.pending[:n]
}

// errorCode decodes a whole response: Produce and Fetch give their first
// non-zero partition error code (a Fetch its top-level one first), Metadata
// its first non-zero topic error code, the responses with one top-level
// error code that one; 0 otherwise.
func (p *parser) errorCode(req *request, r reader) int16 {
	msg := responses.get(req.key, req.ver)
	if msg == nil || req.ver < 0 || req.ver > msg.MaxVersion() {
		return 0
	}
	defer responses.put(msg)
	if msg.IsFlexible() && req.key != 18 { // ApiVersions answers with header v0
		r.tags()
	}
	if !r.ok || unsafeRead(msg, r.b) != nil {
		p.stats.Add(l7.ReasonMalformed)
		return 0
	}
	switch m := msg.(type) {
	case *kmsg.ProduceResponse:
		for _, t := range m.Topics {
			for _, pt := range t.Partitions {
				if pt.ErrorCode != 0 {
					return pt.ErrorCode
				}
			}
		}
	case *kmsg.FetchResponse:
		if m.ErrorCode != 0 {
			return m.ErrorCode
		}
		for _, t := range m.Topics {
			for _, pt := range t.Partitions {
				if pt.ErrorCode != 0 {
					return pt.ErrorCode
				}
			}
		}
	case *kmsg.MetadataResponse:
		for _, t := range m.Topics {
			if t.ErrorCode != 0 {
				return t.ErrorCode
			}
		}
	case *kmsg.ApiVersionsResponse:
		return m.ErrorCode
	case *kmsg.FindCoordinatorResponse:
		if m.ErrorCode != 0 {
			return m.ErrorCode
		}
		for _, c := range m.Coordinators {
			if c.ErrorCode != 0 {
				return c.ErrorCode
			}
		}
	case *kmsg.JoinGroupResponse:
		return m.ErrorCode
	case *kmsg.HeartbeatResponse:
		return m.ErrorCode
	case *kmsg.SyncGroupResponse:
		return m.ErrorCode
	case *kmsg.LeaveGroupResponse:
		return m.ErrorCode
	case *kmsg.InitProducerIDResponse:
		return m.ErrorCode
	case *kmsg.SASLHandshakeResponse:
		return m.ErrorCode
	}
	return 0
}
