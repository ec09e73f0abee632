package stream

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/flowbus/flowbus/agent/l7"
)

// h2Frames are an HTTP/2 client's and server's bytes for one GET.
func h2Frames(t *testing.T, path string) (client, settings, server []byte) {
	t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "svc"}, {Name: ":path", Value: path}} {
		enc.WriteField(f)
	}
	var c bytes.Buffer
	c.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&c, nil)
	fr.WriteSettings()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})

	var s bytes.Buffer
	fr = http2.NewFramer(&s, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
	n := s.Len()
	hb.Reset()
	enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
	return c.Bytes(), s.Bytes()[:n], s.Bytes()[n:]
}

func kafkaRequest(corr int32) []byte {
	r := kmsg.NewPtrMetadataRequest()
	r.Version = 9
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr("orders")
	r.Topics = append(r.Topics, rt)
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("flowbus-test")).AppendRequest(nil, r, corr)
}

func kafkaResponse(corr int32) []byte {
	r := kmsg.NewPtrMetadataResponse()
	r.Version = 9
	rt := kmsg.NewMetadataResponseTopic()
	rt.Topic = kmsg.StringPtr("orders")
	r.Topics = append(r.Topics, rt)
	b := binary.BigEndian.AppendUint32(make([]byte, 4), uint32(corr))
	b = append(b, 0) // flexible response header: no tags
	b = r.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func dnsMessage(t *testing.T, id uint16, response bool, name string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: response, RecursionDesired: true})
	b.EnableCompression()
	q := dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	b.Question(q)
	if response {
		b.StartAnswers()
		b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 30}, dnsmessage.AResource{A: [4]byte{10, 1, 2, 3}})
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func withPrefix(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
}

func udpSeg(clientPort uint16, server string, d l7.Direction, ns int64, data []byte) Segment {
	return Segment{Conn: l7.Conn{Client: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), clientPort), Server: netip.MustParseAddrPort(server), Proto: UDP},
		Dir: d, TimeNs: ns, Len: uint32(len(data)), Head: data}
}

var tlsClientHello = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + string(bytes.Repeat([]byte{0x5a}, 40))

// Each protocol is found on an auto port from its client's first bytes
// and parsed; a stream that is none of them is ignored and counted.
func TestDetectionOnAutoPorts(t *testing.T) {
	cfg := Config{Ports: Ports{{TCP, 7000}: Auto, {UDP, 7000}: Auto}}
	h2c, h2settings, h2s := h2Frames(t, "/x")
	kreq, kresp := kafkaRequest(3), kafkaResponse(3)
	q, a := dnsMessage(t, 77, false, "svc.ns.svc."), dnsMessage(t, 77, true, "svc.ns.svc.")

	r := newRig(t, cfg)
	h1 := newTCP(40001, "10.0.0.2:7000", 10, 20)
	h2 := newTCP(40002, "10.0.0.2:7000", 10, 20)
	kf := newTCP(40003, "10.0.0.2:7000", 10, 20)
	dt := newTCP(40004, "10.0.0.2:7000", 10, 20)
	tl := newTCP(40005, "10.0.0.2:7000", 10, 20)
	r.feed(h1.syn(1), h1.c2s(2, get1), h1.s2c(3, ok5),
		// the HTTP/2 server speaks first: its SETTINGS wait for the client's preface
		h2.syn(4), h2.synAck(4), h2.s2c(5, string(h2settings)), h2.c2s(6, string(h2c)), h2.s2c(7, string(h2s)),
		kf.syn(8), kf.c2s(9, string(kreq)), kf.s2c(10, string(kresp)),
		dt.syn(11), dt.c2s(12, string(withPrefix(q))), dt.s2c(13, string(withPrefix(a))),
		udpSeg(40006, "10.0.0.2:7000", l7.FromClient, 14, q), udpSeg(40006, "10.0.0.2:7000", l7.FromServer, 15, a),
		tl.syn(16), tl.c2s(17, tlsClientHello), tl.s2c(18, "\x16\x03\x03 server hello"), tl.c2s(19, get1),
		udpSeg(40007, "10.0.0.2:7000", l7.FromClient, 20, []byte("not dns at all, though long enough")))
	r.expect("detected",
		"http :40001 RESP GET /a 200 2-3",
		"http2 :40002 RESP GET http://svc/x 200 6-7",
		"kafka :40003 RESP metadata v9 #3 orders err 0 9-10",
		"dns :40004 RESP svc.ns.svc. rcode 0 [10.1.2.3] 12-13",
		"dns :40006 RESP svc.ns.svc. rcode 0 [10.1.2.3] 14-15")
	st := r.tr.Stats()
	for p, want := range map[Protocol][NumEvents]uint64{
		HTTP1: events(EventDetected, 1), HTTP2: events(EventDetected, 1), Kafka: events(EventDetected, 1), DNS: events(EventDetected, 2),
		Auto: events(EventOpened, 7, EventUndetected, 1),
	} {
		if st.Conns[p] != want {
			t.Errorf("%s: events %v; want %v", p, st.Conns[p], want)
		}
	}
	// TLS: the client hello (at the stream's start: final) and the two
	// segments after it; the UDP datagram: one try of four.
	if st.Unparsed != 4 {
		t.Errorf("unparsed %d; want 4", st.Unparsed)
	}
	for p := range NumProtocols {
		if st.Parse[p] != (l7.Stats{}) {
			t.Errorf("%s: parse stats %v", p, st.Parse[p])
		}
	}
	if c := r.tr.conns[tl.c]; c.phase != ignored || c.parser != nil || c.held != nil {
		t.Errorf("TLS connection: phase %d, parser %v, held %d", c.phase, c.parser, len(c.held))
	}
}

