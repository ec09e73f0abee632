package dns

import (
	"encoding/binary"
	"math"
	"net/netip"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

// rr is an answer record of a test response.
type rr struct {
	name   string
	ttl    uint32
	a      string // an A or AAAA address
	cname  string
	mxHost string
}

func build(t testing.TB, id uint16, response bool, rcode dnsmessage.RCode, qname string, qtype dnsmessage.Type, answers []rr, opt bool) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: response, RCode: rcode, RecursionDesired: true})
	b.EnableCompression()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.StartQuestions())
	must(b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(qname), Type: qtype, Class: dnsmessage.ClassINET}))
	must(b.StartAnswers())
	for _, a := range answers {
		h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(a.name), Class: dnsmessage.ClassINET, TTL: a.ttl}
		switch {
		case a.cname != "":
			must(b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(a.cname)}))
		case a.mxHost != "":
			must(b.MXResource(h, dnsmessage.MXResource{Pref: 10, MX: dnsmessage.MustNewName(a.mxHost)}))
		default:
			ip := netip.MustParseAddr(a.a)
			if ip.Is4() {
				must(b.AResource(h, dnsmessage.AResource{A: ip.As4()}))
			} else {
				must(b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: ip.As16()}))
			}
		}
	}
	if opt {
		must(b.StartAdditionals())
		var h dnsmessage.ResourceHeader
		must(h.SetEDNS0(1232, dnsmessage.RCodeSuccess, false))
		must(b.OPTResource(h, dnsmessage.OPTResource{}))
	}
	m, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func query(t testing.TB, id uint16, name string, qt dnsmessage.Type) []byte {
	return build(t, id, false, 0, name, qt, nil, true)
}

// got is a copy of an exchange (they are only valid during emit).
type got struct {
	Req, Resp int64
	L7        schemas.L7
}

func collect(out *[]got) func(*l7.Exchange) {
	return func(e *l7.Exchange) {
		l := e.L7
		l.DNSQTypes = append([]string(nil), l.DNSQTypes...)
		l.DNSRRTypes = append([]string(nil), l.DNSRRTypes...)
		l.DNSIPs = append([]string(nil), l.DNSIPs...)
		l.DNSCNAMEs = append([]string(nil), l.DNSCNAMEs...)
		*out = append(*out, got{e.RequestNs, e.ResponseNs, l})
	}
}

var cmpOpts = cmpopts.EquateEmpty()

func resp(req, at int64, q string, rcode uint32, qt string, rrtypes, ips []string, ttl uint32, cnames []string) got {
	return got{req, at, schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7DNS, DNSQuery: q, DNSRCode: rcode,
		DNSQTypes: []string{qt}, DNSRRTypes: rrtypes, DNSIPs: ips, DNSTTL: ttl, DNSCNAMEs: cnames, DNSObservationSource: "ebpf"}}
}

func req(at int64, q, qt string) got {
	return got{at, 0, schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7DNS, DNSQuery: q, DNSQTypes: []string{qt}, DNSObservationSource: "ebpf"}}
}

// udp feeds datagrams (dir, time, message, head length or -1 for all).
type dgram struct {
	dir  l7.Direction
	at   int64
	msg  []byte
	head int
}

func runUDP(t *testing.T, opts Options, ds []dgram) ([]got, l7.Stats) {
	var st l7.Stats
	var out []got
	p := New(17, &st, opts)
	var off [2]uint64
	for _, d := range ds {
		h := d.msg
		if d.head >= 0 {
			h = h[:d.head]
		}
		buf := append([]byte(nil), h...)
		p.Feed(&l7.Chunk{Dir: d.dir, TimeNs: d.at, Offset: off[d.dir], Len: uint32(len(d.msg)), Head: buf}, collect(&out))
		for i := range buf {
			buf[i] = 0xff // the parser must not keep heads
		}
		off[d.dir] += uint64(len(d.msg))
	}
	p.Close(collect(&out))
	return out, st
}

const ledger = "ledger-svc.payments.svc.cluster.local."

