package stream

import (
	"strconv"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/agent/l7/dns"
	"github.com/flowbus/flowbus/agent/l7/http1"
	"github.com/flowbus/flowbus/agent/l7/http2"
	"github.com/flowbus/flowbus/agent/l7/kafka"
)

// TCP flags of Segment.Flags that the tracker reads.
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
)

// Segment is what the kernel gives for one packet of a connection on a
// followed port: a TCP segment with payload, a SYN, FIN or RST (payload or
// not), or a UDP datagram.
type Segment struct {
	// Conn is the connection: Client the side that opened it, Server the
	// side that accepted it, Proto 6 (TCP) or 17 (UDP).
	Conn l7.Conn
	// Dir is the side that sent the packet.
	Dir l7.Direction
	// TimeNs is when the kernel saw it (CLOCK_MONOTONIC ns).
	TimeNs int64
	// Seq is the TCP sequence number of the first payload byte; for a
	// SYN, the initial sequence number. 0 for UDP.
	Seq uint32
	// Len is the payload's length (bytes after the L4 header).
	Len uint32
	// Flags are the packet's TCP flags (FlagFIN, FlagSYN, FlagRST read).
	Flags uint8
	// Head is the payload's first min(Len, Config.HeadBytes) bytes. The
	// tracker does not keep it after Feed returns.
	Head []byte
}

// Record is one exchange of a connection. It and what it points to are
// only valid during the emit call that gives it.
type Record struct {
	Conn     l7.Conn
	Protocol Protocol // the connection's protocol, never Auto
	Exchange *l7.Exchange
}

// Event is what happened to a connection, a counter of Stats.Conns.
type Event uint8

// Events.
const (
	EventOpened     Event = iota // first segment seen: state created
	EventClosed                  // FIN from both sides, RST, a SYN that reuses its ports, or Tracker.Close
	EventExpired                 // idle longer than Config.IdleTimeout at Expire
	EventEvicted                 // the least recently active at Config.MaxConns when a new one came
	EventDetected                // its protocol found from its first client bytes (auto ports; HTTP/2 on an http port)
	EventUndetected              // an auto port's connection whose protocol was not found: ignored
	NumEvents
)

var eventNames = [NumEvents]string{"opened", "closed", "expired", "evicted", "detected", "undetected"}

func (e Event) String() string {
	if e < NumEvents {
		return eventNames[e]
	}
	return "event(" + strconv.Itoa(int(e)) + ")"
}

// NumProtocols bounds the Protocol values (HTTP1 to Auto), for the arrays
// of Stats.
const NumProtocols = numProtocols

// Stats are the tracker's counters since New.
type Stats struct {
	// Segments counts every Segment fed.
	Segments uint64
	// Rejected counts segments not followed: of a port not in
	// Config.Ports, a transport not TCP or UDP, or a direction not
	// FromClient or FromServer.
	Rejected uint64
	// Retransmits counts TCP payloads wholly before their direction's
	// next expected byte: dropped, as already seen.
	Retransmits uint64
	// Trimmed counts TCP payloads partly before it: their first bytes cut
	// off before the parser.
	Trimmed uint64
	// Unparsed counts payloads no parser got: of undetected connections,
	// client payloads detection tried and did not recognise, and server
	// payloads before detection past the ones kept for the parser.
	Unparsed uint64
	// Live is the number of connections followed now.
	Live int
	// Conns counts connection events by protocol: for opened, closed,
	// expired and evicted the port's protocol (Auto for an auto port), so
	// that opened less the other three is Live; for detected the protocol
	// found; undetected under Auto.
	Conns [NumProtocols][NumEvents]uint64
	// Exchanges counts the records emitted, by protocol.
	Exchanges [NumProtocols]uint64
	// Parse is what each protocol's parsers could not follow (one
	// l7.Stats per protocol, shared by its connections). A connection
	// evicted with a parser adds ReasonStateCap to its protocol's.
	Parse [NumProtocols]l7.Stats
}

type phase uint8

const (
	deciding phase = iota // waiting for the client's first payload (http and auto ports)
	parsing
	ignored
)

// half is one direction's sequence state.
type half struct {
	base  uint32 // the sequence number of stream offset 0
	next  uint64 // the stream offset after the last byte passed on
	known bool   // base is set
	syn   bool   // from this direction's SYN, whose sequence number is isn
	isn   uint32
	fin   bool
}

// held is a server payload kept, head copied, until detection decides.
type held struct {
	timeNs int64
	off    uint64
	n      uint32
	head   []byte
}

const (
	// maxHeld server payloads are kept before the client's first: a
	// server may speak first (an HTTP/2 server's SETTINGS); past them the
	// connection is mid-stream or not a client-first protocol.
	maxHeld = 4
	// maxTries client payloads may fail detection before the connection
	// is ignored (when the first of them is not its stream's start).
	maxTries = 4
)

type conn struct {
	key    l7.Conn
	port   Protocol // the port's protocol
	proto  Protocol // what it is parsed as, once parsing
	phase  phase
	tries  uint8
	dirs   [2]half
	parser l7.Parser
	lastNs int64
	held   []held
	// the LRU list, most recently active first
	prev, next *conn
}

