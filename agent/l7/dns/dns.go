package dns

import (
	"math"
	"net/netip"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

// ObservationSource is the default DNSObservationSource of the exchanges:
// the kernel's capture, where Cilium's DNS proxy says "proxy".
const ObservationSource = "ebpf"

// Defaults of Options.
const (
	DefaultMaxPending = 64
	DefaultMaxMessage = 4096
)

// Options tune a parser; the zero value takes the defaults.
type Options struct {
	// MaxPending caps the queries waiting for their response on one
	// connection (DefaultMaxPending). Over it, the oldest is emitted
	// unanswered and ReasonStateCap counted.
	MaxPending int
	// MaxMessage caps the bytes of one TCP message copied while it spans
	// segments (DefaultMaxMessage); what is past it is parsed as cut. UDP
	// datagrams are parsed in place.
	MaxMessage int
	// ObservationSource is put in every exchange (ObservationSource).
	ObservationSource string
}

type pending struct {
	id, qtype, qclass uint16
	name              string
	timeNs            int64
}

// stream is one direction of a TCP connection.
type stream struct {
	next    uint64 // offset of the next byte expected
	lost    bool   // framing lost: the rest of the direction is ignored
	npfx    int    // bytes of the length prefix read
	pfx     uint16 // the length prefix read so far
	need    uint32 // bytes of the current message still to come (0: awaiting a prefix)
	mlen    uint32 // the current message's length
	buf     []byte // its captured bytes, contiguous from its start
	cut     bool   // some of its bytes (or a prefix of them past MaxMessage) were not captured
	startNs int64  // the time of its first byte (its prefix's)
}

type parser struct {
	tcp     bool
	stats   *l7.Stats
	opts    Options
	pending []pending
	dirs    [2]stream
	udpNext [2]uint64

	// reused per exchange (the Exchange is only valid during emit)
	ex      l7.Exchange
	rrtypes []string
	ips     []string
	cnames  []string
}

// New returns a parser of one connection's DNS messages: proto is 17 (UDP,
// a message per chunk) or 6 (TCP, length-prefixed messages over the
// stream); stats counts what it cannot follow.
func New(proto uint8, stats *l7.Stats, opts Options) l7.Parser {
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = DefaultMaxMessage
	}
	if opts.ObservationSource == "" {
		opts.ObservationSource = ObservationSource
	}
	if stats == nil {
		stats = new(l7.Stats)
	}
	return &parser{tcp: proto == 6, stats: stats, opts: opts}
}

func (p *parser) Feed(c *l7.Chunk, emit func(*l7.Exchange)) {
	if c == nil || c.Dir > l7.FromServer {
		return
	}
	head := c.Head
	if uint64(len(head)) > uint64(c.Len) {
		head = head[:c.Len]
	}
	if !p.tcp {
		if c.Offset > p.udpNext[c.Dir] {
			p.stats.Add(l7.ReasonGap)
		}
		p.udpNext[c.Dir] = c.Offset + uint64(c.Len)
		p.message(head, len(head) < int(c.Len), c.TimeNs, emit)
		return
	}
	p.feedTCP(&p.dirs[c.Dir], c, head, emit)
}

func (p *parser) feedTCP(s *stream, c *l7.Chunk, head []byte, emit func(*l7.Exchange)) {
	if s.lost {
		return
	}
	off, n := c.Offset, uint64(c.Len)
	if off < s.next { // overlap: the capture should not send it; skip what was seen
		d := s.next - off
		if d >= n {
			return
		}
		off, n = s.next, n-d
		if d >= uint64(len(head)) {
			head = nil
		} else {
			head = head[d:]
		}
	}
	if off > s.next {
		p.stats.Add(l7.ReasonGap)
		gap := off - s.next
		if s.need == 0 || gap > uint64(s.need) {
			// a length prefix was missed: the boundaries are gone
			p.stats.Add(l7.ReasonLost)
			s.lost = true
			return
		}
		s.need -= uint32(gap)
		s.cut = true
		if s.need == 0 { // the gap ended with the message
			p.message(s.buf, true, s.startNs, emit)
			s.buf = s.buf[:0]
		}
	}
	s.next = off + n
	var pos uint64
	for pos < n {
		if s.need == 0 {
			if pos >= uint64(len(head)) {
				p.stats.Add(l7.ReasonTruncated)
				p.stats.Add(l7.ReasonLost)
				s.lost = true
				return
			}
			if s.npfx == 0 {
				s.startNs = c.TimeNs
			}
			s.pfx = s.pfx<<8 | uint16(head[pos])
			s.npfx++
			pos++
			if s.npfx < 2 {
				continue
			}
			s.mlen, s.need, s.npfx, s.pfx = uint32(s.pfx), uint32(s.pfx), 0, 0
			s.buf, s.cut = s.buf[:0], false
			if s.mlen == 0 {
				p.stats.Add(l7.ReasonMalformed)
			}
			continue
		}
		take := min(uint64(s.need), n-pos)
		if !s.cut {
			capEnd := min(pos+take, uint64(len(head)))
			if s.need == s.mlen && take == uint64(s.need) && capEnd == pos+take {
				// the whole message is in this head: parse it in place
				s.need = 0
				pos += take
				p.message(head[pos-take:pos], false, s.startNs, emit)
				continue
			}
			if pos < capEnd {
				seg := head[pos:capEnd]
				if room := p.opts.MaxMessage - len(s.buf); len(seg) > room {
					seg, s.cut = seg[:room], true
				}
				s.buf = append(s.buf, seg...)
			}
			if capEnd < pos+take {
				s.cut = true
			}
		}
		s.need -= uint32(take)
		pos += take
		if s.need == 0 {
			p.message(s.buf, s.cut, s.startNs, emit)
			s.buf = s.buf[:0]
		}
	}
}