func TestUDPAnswersPairWithTheirQueries(t *testing.T) {
	q1 := query(t, 0x1234, "Ledger-Svc.payments.svc.cluster.local.", dnsmessage.TypeA)
	r1 := build(t, 0x1234, true, 0, "Ledger-Svc.payments.svc.cluster.local.", dnsmessage.TypeA,
		[]rr{{name: ledger, ttl: 30, a: "10.96.4.7"}, {name: ledger, ttl: 20, a: "10.96.4.8"}}, true)
	q2 := query(t, 7, "api.stripe.com.", dnsmessage.TypeAAAA)
	r2 := build(t, 7, true, 0, "api.stripe.com.", dnsmessage.TypeAAAA, []rr{
		{name: "api.stripe.com.", ttl: 300, cname: "api.stripe.com.cdn.cloudflare.net."},
		{name: "api.stripe.com.cdn.cloudflare.net.", ttl: 60, cname: "edge.example.net."},
		{name: "edge.example.net.", ttl: 120, a: "2001:db8::1"},
		{name: "edge.example.net.", ttl: 90, mxHost: "mx.example.net."},
	}, false)
	q3 := query(t, 9, "nope.example.", dnsmessage.TypeA)
	r3 := build(t, 9, true, dnsmessage.RCodeNameError, "nope.example.", dnsmessage.TypeA, nil, true)
	q4 := query(t, 11, "silent.example.", dnsmessage.TypeA)
	out, st := runUDP(t, Options{}, []dgram{
		{l7.FromClient, 100, q1, -1}, {l7.FromClient, 150, q2, -1}, {l7.FromClient, 160, q3, -1}, {l7.FromClient, 170, q4, -1},
		{l7.FromServer, 400, r2, -1}, {l7.FromServer, 500, r1, -1}, {l7.FromServer, 600, r3, -1},
	})
	want := []got{
		resp(150, 400, "api.stripe.com.", 0, "AAAA", []string{"CNAME", "CNAME", "AAAA", "MX"}, []string{"2001:db8::1"}, 60,
			[]string{"api.stripe.com.cdn.cloudflare.net.", "edge.example.net."}),
		resp(100, 500, ledger, 0, "A", []string{"A", "A"}, []string{"10.96.4.7", "10.96.4.8"}, 20, nil),
		resp(160, 600, "nope.example.", 3, "A", nil, nil, math.MaxUint32, nil),
		req(170, "silent.example.", "A"),
	}
	if d := cmp.Diff(want, out, cmpOpts); d != "" {
		t.Fatalf("exchanges (-want +got):\n%s", d)
	}
	if st != (l7.Stats{}) {
		t.Fatalf("stats %v; want none", st)
	}
}

func TestUnpairedResponseIsCountedAndEmittedWithoutLatency(t *testing.T) {
	r := build(t, 5, true, 0, "a.example.", dnsmessage.TypeA, []rr{{name: "a.example.", ttl: 5, a: "192.0.2.1"}}, false)
	q := query(t, 6, "a.example.", dnsmessage.TypeA) // another ID: not its query
	out, st := runUDP(t, Options{}, []dgram{{l7.FromClient, 10, q, -1}, {l7.FromServer, 50, r, -1}})
	want := []got{resp(50, 50, "a.example.", 0, "A", []string{"A"}, []string{"192.0.2.1"}, 5, nil), req(10, "a.example.", "A")}
	if d := cmp.Diff(want, out, cmpOpts); d != "" {
		t.Fatalf("exchanges (-want +got):\n%s", d)
	}
	if st[l7.ReasonUnpaired] != 1 || st[l7.ReasonMalformed] != 0 {
		t.Fatalf("stats %v; want unpaired 1", st)
	}
	e := l7.Exchange{RequestNs: out[0].Req, ResponseNs: out[0].Resp}
	if e.LatencyNs() != 0 {
		t.Fatalf("latency %d; want 0", e.LatencyNs())
	}
}

func TestPairingNeedsTheSameQuestion(t *testing.T) {
	q := query(t, 5, "a.example.", dnsmessage.TypeA)
	r := build(t, 5, true, 0, "a.example.", dnsmessage.TypeAAAA, nil, false) // same ID, other type
	out, st := runUDP(t, Options{}, []dgram{{l7.FromClient, 10, q, -1}, {l7.FromServer, 50, r, -1}})
	if len(out) != 2 || out[0].Req != 50 || out[1].L7.Type != flowpb.L7FlowType_REQUEST || st[l7.ReasonUnpaired] != 1 {
		t.Fatalf("exchanges %+v stats %v; want an unpaired response and an unanswered query", out, st)
	}
}

