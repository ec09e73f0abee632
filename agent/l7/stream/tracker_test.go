package stream

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/l7"
)

// rig feeds a tracker and keeps its records as strings.
type rig struct {
	t   *testing.T
	tr  *Tracker
	got []string
}

func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, tr: tr}
}

func (r *rig) emit(rec *Record) { r.got = append(r.got, format(rec)) }

// feed feeds segments one by one, overwriting each head after Feed (the
// tracker and its parsers must not keep it).
func (r *rig) feed(ss ...Segment) {
	for _, s := range ss {
		head := []byte(string(s.Head))
		s.Head = head
		r.tr.Feed(&s, r.emit)
		for i := range head {
			head[i] = 'X'
		}
	}
}

// take returns the records since the last take.
func (r *rig) take() []string {
	got := r.got
	r.got = nil
	return got
}

func (r *rig) expect(what string, want ...string) {
	r.t.Helper()
	if got := r.take(); !slices.Equal(got, want) {
		r.t.Fatalf("%s: records\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func format(rec *Record) string {
	e := rec.Exchange
	l := &e.L7
	typ := map[flowpb.L7FlowType]string{flowpb.L7FlowType_REQUEST: "REQ", flowpb.L7FlowType_RESPONSE: "RESP"}[l.Type]
	var what string
	switch rec.Protocol {
	case HTTP1, HTTP2:
		what = fmt.Sprintf("%s %s %d", l.HTTPMethod, l.HTTPURL, l.HTTPStatus)
	case DNS:
		what = fmt.Sprintf("%s rcode %d %v", l.DNSQuery, l.DNSRCode, l.DNSIPs)
	case Kafka:
		what = fmt.Sprintf("%s v%d #%d %s err %d", l.KafkaAPIKey, l.KafkaAPIVersion, l.KafkaCorrelationID, l.KafkaTopic, l.KafkaErrorCode)
	}
	return fmt.Sprintf("%s :%d %s %s %d-%d", rec.Protocol, rec.Conn.Client.Port(), typ, what, e.RequestNs, e.ResponseNs)
}

// tcp makes the segments of one TCP connection.
type tcp struct {
	c    l7.Conn
	isn  [2]uint32
	sent [2]uint32 // bytes sent so far per direction
}

func newTCP(clientPort uint16, server string, clientISN, serverISN uint32) *tcp {
	return &tcp{
		c:   l7.Conn{Client: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), clientPort), Server: netip.MustParseAddrPort(server), Proto: TCP},
		isn: [2]uint32{clientISN, serverISN},
	}
}

func (f *tcp) syn(ns int64) Segment {
	return Segment{Conn: f.c, Dir: l7.FromClient, TimeNs: ns, Seq: f.isn[0], Flags: FlagSYN}
}

func (f *tcp) synAck(ns int64) Segment {
	return Segment{Conn: f.c, Dir: l7.FromServer, TimeNs: ns, Seq: f.isn[1], Flags: FlagSYN | 0x10}
}

// send is the next segment of a direction, data whole in its head.
func (f *tcp) send(d l7.Direction, ns int64, data string) Segment {
	s := f.at(d, ns, f.sent[d], data)
	f.sent[d] += uint32(len(data))
	return s
}

func (f *tcp) c2s(ns int64, data string) Segment { return f.send(l7.FromClient, ns, data) }
func (f *tcp) s2c(ns int64, data string) Segment { return f.send(l7.FromServer, ns, data) }

// at is a segment of data at stream position from (a retransmission, or
// a segment whose predecessor is lost).
func (f *tcp) at(d l7.Direction, ns int64, from uint32, data string) Segment {
	return Segment{Conn: f.c, Dir: d, TimeNs: ns, Seq: f.isn[d] + 1 + from, Len: uint32(len(data)), Head: []byte(data), Flags: 0x10}
}

func (f *tcp) fin(d l7.Direction, ns int64) Segment {
	return Segment{Conn: f.c, Dir: d, TimeNs: ns, Seq: f.isn[d] + 1 + f.sent[d], Flags: FlagFIN | 0x10}
}

func (f *tcp) rst(d l7.Direction, ns int64) Segment {
	return Segment{Conn: f.c, Dir: d, TimeNs: ns, Seq: f.isn[d] + 1 + f.sent[d], Flags: FlagRST}
}