func (p *parser) Close(emit func(*l7.Exchange)) {
	for d := range p.dirs {
		s := &p.dirs[d]
		if !s.lost && s.need > 0 && len(s.buf) > 0 {
			p.message(s.buf, true, s.startNs, emit)
		}
		s.need, s.buf = 0, nil
	}
	for i := range p.pending {
		p.emitRequest(&p.pending[i], emit)
	}
	p.pending = p.pending[:0]
}

// bad counts a message that does not parse: cut when its bytes were not all
// captured, else malformed.
func (p *parser) bad(cut bool) {
	if cut {
		p.stats.Add(l7.ReasonTruncated)
	} else {
		p.stats.Add(l7.ReasonMalformed)
	}
}

// message parses one DNS message (msg: its captured bytes; cut: some of it
// is missing) seen at timeNs.
func (p *parser) message(msg []byte, cut bool, timeNs int64, emit func(*l7.Exchange)) {
	var dp dnsmessage.Parser
	h, err := dp.Start(msg)
	if err != nil {
		p.bad(cut)
		return
	}
	q, err := dp.Question()
	if err != nil {
		if err == dnsmessage.ErrSectionDone {
			p.stats.Add(l7.ReasonMalformed) // no question: nothing to pair or name
		} else {
			p.bad(cut)
		}
		return
	}
	name := strings.ToLower(q.Name.String())
	if !h.Response {
		if i := p.find(h.ID, q, name); i >= 0 {
			return // a retransmission: the first one's time stands
		}
		if len(p.pending) >= p.opts.MaxPending {
			p.stats.Add(l7.ReasonStateCap)
			p.emitRequest(&p.pending[0], emit)
			p.pending = append(p.pending[:0], p.pending[1:]...)
		}
		p.pending = append(p.pending, pending{id: h.ID, qtype: uint16(q.Type), qclass: uint16(q.Class), name: name, timeNs: timeNs})
		return
	}
	reqNs := timeNs
	if i := p.find(h.ID, q, name); i >= 0 {
		reqNs = p.pending[i].timeNs
		p.pending = append(p.pending[:i], p.pending[i+1:]...)
	} else {
		p.stats.Add(l7.ReasonUnpaired)
	}
	ttl := uint32(math.MaxUint32)
	p.rrtypes, p.ips, p.cnames = p.rrtypes[:0], p.ips[:0], p.cnames[:0]
	if err := dp.SkipAllQuestions(); err != nil {
		p.bad(cut)
	} else {
		for {
			ah, err := dp.AnswerHeader()
			if err == dnsmessage.ErrSectionDone {
				break
			}
			if err != nil {
				p.bad(cut)
				break
			}
			switch ah.Type {
			case dnsmessage.TypeA:
				var r dnsmessage.AResource
				if r, err = dp.AResource(); err == nil {
					p.ips = append(p.ips, netip.AddrFrom4(r.A).String())
					ttl = min(ttl, ah.TTL)
				}
			case dnsmessage.TypeAAAA:
				var r dnsmessage.AAAAResource
				if r, err = dp.AAAAResource(); err == nil {
					p.ips = append(p.ips, netip.AddrFrom16(r.AAAA).String())
					ttl = min(ttl, ah.TTL)
				}
			case dnsmessage.TypeCNAME:
				var r dnsmessage.CNAMEResource
				if r, err = dp.CNAMEResource(); err == nil {
					p.cnames = append(p.cnames, r.CNAME.String())
					ttl = min(ttl, ah.TTL)
				}
			default:
				err = dp.SkipAnswer()
			}
			if err != nil {
				p.bad(cut)
				break
			}
			p.rrtypes = append(p.rrtypes, typeName(ah.Type))
		}
	}
	p.ex = l7.Exchange{RequestNs: reqNs, ResponseNs: timeNs, L7: schemas.L7{
		Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7DNS,
		DNSQuery: name, DNSRCode: uint32(h.RCode), DNSQTypes: qtypes(q.Type),
		DNSRRTypes: p.rrtypes, DNSIPs: p.ips, DNSTTL: ttl, DNSCNAMEs: p.cnames,
		DNSObservationSource: p.opts.ObservationSource,
	}}
	emit(&p.ex)
}

func (p *parser) find(id uint16, q dnsmessage.Question, name string) int {
	for i := range p.pending {
		e := &p.pending[i]
		if e.id == id && e.qtype == uint16(q.Type) && e.qclass == uint16(q.Class) && e.name == name {
			return i
		}
	}
	return -1
}

func (p *parser) emitRequest(q *pending, emit func(*l7.Exchange)) {
	p.ex = l7.Exchange{RequestNs: q.timeNs, L7: schemas.L7{
		Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7DNS,
		DNSQuery: q.name, DNSQTypes: qtypes(dnsmessage.Type(q.qtype)),
		DNSObservationSource: p.opts.ObservationSource,
	}}
	emit(&p.ex)
}

// typeNames are gopacket's names of the DNS types, as Hubble's parser
// prints them ("Unknown" for a type it does not name).
var typeNames [256]string

// qtypeLists are one-element lists of the names, shared by the exchanges.
var qtypeLists [256][]string

var unknownList = []string{"Unknown"}

func init() {
	for t := range typeNames {
		typeNames[t] = layers.DNSType(t).String()
		qtypeLists[t] = []string{typeNames[t]}
	}
}

func typeName(t dnsmessage.Type) string {
	if t < 256 {
		return typeNames[t]
	}
	return layers.DNSType(t).String()
}

func qtypes(t dnsmessage.Type) []string {
	if t < 256 {
		return qtypeLists[t]
	}
	if n := layers.DNSType(t).String(); n != "Unknown" {
		return []string{n}
	}
	return unknownList
}