func TestRetransmittedQueryKeepsTheFirstTime(t *testing.T) {
	q := query(t, 5, "a.example.", dnsmessage.TypeA)
	r := build(t, 5, true, 0, "a.example.", dnsmessage.TypeA, nil, false)
	out, st := runUDP(t, Options{}, []dgram{{l7.FromClient, 10, q, -1}, {l7.FromClient, 20, q, -1}, {l7.FromServer, 50, r, -1}})
	want := []got{resp(10, 50, "a.example.", 0, "A", nil, nil, math.MaxUint32, nil)}
	if d := cmp.Diff(want, out, cmpOpts); d != "" || st != (l7.Stats{}) {
		t.Fatalf("exchanges (-want +got):\n%s\nstats %v", d, st)
	}
}

func TestPendingCapEmitsTheOldestUnanswered(t *testing.T) {
	var ds []dgram
	for i := range 3 {
		ds = append(ds, dgram{l7.FromClient, int64(10 + i), query(t, uint16(i), "a.example.", dnsmessage.TypeA), -1})
	}
	ds = append(ds, dgram{l7.FromServer, 90, build(t, 2, true, 0, "a.example.", dnsmessage.TypeA, nil, false), -1})
	out, st := runUDP(t, Options{MaxPending: 2}, ds)
	want := []got{req(10, "a.example.", "A"), resp(12, 90, "a.example.", 0, "A", nil, nil, math.MaxUint32, nil), req(11, "a.example.", "A")}
	if d := cmp.Diff(want, out, cmpOpts); d != "" {
		t.Fatalf("exchanges (-want +got):\n%s", d)
	}
	if st[l7.ReasonStateCap] != 1 {
		t.Fatalf("stats %v; want state_cap 1", st)
	}
}

func TestUDPHeadsShorterThanDatagrams(t *testing.T) {
	q := query(t, 1, "a.example.", dnsmessage.TypeA)
	r := build(t, 1, true, 0, "a.example.", dnsmessage.TypeA,
		[]rr{{name: "a.example.", ttl: 9, a: "192.0.2.1"}, {name: "a.example.", ttl: 7, a: "192.0.2.2"}}, true)
	qEnd := 12 + len("a.example.") + 1 + 4 // header, name, type and class
	// answers: 2 + 10 + 4 bytes each (a compressed name)
	out, st := runUDP(t, Options{}, []dgram{
		{l7.FromClient, 10, q, qEnd},                      // cut in the OPT record: nothing lost
		{l7.FromServer, 30, r, qEnd + 16 + 5},             // cut in the second answer
		{l7.FromClient, 40, q, qEnd - 1},                  // cut in the question: unusable
		{l7.FromServer, 50, r, 11},                        // cut in the header
		{l7.FromClient, 60, []byte("not dns at all"), -1}, // whole but garbage
	})
	want := []got{resp(10, 30, "a.example.", 0, "A", []string{"A"}, []string{"192.0.2.1"}, 9, nil)}
	if d := cmp.Diff(want, out, cmpOpts); d != "" {
		t.Fatalf("exchanges (-want +got):\n%s", d)
	}
	if st[l7.ReasonTruncated] != 3 || st[l7.ReasonMalformed] != 1 || st[l7.ReasonGap] != 0 {
		t.Fatalf("stats %v; want truncated 3, malformed 1", st)
	}
}

func TestUDPGapIsCounted(t *testing.T) {
	var st l7.Stats
	p := New(17, &st, Options{})
	q := query(t, 1, "a.example.", dnsmessage.TypeA)
	p.Feed(&l7.Chunk{Dir: l7.FromClient, TimeNs: 1, Offset: 0, Len: uint32(len(q)), Head: q}, func(*l7.Exchange) {})
	p.Feed(&l7.Chunk{Dir: l7.FromClient, TimeNs: 2, Offset: uint64(3 * len(q)), Len: uint32(len(q)), Head: q}, func(*l7.Exchange) {})
	if st[l7.ReasonGap] != 1 {
		t.Fatalf("stats %v; want gap 1", st)
	}
}

// tcpStream is the length-prefixed stream of messages.
func tcpStream(msgs ...[]byte) []byte {
	var s []byte
	for _, m := range msgs {
		s = binary.BigEndian.AppendUint16(s, uint16(len(m)))
		s = append(s, m...)
	}
	return s
}

// seg is a TCP segment of a direction: [from, to) of its stream, head bytes captured, time.
type seg struct {
	dir      l7.Direction
	from, to int
	head     int
	at       int64
}

func runTCP(t *testing.T, opts Options, streams [2][]byte, segs []seg) ([]got, l7.Stats) {
	var st l7.Stats
	var out []got
	p := New(6, &st, opts)
	for _, s := range segs {
		b := streams[s.dir][s.from:s.to]
		h := append([]byte(nil), b[:min(s.head, len(b))]...)
		p.Feed(&l7.Chunk{Dir: s.dir, TimeNs: s.at, Offset: uint64(s.from), Len: uint32(s.to - s.from), Head: h}, collect(&out))
		for i := range h {
			h[i] = 0xff
		}
	}
	p.Close(collect(&out))
	return out, st
}