// Seen mid-stream, a connection on an auto port is tried on its client's
// next payloads, up to four.
func TestDetectionTriesMidStream(t *testing.T) {
	r := newRig(t, Config{Ports: Ports{{TCP, 7000}: Auto}})
	f := newTCP(40001, "10.0.0.2:7000", 10, 20)
	f.sent = [2]uint32{5000, 6000}
	g := newTCP(40002, "10.0.0.2:7000", 10, 20)
	r.feed(f.c2s(1, "the end of a request body"), f.s2c(2, nf0), f.c2s(3, get2), f.s2c(4, ok2))
	r.expect("second try", "http :40001 RESP GET /b 200 3-4")
	r.feed(g.c2s(5, "a"), g.c2s(6, "b"), g.c2s(7, "c"), g.c2s(8, "d"), g.c2s(9, get1))
	st := r.tr.Stats()
	if st.Unparsed != 6 || st.Conns[Auto] != events(EventOpened, 2, EventUndetected, 1) || st.Conns[HTTP1] != events(EventDetected, 1) {
		t.Fatalf("stats %+v", st)
	}
	// The held response was replayed before the request: unpaired.
	if st.Parse[HTTP1] != parseStats(l7.ReasonUnpaired, 1) {
		t.Fatalf("parse stats %v", st.Parse[HTTP1])
	}
}

// HTTP/2 with prior knowledge (h2c) on an http port goes to the HTTP/2
// parser.
func TestH2COnHTTPPort(t *testing.T) {
	r := newRig(t, httpConfig())
	c, settings, s := h2Frames(t, "/y")
	f := newTCP(40001, "10.0.0.2:80", 10, 20)
	r.feed(f.syn(1), f.synAck(1), f.c2s(2, string(c[:30])), f.c2s(3, string(c[30:])), f.s2c(4, string(settings)+string(s)))
	// The request's time is its HEADERS frame's, in the second segment.
	r.expect("h2c", "http2 :40001 RESP GET http://svc/y 200 3-4")
	st := r.tr.Stats()
	if st.Conns[HTTP1] != events(EventOpened, 1) || st.Conns[HTTP2] != events(EventDetected, 1) || st.Parse[HTTP2] != (l7.Stats{}) {
		t.Fatalf("stats %+v", st)
	}
}

// On an http port, a server that sends more than the held segments before
// the client's first is taken as HTTP/1 seen mid-stream.
func TestHTTPPortServerFirstPastTheHold(t *testing.T) {
	r := newRig(t, httpConfig())
	f := newTCP(40001, "10.0.0.2:80", 10, 20)
	r.feed(f.s2c(1, "a"), f.s2c(2, "b"), f.s2c(3, "c"), f.s2c(4, "d"))
	if c := r.tr.conns[f.c]; c.phase != deciding || len(c.held) != 4 {
		t.Fatalf("phase %d, %d held", c.phase, len(c.held))
	}
	r.feed(f.s2c(5, "e"))
	if c := r.tr.conns[f.c]; c.phase != parsing || c.held != nil || c.proto != HTTP1 {
		t.Fatalf("phase %d, %d held, %s", c.phase, len(c.held), c.proto)
	}
	// The parser got the five: it reads them as the start of a header,
	// which the next response ends (malformed); the one after answers.
	r.feed(f.c2s(6, get1), f.s2c(7, ok2), f.s2c(8, nf0))
	r.expect("http", "http :40001 RESP GET /a 404 6-8")
	if st := r.tr.Stats(); st.Unparsed != 0 || st.Parse[HTTP1] != parseStats(l7.ReasonMalformed, 1) {
		t.Fatalf("stats %+v", st)
	}
}