// Tracker follows the connections of the configured ports: it turns
// segments into the parsers' chunks and their exchanges into records. It
// is not safe for concurrent use: one goroutine feeds it (the ring
// buffer's reader) and calls Expire, Close and Stats.
type Tracker struct {
	cfg   Config
	conns map[l7.Conn]*conn
	lru   conn // sentinel: lru.next is the most recently active
	stats Stats

	// the emit of the call in progress and the connection it is for
	cur   *conn
	out   func(*Record)
	rec   Record
	onEx  func(*l7.Exchange)
	chunk l7.Chunk
}

// New returns a tracker of cfg's ports; cfg is validated (Config.Validate)
// and copied.
func New(cfg Config) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ports := make(Ports, len(cfg.Ports))
	for p, proto := range cfg.Ports {
		ports[p] = proto
	}
	cfg.Ports = ports
	t := &Tracker{cfg: cfg, conns: make(map[l7.Conn]*conn)}
	t.lru.prev, t.lru.next = &t.lru, &t.lru
	t.onEx = t.exchange
	return t, nil
}

// exchange turns a parser's exchange into a record of the current
// connection.
func (t *Tracker) exchange(e *l7.Exchange) {
	t.stats.Exchanges[t.cur.proto]++
	t.rec = Record{Conn: t.cur.key, Protocol: t.cur.proto, Exchange: e}
	t.out(&t.rec)
	t.rec = Record{}
}

// Feed follows one segment and calls emit for every exchange it completes
// (of its connection, or of one it evicts).
func (t *Tracker) Feed(s *Segment, emit func(*Record)) {
	t.stats.Segments++
	port := Port{s.Conn.Proto, s.Conn.Server.Port()}
	portProto, ok := t.cfg.Ports[port]
	if !ok || s.Dir > l7.FromServer {
		t.stats.Rejected++
		return
	}
	tcp := port.Proto == TCP
	syn := tcp && s.Flags&FlagSYN != 0
	t.out = emit
	defer func() { t.out, t.cur = nil, nil }()

	c := t.conns[s.Conn]
	if c != nil && syn && !c.synFits(s) {
		t.end(c, EventClosed) // its ports are reused by a new connection
		c = nil
	}
	if c == nil {
		if tcp && !syn && s.Len == 0 {
			return // a FIN or RST of a connection not followed: nothing to close
		}
		c = t.open(s.Conn, portProto, s.TimeNs)
	}
	t.touch(c, s.TimeNs)
	d := &c.dirs[s.Dir]
	if syn && !d.known {
		d.known, d.syn, d.isn, d.base, d.next = true, true, s.Seq, s.Seq+1, 0
	}
	if s.Len > 0 {
		t.payload(c, d, s, tcp)
	}
	if !tcp {
		return
	}
	if s.Flags&FlagRST != 0 {
		t.end(c, EventClosed)
		return
	}
	if s.Flags&FlagFIN != 0 {
		d.fin = true
		if c.dirs[0].fin && c.dirs[1].fin {
			t.end(c, EventClosed)
		}
	}
}

// synFits says whether a SYN belongs to the connection followed: its
// direction has seen neither a SYN nor a payload, or the same SYN.
func (c *conn) synFits(s *Segment) bool {
	d := &c.dirs[s.Dir]
	return !d.known || d.syn && d.isn == s.Seq
}

// payload turns a segment's payload into a chunk at its stream offset and
// passes it on.
func (t *Tracker) payload(c *conn, d *half, s *Segment, tcp bool) {
	n := s.Len
	head := s.Head
	if len(head) > t.cfg.HeadBytes {
		head = head[:t.cfg.HeadBytes]
	}
	if uint64(len(head)) > uint64(n) {
		head = head[:n]
	}
	var off uint64
	if tcp {
		if !d.known { // mid-stream: the first byte seen is offset 0
			d.known, d.base, d.next = true, s.Seq, 0
		}
		// The distance from the next expected byte, wrap-safe: within
		// 2 GiB either way.
		delta := int32(s.Seq - (d.base + uint32(d.next)))
		if delta < 0 {
			back := uint64(-int64(delta))
			if back >= uint64(n) {
				t.stats.Retransmits++
				return
			}
			t.stats.Trimmed++
			n -= uint32(back)
			head = head[min(back, uint64(len(head))):]
			off = d.next
		} else {
			off = d.next + uint64(delta)
		}
	} else {
		off = d.next
	}
	d.next = off + uint64(n)
	t.chunk = l7.Chunk{Dir: s.Dir, TimeNs: s.TimeNs, Offset: off, Len: n, Head: head}
	t.deliver(c, &t.chunk)
	t.chunk = l7.Chunk{}
}