func TestTCPEveryTwoSegmentSplitGivesTheSameExchanges(t *testing.T) {
	q1 := query(t, 1, "a.example.", dnsmessage.TypeA)
	q2 := query(t, 2, "b.example.", dnsmessage.TypeAAAA)
	r1 := build(t, 1, true, 0, "a.example.", dnsmessage.TypeA, []rr{{name: "a.example.", ttl: 9, a: "192.0.2.1"}}, false)
	r2 := build(t, 2, true, 0, "b.example.", dnsmessage.TypeAAAA, []rr{{name: "b.example.", ttl: 8, cname: "c.example."}, {name: "c.example.", ttl: 4, a: "2001:db8::2"}}, false)
	streams := [2][]byte{tcpStream(q1, q2), tcpStream(r1, r2)}
	want := []got{
		resp(100, 300, "a.example.", 0, "A", []string{"A"}, []string{"192.0.2.1"}, 9, nil),
		resp(100, 300, "b.example.", 0, "AAAA", []string{"CNAME", "AAAA"}, []string{"2001:db8::2"}, 4, []string{"c.example."}),
	}
	n0, n1 := len(streams[0]), len(streams[1])
	// several messages per segment
	out, st := runTCP(t, Options{}, streams, []seg{{l7.FromClient, 0, n0, n0, 100}, {l7.FromServer, 0, n1, n1, 300}})
	if d := cmp.Diff(want, out, cmpOpts); d != "" || st != (l7.Stats{}) {
		t.Fatalf("one segment each (-want +got):\n%s\nstats %v", d, st)
	}
	// every split of each direction in two (split prefixes, messages across segments)
	for i := 1; i < n0; i++ {
		for _, j := range []int{1, 2, 3, len(r1) + 1, len(r1) + 2, len(r1) + 3, n1 - 1} {
			segs := []seg{{l7.FromClient, 0, i, i, 100}, {l7.FromClient, i, n0, n0, 100}, {l7.FromServer, 0, j, j, 300}, {l7.FromServer, j, n1, n1, 300}}
			out, st := runTCP(t, Options{}, streams, segs)
			if d := cmp.Diff(want, out, cmpOpts); d != "" || st != (l7.Stats{}) {
				t.Fatalf("splits at %d, %d (-want +got):\n%s\nstats %v", i, j, d, st)
			}
		}
	}
	// one byte per segment
	var segs []seg
	for i := range n0 {
		segs = append(segs, seg{l7.FromClient, i, i + 1, 1, 100})
	}
	for i := range n1 {
		segs = append(segs, seg{l7.FromServer, i, i + 1, 1, 300})
	}
	if out, st := runTCP(t, Options{}, streams, segs); cmp.Diff(want, out, cmpOpts) != "" || st != (l7.Stats{}) {
		t.Fatalf("byte segments: %+v stats %v", out, st)
	}
}

func TestTCPHeadsShorterThanMessagesAreSkippedByOffset(t *testing.T) {
	q1 := query(t, 1, "a.example.", dnsmessage.TypeA)
	r1 := build(t, 1, true, 0, "a.example.", dnsmessage.TypeA, []rr{
		{name: "a.example.", ttl: 9, a: "192.0.2.1"}, {name: "a.example.", ttl: 9, a: "192.0.2.2"}, {name: "a.example.", ttl: 9, a: "192.0.2.3"}}, false)
	r2 := build(t, 2, true, 0, "b.example.", dnsmessage.TypeA, []rr{{name: "b.example.", ttl: 3, a: "192.0.2.9"}}, false)
	q2 := query(t, 2, "b.example.", dnsmessage.TypeA)
	streams := [2][]byte{tcpStream(q1, q2), tcpStream(r1, r2)}
	ansStart := 2 + 12 + len("a.example.") + 1 + 4
	// response 1's segment captures its first answer only; response 2 is a segment of its own
	segs := []seg{
		{l7.FromClient, 0, len(streams[0]), len(streams[0]), 100},
		{l7.FromServer, 0, 2 + len(r1), ansStart + 16, 300},
		{l7.FromServer, 2 + len(r1), len(streams[1]), 64, 310},
	}
	out, st := runTCP(t, Options{}, streams, segs)
	want := []got{
		resp(100, 300, "a.example.", 0, "A", []string{"A"}, []string{"192.0.2.1"}, 9, nil),
		resp(100, 310, "b.example.", 0, "A", []string{"A"}, []string{"192.0.2.9"}, 3, nil),
	}
	if d := cmp.Diff(want, out, cmpOpts); d != "" {
		t.Fatalf("exchanges (-want +got):\n%s", d)
	}
	if st[l7.ReasonTruncated] != 1 || st[l7.ReasonLost] != 0 {
		t.Fatalf("stats %v; want truncated 1", st)
	}
}