const (
	get1 = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	get2 = "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
	get3 = "GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
	ok5  = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	nf0  = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
	ok2  = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
)

func httpConfig() Config {
	return Config{Ports: Ports{{TCP, 80}: HTTP1}}
}

// events builds a Stats.Conns row.
func events(kv ...any) [NumEvents]uint64 {
	var e [NumEvents]uint64
	for i := 0; i < len(kv); i += 2 {
		e[kv[i].(Event)] = uint64(kv[i+1].(int))
	}
	return e
}

func parseStats(kv ...any) l7.Stats {
	var s l7.Stats
	for i := 0; i < len(kv); i += 2 {
		s[kv[i].(l7.Reason)] = uint64(kv[i+1].(int))
	}
	return s
}

// keepAlive is an HTTP/1.1 connection with keep-alive and pipelined
// requests, messages split across segments, closed by FIN from both.
func keepAlive(f *tcp) []Segment {
	return []Segment{
		f.syn(1), f.synAck(2),
		f.c2s(10, get1[:9]), f.c2s(11, get1[9:]),
		f.s2c(15, ok5[:20]), f.s2c(16, ok5[20:]),
		f.c2s(20, get2+get3), // pipelined
		f.s2c(28, nf0+ok2[:10]), f.s2c(29, ok2[10:]),
		f.fin(l7.FromClient, 40), f.fin(l7.FromServer, 41),
	}
}

var keepAliveWant = []string{
	"http :40001 RESP GET /a 200 10-15",
	"http :40001 RESP GET /b 404 20-28",
	"http :40001 RESP GET /c 200 20-28",
}

func TestHTTP1KeepAliveAndPipelined(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:80", 1000, 900000)
	ss := keepAlive(f)
	r.feed(ss[:len(ss)-1]...)
	r.expect("before the last FIN", keepAliveWant...)
	if st := r.tr.Stats(); st.Live != 1 {
		t.Fatalf("%d live after one FIN; want 1", st.Live)
	}
	r.feed(ss[len(ss)-1])
	r.expect("after")
	st := r.tr.Stats()
	if st.Segments != 11 || st.Retransmits != 0 || st.Trimmed != 0 || st.Unparsed != 0 || st.Rejected != 0 || st.Live != 0 ||
		st.Conns[HTTP1] != events(EventOpened, 1, EventClosed, 1) || st.Exchanges[HTTP1] != 3 || st.Parse[HTTP1] != (l7.Stats{}) {
		t.Fatalf("stats %+v", st)
	}
}

// Retransmissions, whole or overlapping what was seen, change nothing.
func TestRetransmitsChangeNothing(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:80", 1000, 900000)
	ss := keepAlive(f)
	client := get1 + get2 + get3
	server := ok5 + nf0 + ok2
	var noisy []Segment
	for i, s := range ss {
		noisy = append(noisy, s)
		switch i {
		case 1:
			noisy = append(noisy, f.syn(2), f.synAck(2)) // SYN and SYN-ACK again: the same connection
		case 3: // all of get1 again, then a segment overlapping its end and beginning get2
			noisy = append(noisy, f.at(l7.FromClient, 12, 0, get1), f.at(l7.FromClient, 12, 20, get1[20:]))
		case 5: // the response's second part again, and its end with the start of the next
			noisy = append(noisy, f.at(l7.FromServer, 17, 20, ok5[20:]))
		case 6: // from 5 bytes back into get1 to the end: all seen
			noisy = append(noisy, f.at(l7.FromClient, 21, uint32(len(get1)-5), client[len(get1)-5:]))
		case 7: // 2 bytes new: trimmed; the next segment overlaps them: trimmed too
			noisy = append(noisy, f.at(l7.FromServer, 28, uint32(len(ok5)-3), server[len(ok5)-3:len(ok5)+len(nf0)+12]))
		}
	}
	r.feed(noisy...)
	r.expect("noisy", keepAliveWant...)
	st := r.tr.Stats()
	if st.Retransmits != 4 || st.Trimmed != 2 || st.Parse[HTTP1] != (l7.Stats{}) || st.Conns[HTTP1] != events(EventOpened, 1, EventClosed, 1) {
		t.Fatalf("retransmits %d, trimmed %d; want 4 and 2; stats %+v", st.Retransmits, st.Trimmed, st)
	}
}