// deliver passes a chunk to the connection's parser, or decides which
// parser it gets.
func (t *Tracker) deliver(c *conn, ch *l7.Chunk) {
	switch c.phase {
	case parsing:
		t.cur = c
		c.parser.Feed(ch, t.onEx)
		return
	case ignored:
		t.stats.Unparsed++
		return
	}
	if ch.Dir == l7.FromServer {
		switch {
		case len(c.held) < maxHeld:
			c.held = append(c.held, held{ch.TimeNs, ch.Offset, ch.Len, append([]byte(nil), ch.Head...)})
		case c.port == HTTP1: // a response seen mid-stream, most likely
			t.start(c, HTTP1, ch)
		default:
			t.stats.Unparsed++
		}
		return
	}
	whole := len(ch.Head) == int(ch.Len)
	if c.port == HTTP1 {
		if isHTTP2(ch.Head) {
			t.start(c, HTTP2, ch)
		} else {
			t.start(c, HTTP1, ch)
		}
		return
	}
	if p := detect(ch.Head, whole, c.key.Proto == UDP, t.kafkaMaxFrame()); p != 0 {
		t.start(c, p, ch)
		return
	}
	t.stats.Unparsed++
	c.tries++
	if c.tries >= maxTries || ch.Offset == 0 && c.dirs[l7.FromClient].syn {
		// The stream's start (or enough of it) is not a protocol known.
		t.stats.Unparsed += uint64(len(c.held))
		c.phase, c.held = ignored, nil
		t.stats.Conns[Auto][EventUndetected]++
	}
}

func (t *Tracker) kafkaMaxFrame() int {
	if t.cfg.Kafka.MaxFrame > 0 {
		return t.cfg.Kafka.MaxFrame
	}
	return kafka.DefaultMaxFrame
}

// start gives the connection a parser of proto, feeds it the server
// payloads held, then ch.
func (t *Tracker) start(c *conn, proto Protocol, ch *l7.Chunk) {
	if proto != c.port {
		t.stats.Conns[proto][EventDetected]++
	}
	t.newParser(c, proto)
	t.cur = c
	for i := range c.held {
		h := &c.held[i]
		hc := l7.Chunk{Dir: l7.FromServer, TimeNs: h.timeNs, Offset: h.off, Len: h.n, Head: h.head}
		c.parser.Feed(&hc, t.onEx)
	}
	c.held = nil
	c.parser.Feed(ch, t.onEx)
}

func (t *Tracker) newParser(c *conn, proto Protocol) {
	st := &t.stats.Parse[proto]
	switch proto {
	case HTTP1:
		c.parser = http1.New(st, t.cfg.HTTP1)
	case HTTP2:
		c.parser = http2.New(st, t.cfg.HTTP2)
	case DNS:
		c.parser = dns.New(c.key.Proto, st, t.cfg.DNS)
	case Kafka:
		c.parser = kafka.New(st, t.cfg.Kafka)
	default:
		panic("stream: no parser for " + proto.String())
	}
	c.proto, c.phase = proto, parsing
}

// open starts following a connection, evicting the least recently active
// one at the cap.
func (t *Tracker) open(key l7.Conn, port Protocol, ns int64) *conn {
	if len(t.conns) >= t.cfg.MaxConns {
		t.end(t.lru.prev, EventEvicted)
	}
	c := &conn{key: key, port: port, lastNs: ns}
	if port != HTTP1 && port != Auto {
		t.newParser(c, port)
	}
	t.conns[key] = c
	t.stats.Conns[port][EventOpened]++
	c.prev, c.next = &t.lru, t.lru.next
	c.prev.next, c.next.prev = c, c
	return c
}

// touch marks the connection the most recently active.
func (t *Tracker) touch(c *conn, ns int64) {
	c.lastNs = max(c.lastNs, ns)
	if t.lru.next == c {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = &t.lru, t.lru.next
	c.prev.next, c.next.prev = c, c
}

// end stops following a connection: its parser's pending requests are
// emitted unanswered, its state freed.
func (t *Tracker) end(c *conn, ev Event) {
	if c.parser != nil {
		if ev == EventEvicted {
			t.stats.Parse[c.proto].Add(l7.ReasonStateCap)
		}
		prev := t.cur
		t.cur = c
		c.parser.Close(t.onEx)
		t.cur = prev
		c.parser = nil
	}
	t.stats.Conns[c.port][ev]++
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next, c.held = nil, nil, nil
	delete(t.conns, c.key)
}

// Expire closes the connections that saw no segment in the IdleTimeout
// before nowNs (CLOCK_MONOTONIC ns, the segments' clock), walking from the
// least recently active; their pending requests are emitted unanswered.
func (t *Tracker) Expire(nowNs int64, emit func(*Record)) {
	t.out = emit
	defer func() { t.out, t.cur = nil, nil }()
	idle := t.cfg.IdleTimeout.Nanoseconds()
	for c := t.lru.prev; c != &t.lru && nowNs-c.lastNs > idle; c = t.lru.prev {
		t.end(c, EventExpired)
	}
}

// Close closes every connection (EventClosed), emitting their pending
// requests unanswered. The tracker may be fed again afterwards.
func (t *Tracker) Close(emit func(*Record)) {
	t.out = emit
	defer func() { t.out, t.cur = nil, nil }()
	for t.lru.prev != &t.lru {
		t.end(t.lru.prev, EventClosed)
	}
}

// Stats returns a copy of the counters.
func (t *Tracker) Stats() Stats {
	s := t.stats
	s.Live = len(t.conns)
	return s
}