func TestTCPMaxMessageCapsCopies(t *testing.T) {
	r := build(t, 1, true, 0, "a.example.", dnsmessage.TypeA, []rr{{name: "a.example.", ttl: 9, a: "192.0.2.1"}, {name: "a.example.", ttl: 9, a: "192.0.2.2"}}, false)
	s := tcpStream(r)
	// across two segments, so it is copied; 16 bytes past the question keep one answer
	capped := 12 + len("a.example.") + 1 + 4 + 16
	out, st := runTCP(t, Options{MaxMessage: capped}, [2][]byte{nil, s}, []seg{{l7.FromServer, 0, 5, 5, 1}, {l7.FromServer, 5, len(s), len(s), 2}})
	if len(out) != 1 || len(out[0].L7.DNSIPs) != 1 || st[l7.ReasonTruncated] != 1 || st[l7.ReasonUnpaired] != 1 {
		t.Fatalf("exchanges %+v stats %v; want one IP, truncated 1, unpaired 1", out, st)
	}
}

func TestTCPGaps(t *testing.T) {
	q1 := query(t, 1, "a.example.", dnsmessage.TypeA)
	q2 := query(t, 2, "b.example.", dnsmessage.TypeA)
	s := tcpStream(q1, q2)
	// a gap inside the first message's tail (its question is in the first
	// segment): parsed as cut, the next message follows
	out, st := runTCP(t, Options{}, [2][]byte{s}, []seg{{l7.FromClient, 0, len(q1) - 3, len(q1), 1}, {l7.FromClient, len(q1) + 2, len(s), len(s), 2}})
	if d := cmp.Diff([]got{req(1, "a.example.", "A"), req(2, "b.example.", "A")}, out, cmpOpts); d != "" || st[l7.ReasonGap] != 1 || st[l7.ReasonLost] != 0 {
		t.Fatalf("gap in a message (-want +got):\n%s\nstats %v", d, st)
	}
	// a gap over a length prefix: the direction is lost
	out, st = runTCP(t, Options{}, [2][]byte{s}, []seg{{l7.FromClient, 0, len(q1) + 2, len(q1) + 2, 1}, {l7.FromClient, len(q1) + 3, len(s), len(s), 2}})
	if d := cmp.Diff([]got{req(1, "a.example.", "A")}, out, cmpOpts); d != "" || st[l7.ReasonGap] != 1 || st[l7.ReasonLost] != 1 {
		t.Fatalf("gap over a prefix (-want +got):\n%s\nstats %v", d, st)
	}
	// a length prefix past the head: lost
	out, st = runTCP(t, Options{}, [2][]byte{s}, []seg{{l7.FromClient, 0, len(s), 2 + len(q1), 1}})
	if d := cmp.Diff([]got{req(1, "a.example.", "A")}, out, cmpOpts); d != "" || st[l7.ReasonTruncated] != 1 || st[l7.ReasonLost] != 1 {
		t.Fatalf("prefix past the head (-want +got):\n%s\nstats %v", d, st)
	}
}

func TestTCPOverlapAndCloseMidMessage(t *testing.T) {
	q1 := query(t, 1, "a.example.", dnsmessage.TypeA)
	q2 := query(t, 2, "b.example.", dnsmessage.TypeA)
	s := tcpStream(q1, q2)
	// the second segment repeats 4 bytes of the first (not sent by the
	// capture, but tolerated); the stream ends inside q2 after its question
	end := len(s) - 5
	out, st := runTCP(t, Options{}, [2][]byte{s}, []seg{{l7.FromClient, 0, 10, 10, 1}, {l7.FromClient, 6, end, end, 2}})
	if d := cmp.Diff([]got{req(1, "a.example.", "A"), req(2, "b.example.", "A")}, out, cmpOpts); d != "" || st != (l7.Stats{}) {
		t.Fatalf("(-want +got):\n%s\nstats %v", d, st)
	}
}
