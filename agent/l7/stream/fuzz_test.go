package stream

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/flowbus/flowbus/agent/l7"
)

// FuzzTracker feeds arbitrary segments: data is read 16 bytes at a time as
// a segment's fields (connection of 6, direction, flags, sequence number,
// length, time step, head length), its head the bytes after. Invariants:
// no panic; never more connections than MaxConns, held payloads at most 4
// per connection, each at most HeadBytes; Live equals opened less ended;
// after Close nothing is left; records carry a parsed protocol and their
// own connection.
func FuzzTracker(f *testing.F) {
	f.Add([]byte("\x00\x00\x02\x00\x00\x00\x10\x00\x00\x00\x00\x01\x00\x00GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20\x00\x00\x00\x20PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	f.Add([]byte("\x02\x01\x01\xff\xff\xff\xf0\x00\x00\x01\x00\x00\x01\x00\x00\x10HTTP/1.1 200 OK\r\n"))
	f.Add([]byte("\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00\x1d\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x07example\x03com\x00\x00\x01\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Config{Ports: Ports{{TCP, 80}: HTTP1, {TCP, 9090}: HTTP2, {TCP, 7000}: Auto, {TCP, 9092}: Kafka, {UDP, 53}: DNS, {UDP, 7000}: Auto},
			MaxConns: 3, HeadBytes: 32}
		tr, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		servers := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:80"), netip.MustParseAddrPort("10.0.0.2:9090"),
			netip.MustParseAddrPort("10.0.0.2:7000"), netip.MustParseAddrPort("10.0.0.2:9092"), netip.MustParseAddrPort("10.0.0.2:53"),
			netip.MustParseAddrPort("10.0.0.2:7000")}
		protos := []uint8{TCP, TCP, TCP, TCP, UDP, UDP}
		var cur *Segment
		emit := func(r *Record) {
			if r.Protocol == 0 || r.Protocol == Auto || r.Exchange == nil {
				t.Fatalf("record %+v", r)
			}
			if cur != nil && r.Conn != cur.Conn {
				if _, ok := tr.conns[r.Conn]; ok {
					t.Fatalf("record of %v, still followed, while feeding %v", r.Conn, cur.Conn)
				}
			}
		}
		var now int64
		for len(data) >= 16 {
			h := data[:16]
			k := int(h[0]) % len(servers)
			client := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 40000+uint16(h[0]>>4))
			s := Segment{
				Conn:  l7.Conn{Client: client, Server: servers[k], Proto: protos[k]},
				Dir:   l7.Direction(h[1] % 3), // 2 is invalid: rejected
				Flags: h[2],
				Seq:   binary.BigEndian.Uint32(h[3:]),
				Len:   uint32(binary.BigEndian.Uint16(h[7:])),
			}
			now += int64(h[9]) << 24
			s.TimeNs = now
			n := min(int(binary.BigEndian.Uint16(h[10:])), len(data)-16, int(s.Len)+int(h[12]&1)*8)
			s.Head = data[16 : 16+n]
			data = data[16+n:]
			cur = &s
			tr.Feed(&s, emit)
			cur = nil
			if h[13]&0x0f == 0 {
				tr.Expire(now, emit)
			}
			check(t, tr)
		}
		tr.Close(emit)
		if st := tr.Stats(); st.Live != 0 || len(tr.conns) != 0 || tr.lru.next != &tr.lru {
			t.Fatalf("after Close: %d live", st.Live)
		}
		check(t, tr)
	})
}

// check asserts the tracker's bounds and that its counters add up.
func check(t *testing.T, tr *Tracker) {
	t.Helper()
	if len(tr.conns) > tr.cfg.MaxConns {
		t.Fatalf("%d connections; cap %d", len(tr.conns), tr.cfg.MaxConns)
	}
	n := 0
	for c := tr.lru.next; c != &tr.lru; c = c.next {
		n++
		if tr.conns[c.key] != c || len(c.held) > maxHeld || c.phase != deciding && c.held != nil || (c.phase == parsing) != (c.parser != nil) {
			t.Fatalf("connection %v: phase %d, %d held, parser %v", c.key, c.phase, len(c.held), c.parser != nil)
		}
		for _, h := range c.held {
			if len(h.head) > tr.cfg.HeadBytes || uint32(len(h.head)) > h.n {
				t.Fatalf("held head %d bytes of %d", len(h.head), h.n)
			}
		}
	}
	st := tr.Stats()
	var opened, ended uint64
	for p := range NumProtocols {
		opened += st.Conns[p][EventOpened]
		ended += st.Conns[p][EventClosed] + st.Conns[p][EventExpired] + st.Conns[p][EventEvicted]
	}
	if n != len(tr.conns) || uint64(st.Live) != opened-ended {
		t.Fatalf("%d in the LRU list, %d in the map, %d live; opened %d, ended %d", n, len(tr.conns), st.Live, opened, ended)
	}
}

// The fuzz target's invariants hold over random segments of random
// connections too (a longer run than the seeds).
func TestRandomSegmentsKeepTheBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	cfg := Config{Ports: Ports{{TCP, 80}: HTTP1, {TCP, 7000}: Auto, {UDP, 53}: DNS}, MaxConns: 8, HeadBytes: 64}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	servers := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:80"), netip.MustParseAddrPort("10.0.0.2:7000"), netip.MustParseAddrPort("10.0.0.2:53")}
	msgs := []string{get1, ok5, nf0, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "\x00\x00\x00\x0c\x00\x03\x00\x09\x00\x00\x00\x01\xff\xff", "junk"}
	records := 0
	for i := range 100000 {
		k := rng.IntN(len(servers))
		proto := TCP
		if k == 2 {
			proto = UDP
		}
		msg := msgs[rng.IntN(len(msgs))]
		f1, f2 := rng.IntN(8), rng.IntN(8) // FIN, SYN, RST: each in a quarter of the segments
		s := Segment{
			Conn: l7.Conn{Client: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+rng.IntN(20))), Server: servers[k], Proto: proto},
			Dir:  l7.Direction(rng.IntN(2)), TimeNs: int64(i) * 1000, Seq: rng.Uint32N(4096), Len: uint32(len(msg)) + rng.Uint32N(2)*1000,
			Flags: uint8(f1 & f2), Head: []byte(msg),
		}
		tr.Feed(&s, func(*Record) { records++ })
		if i%1000 == 0 {
			tr.Expire(int64(i)*1000, func(*Record) { records++ })
			check(t, tr)
		}
	}
	check(t, tr)
	if st := tr.Stats(); st.Conns[HTTP1][EventOpened] == 0 || st.Retransmits == 0 || st.Trimmed == 0 || records == 0 {
		t.Fatalf("the random segments did not reach the paths: %+v, %d records", st, records)
	}
}