func TestDNSPorts(t *testing.T) {
	ports, err := ParsePorts("dns:53")
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, Config{Ports: ports})
	q1, a1 := dnsMessage(t, 1, false, "a.example."), dnsMessage(t, 1, true, "a.example.")
	q2, a2 := dnsMessage(t, 2, false, "b.example."), dnsMessage(t, 2, true, "b.example.")
	f := newTCP(40002, "10.0.0.53:53", 10, 20)
	both := string(withPrefix(q1)) + string(withPrefix(q2))
	r.feed(
		udpSeg(40001, "10.0.0.53:53", l7.FromClient, 1, q1), udpSeg(40001, "10.0.0.53:53", l7.FromClient, 2, q2),
		udpSeg(40001, "10.0.0.53:53", l7.FromServer, 3, a2), udpSeg(40001, "10.0.0.53:53", l7.FromServer, 4, a1),
		f.syn(5), f.synAck(5), f.c2s(6, both[:5]), f.c2s(7, both[5:]), f.at(l7.FromClient, 7, 3, both[3:9]),
		f.s2c(8, string(withPrefix(a1))+string(withPrefix(a2))))
	r.expect("dns",
		"dns :40001 RESP b.example. rcode 0 [10.1.2.3] 2-3",
		"dns :40001 RESP a.example. rcode 0 [10.1.2.3] 1-4",
		"dns :40002 RESP a.example. rcode 0 [10.1.2.3] 6-8",
		"dns :40002 RESP b.example. rcode 0 [10.1.2.3] 7-8")
	// UDP has no FIN: the connection lasts until it is idle.
	st := r.tr.Stats()
	if st.Live != 2 || st.Retransmits != 1 || st.Parse[DNS] != (l7.Stats{}) || st.Conns[DNS] != events(EventOpened, 2) {
		t.Fatalf("stats %+v", st)
	}
	r.feed(udpSeg(40001, "10.0.0.53:53", l7.FromClient, 9, q1))
	r.tr.Expire(9+int64(DefaultIdleTimeout)+1, r.emit)
	r.expect("expired", "dns :40001 REQ a.example. rcode 0 [] 9-0")
}

func TestKafkaPort(t *testing.T) {
	r := newRig(t, Config{Ports: Ports{{TCP, 9092}: Kafka}})
	f := newTCP(40001, "10.0.0.2:9092", 0xfffffff0, 20)
	req := kafkaRequest(1)
	r.feed(f.syn(1), f.synAck(1), f.c2s(2, string(req[:10])), f.c2s(3, string(req[10:])), f.c2s(4, string(kafkaRequest(2))),
		f.s2c(5, string(kafkaResponse(1))), f.s2c(6, string(kafkaResponse(2))), f.rst(l7.FromClient, 7))
	r.expect("kafka", "kafka :40001 RESP metadata v9 #1 orders err 0 2-5", "kafka :40001 RESP metadata v9 #2 orders err 0 4-6")
}

// The rules' edges, on heads alone.
func TestDetect(t *testing.T) {
	q := dnsMessage(t, 9, false, "x.example.")
	kreq := kafkaRequest(5)
	negCorr := bytes.Clone(kreq)
	binary.BigEndian.PutUint32(negCorr[8:], 0xffffffff)
	badKey := bytes.Clone(kreq)
	binary.BigEndian.PutUint16(badKey[4:], 1000)
	badVer := bytes.Clone(kreq)
	binary.BigEndian.PutUint16(badVer[6:], 99)
	badID := bytes.Clone(kreq)
	badID[14] = 0x01
	answer := dnsMessage(t, 9, true, "x.example.")
	for _, tc := range []struct {
		name  string
		head  []byte
		whole bool
		udp   bool
		want  Protocol
	}{
		{"h2 preface", []byte(http2.ClientPreface), true, false, HTTP2},
		{"h2 preface start only", []byte("PRI * HTTP/2.0\r\n"), false, false, HTTP2},
		{"GET", []byte("GET / HTTP/1.1\r\n"), false, false, HTTP1},
		{"PROPFIND", []byte("PROPFIND /dav HTTP/1.1\r\n"), false, false, HTTP1},
		{"method without target", []byte("GET  /"), true, false, 0},
		{"not a method", []byte("FETCH / HTTP/1.1\r\n"), true, false, 0},
		{"lower case", []byte("get / HTTP/1.1\r\n"), true, false, 0},
		{"response first", []byte("HTTP/1.1 200 OK\r\n"), true, false, 0},
		{"kafka", kreq, true, false, Kafka},
		{"kafka head 12 bytes", kreq[:12], false, false, Kafka},
		{"kafka head 11 bytes", kreq[:11], false, false, 0},
		{"kafka negative correlation", negCorr, true, false, 0},
		{"kafka unknown key", badKey, true, false, 0},
		{"kafka unknown version", badVer, true, false, 0},
		{"kafka client id not printable", badID, true, false, 0},
		{"dns over udp", q, true, true, DNS},
		{"dns over udp cut", q[:14], false, true, DNS},
		{"dns over udp cut but whole", q[:14], true, true, 0},
		{"dns answer first", answer, true, true, 0},
		{"dns over tcp", withPrefix(q), true, false, DNS},
		{"dns on tcp without prefix", q, true, false, 0},
		{"http on udp", []byte(get1), true, true, 0},
		{"tls", []byte(tlsClientHello), true, false, 0},
		{"empty", nil, true, false, 0},
	} {
		if got := detect(tc.head, tc.whole, tc.udp, 100<<20); got != tc.want {
			t.Errorf("%s: %v; want %v", tc.name, got, tc.want)
		}
	}
}