// A partial overlap reaches the parser trimmed: offset advanced, length
// and head cut by the bytes already seen.
func TestPartialOverlapIsTrimmed(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:80", 1000, 900000)
	r.feed(f.syn(1), f.c2s(10, get1[:10]))
	// bytes 4 to 20 of get1: 6 seen, 10 new
	r.feed(f.at(l7.FromClient, 11, 4, get1[4:20]))
	if st := r.tr.Stats(); st.Trimmed != 1 || st.Retransmits != 0 {
		t.Fatalf("stats %+v", st)
	}
	c := r.tr.conns[f.c]
	if c.dirs[l7.FromClient].next != 20 {
		t.Fatalf("next offset %d; want 20", c.dirs[l7.FromClient].next)
	}
	f.sent[l7.FromClient] = 20
	r.feed(f.c2s(12, get1[20:]), f.synAck(13), f.s2c(14, ok2))
	r.expect("trimmed", "http :40001 RESP GET /a 200 10-14")
	if st := r.tr.Stats(); st.Parse[HTTP1] != (l7.Stats{}) {
		t.Fatalf("parse stats %v", st.Parse[HTTP1])
	}
}

// A lost segment is a gap the parser counts; the next request is parsed.
func TestLostSegmentIsAGap(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:80", 1000, 900000)
	r.feed(f.syn(1), f.synAck(2), f.c2s(10, get1), f.s2c(15, ok5))
	f.c2s(20, get2) // lost: never fed
	r.feed(f.s2c(25, nf0), f.c2s(30, get3), f.s2c(35, ok2))
	r.feed(f.fin(l7.FromClient, 40), f.fin(l7.FromServer, 41))
	r.expect("gap", "http :40001 RESP GET /a 200 10-15", "http :40001 RESP GET /c 200 30-35")
	if st := r.tr.Stats(); st.Parse[HTTP1] != parseStats(l7.ReasonGap, 1, l7.ReasonUnpaired, 1) || st.Retransmits != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A lost first segment after the SYN shows as a gap too: offsets start at
// the ISN, not at the first segment seen.
func TestLostFirstSegmentAfterSYN(t *testing.T) {
	r := newRig(t, Config{Ports: Ports{{TCP, 9090}: HTTP2}})
	f := newTCP(40001, "10.0.0.2:9090", 7, 8)
	r.feed(f.syn(1), f.synAck(2))
	f.c2s(3, h2Preface) // lost
	r.feed(f.c2s(4, "\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	if st := r.tr.Stats(); st.Parse[HTTP2] != parseStats(l7.ReasonGap, 1, l7.ReasonLost, 1) {
		t.Fatalf("parse stats %v; want a gap (which loses an HTTP/2 connection)", st.Parse[HTTP2])
	}
}

// Seen mid-stream (no SYN), between two exchanges: offsets start at the
// first byte seen in each direction, and everything is parsed.
func TestMidStreamStartBetweenExchanges(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:80", 5000000, 6000000)
	f.sent = [2]uint32{123456, 654321}
	r.feed(f.c2s(20, get1), f.s2c(25, ok5), f.c2s(30, get2), f.s2c(35, nf0))
	r.expect("mid-stream", "http :40001 RESP GET /a 200 20-25", "http :40001 RESP GET /b 404 30-35")
	c := r.tr.conns[f.c]
	if c.dirs[0].next != uint64(len(get1+get2)) || c.dirs[1].next != uint64(len(ok5+nf0)) {
		t.Fatalf("offsets %d %d", c.dirs[0].next, c.dirs[1].next)
	}
	if st := r.tr.Stats(); st.Parse[HTTP1] != (l7.Stats{}) || st.Unparsed != 0 || st.Conns[HTTP1] != events(EventOpened, 1) {
		t.Fatalf("stats %+v", st)
	}
}

// Seen mid-stream inside a response body: the server's first bytes seen
// (kept for the parser until the client's first) are the body's end, which
// the http1 parser reads as the start of a header: the next response is
// swallowed with it (counted malformed) and its request, once the parser
// has resynchronised, emitted unanswered; the exchange after is whole.
func TestMidStreamStartInsideABody(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:80", 5000000, 6000000)
	f.sent = [2]uint32{123456, 654321}
	r.feed(f.s2c(10, "the end of a response body"), f.c2s(20, get1), f.s2c(25, ok5), f.c2s(30, get2), f.s2c(35, nf0))
	r.expect("mid-stream", "http :40001 REQ GET /a 0 20-0", "http :40001 RESP GET /b 404 30-35")
	if st := r.tr.Stats(); st.Parse[HTTP1] != parseStats(l7.ReasonMalformed, 1) || st.Unparsed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Sequence numbers wrap past 2^32 within a request and a response, with a
// retransmission across the wrap; offsets go on past 4 GiB.
func TestSequenceWraparound(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:80", 0xffffffff-10, 0xffffffff-30)
	r.feed(f.syn(1), f.synAck(2), f.c2s(10, get1), f.at(l7.FromClient, 11, 0, get1), f.s2c(15, ok5[:25]), f.s2c(16, ok5[25:]),
		f.at(l7.FromServer, 17, 20, ok5[20:]))
	r.expect("wrapped", "http :40001 RESP GET /a 200 10-15")
	if st := r.tr.Stats(); st.Retransmits != 2 || st.Trimmed != 0 || st.Parse[HTTP1] != (l7.Stats{}) {
		t.Fatalf("stats %+v", st)
	}
	// A 5 GiB body, in segments of 1 MiB (sequence numbers wrap more than
	// once), then the next request.
	body := uint64(5 << 30)
	r.feed(f.c2s(20, fmt.Sprintf("POST /up HTTP/1.1\r\nContent-Length: %d\r\n\r\n", body)))
	for sent := uint64(0); sent < body; sent += 1 << 20 {
		s := f.at(l7.FromClient, 21, f.sent[0], "x")
		s.Len = 1 << 20
		f.sent[0] += 1 << 20
		r.feed(s)
	}
	r.feed(f.s2c(30, ok2), f.c2s(40, get2), f.s2c(45, nf0))
	r.expect("after 5 GiB", "http :40001 RESP POST /up 200 20-30", "http :40001 RESP GET /b 404 40-45")
	c := r.tr.conns[f.c]
	if want := uint64(len(get1)) + uint64(len(fmt.Sprintf("POST /up HTTP/1.1\r\nContent-Length: %d\r\n\r\n", body))) + body + uint64(len(get2)); c.dirs[0].next != want {
		t.Fatalf("client offset %d; want %d", c.dirs[0].next, want)
	}
	if st := r.tr.Stats(); st.Parse[HTTP1] != (l7.Stats{}) {
		t.Fatalf("parse stats %v", st.Parse[HTTP1])
	}
}

func TestRSTClosesEmittingUnanswered(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:80", 1, 2)
	r.feed(f.syn(1), f.synAck(2), f.c2s(10, get1+get2), f.s2c(15, ok5))
	r.expect("answered", "http :40001 RESP GET /a 200 10-15")
	r.feed(f.rst(l7.FromServer, 20))
	r.expect("at the RST", "http :40001 REQ GET /b 0 10-0")
	// A late segment of the closed connection without payload is not a
	// new one.
	r.feed(f.fin(l7.FromClient, 21))
	if st := r.tr.Stats(); st.Live != 0 || st.Conns[HTTP1] != events(EventOpened, 1, EventClosed, 1) {
		t.Fatalf("stats %+v", st)
	}
}

func TestFINFromBothClosesEmittingUnanswered(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40002, "10.0.0.2:80", 1, 2)
	r.feed(f.syn(1), f.synAck(2), f.c2s(10, get1), f.fin(l7.FromClient, 11))
	r.expect("one FIN")
	r.feed(f.fin(l7.FromServer, 12))
	r.expect("both", "http :40002 REQ GET /a 0 10-0")
}

// A SYN with another ISN on a connection followed is a new connection on
// the same ports: the old one is closed first.
func TestSYNReusingPortsClosesTheOld(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:80", 1, 2)
	r.feed(f.syn(1), f.synAck(2), f.c2s(10, get1))
	g := newTCP(40001, "10.0.0.2:80", 5000, 6000)
	r.feed(g.syn(20))
	r.expect("reused", "http :40001 REQ GET /a 0 10-0")
	r.feed(g.synAck(21), g.c2s(30, get2), g.s2c(31, nf0))
	r.expect("new", "http :40001 RESP GET /b 404 30-31")
	if st := r.tr.Stats(); st.Live != 1 || st.Conns[HTTP1] != events(EventOpened, 2, EventClosed, 1) || st.Parse[HTTP1] != (l7.Stats{}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestIdleExpiry(t *testing.T) {
	cfg := httpConfig()
	cfg.IdleTimeout = 10 * time.Second
	r := newRig(t, cfg)
	a := newTCP(40001, "10.0.0.2:80", 1, 2)
	b := newTCP(40002, "10.0.0.2:80", 1, 2)
	sec := int64(time.Second)
	r.feed(a.syn(1*sec), a.c2s(2*sec, get1), b.syn(3*sec), b.c2s(5*sec, get2))
	r.tr.Expire(12*sec, r.emit) // a idle exactly 10 s: kept
	r.expect("at 12 s")
	r.tr.Expire(12*sec+1, r.emit)
	r.expect("past 12 s", fmt.Sprintf("http :40001 REQ GET /a 0 %d-0", 2*sec))
	if st := r.tr.Stats(); st.Live != 1 || st.Conns[HTTP1] != events(EventOpened, 2, EventExpired, 1) {
		t.Fatalf("stats %+v", st)
	}
	r.tr.Close(r.emit)
	r.expect("close", fmt.Sprintf("http :40002 REQ GET /b 0 %d-0", 5*sec))
	if st := r.tr.Stats(); st.Live != 0 || st.Conns[HTTP1] != events(EventOpened, 2, EventExpired, 1, EventClosed, 1) {
		t.Fatalf("stats %+v", st)
	}
}

func TestLRUEvictionAtMaxConns(t *testing.T) {
	cfg := httpConfig()
	cfg.MaxConns = 2
	r := newRig(t, cfg)
	a := newTCP(40001, "10.0.0.2:80", 1, 2)
	b := newTCP(40002, "10.0.0.2:80", 1, 2)
	c := newTCP(40003, "10.0.0.2:80", 1, 2)
	r.feed(a.syn(1), b.syn(2), b.c2s(3, get1), a.c2s(4, get2)) // b is now the least recently active
	r.feed(c.syn(5))
	r.expect("b evicted", "http :40002 REQ GET /a 0 3-0")
	r.feed(a.s2c(6, nf0), c.c2s(7, get3), c.s2c(8, ok2))
	r.expect("a and c go on", "http :40001 RESP GET /b 404 4-6", "http :40003 RESP GET /c 200 7-8")
	// b again: a new connection (mid-stream), evicting a.
	r.feed(b.s2c(9, ok5))
	st := r.tr.Stats()
	if st.Live != 2 || st.Conns[HTTP1] != events(EventOpened, 4, EventEvicted, 2) || st.Parse[HTTP1] != parseStats(l7.ReasonStateCap, 2) {
		t.Fatalf("stats %+v", st)
	}
	if _, ok := r.tr.conns[a.c]; ok {
		t.Fatal("a still followed")
	}
}

// Nothing grows past MaxConns, whatever comes.
func TestStateIsBounded(t *testing.T) {
	cfg := Config{Ports: Ports{{TCP, 80}: HTTP1, {TCP, 7000}: Auto, {UDP, 53}: DNS}, MaxConns: 50}
	r := newRig(t, cfg)
	for i := range 1000 {
		f := newTCP(uint16(10000+i), "10.0.0.2:80", uint32(i), 2)
		g := newTCP(uint16(10000+i), "10.0.0.2:7000", uint32(i), 2)
		r.feed(f.syn(int64(i)), f.c2s(int64(i), get1), g.s2c(int64(i), "hello"), g.s2c(int64(i), "hello"))
		if n := len(r.tr.conns); n > 50 || r.tr.Stats().Live != n {
			t.Fatalf("%d connections", n)
		}
	}
	st := r.tr.Stats()
	if st.Live != 50 || st.Conns[HTTP1][EventEvicted]+st.Conns[Auto][EventEvicted] != 1950 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRejected(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:81", 1, 2)
	bad := newTCP(40001, "10.0.0.2:80", 1, 2).c2s(1, get1)
	bad.Dir = 2
	r.feed(f.syn(1), f.c2s(2, get1), bad)
	if st := r.tr.Stats(); st.Rejected != 3 || st.Segments != 3 || st.Live != 0 {
		t.Fatalf("stats %+v", st)
	}
}
