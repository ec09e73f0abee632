package dns

import (
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

// FuzzParser feeds a client stream and a server stream (UDP: datagrams of
// the lengths plan gives; TCP: segments) cut as plan says: per plan byte,
// the low 6 bits are a length, bit 6 the direction, bit 7 a head half the
// length. It must not panic, and what it emits must be well formed.
func FuzzParser(f *testing.F) {
	q := query(f, 1, "a.example.", dnsmessage.TypeA)
	r := build(f, 1, true, 0, "a.example.", dnsmessage.TypeA, []rr{{name: "a.example.", ttl: 9, cname: "b.example."}, {name: "b.example.", ttl: 5, a: "192.0.2.1"}}, true)
	f.Add(false, q, r, []byte{byte(len(q)), 0x40 | byte(len(r))})
	f.Add(true, tcpStream(q, q), tcpStream(r), []byte{1, 7, 60, 0x41, 0x80 | 30, 0x7f, 0x7f})
	f.Add(true, tcpStream(q), tcpStream(r, r), []byte{63, 63, 0x40 | 3, 0xc0 | 63, 0x40 | 63, 0x7f})
	f.Fuzz(func(t *testing.T, tcp bool, client, server, plan []byte) {
		var st l7.Stats
		proto := uint8(17)
		if tcp {
			proto = 6
		}
		p := New(proto, &st, Options{MaxPending: 4, MaxMessage: 128})
		check := func(e *l7.Exchange) {
			if e.L7.Protocol != schemas.L7DNS || (e.L7.Type != flowpb.L7FlowType_REQUEST && e.L7.Type != flowpb.L7FlowType_RESPONSE) {
				t.Fatalf("exchange %+v", e)
			}
			if (e.L7.Type == flowpb.L7FlowType_REQUEST) != (e.ResponseNs == 0) || e.LatencyNs() < 0 || len(e.L7.DNSQTypes) != 1 {
				t.Fatalf("exchange %+v", e)
			}
		}
		streams := [2][]byte{client, server}
		var off [2]int
		now := int64(1)
		for _, b := range plan {
			d := l7.Direction(b >> 6 & 1)
			s := streams[d][off[d]:]
			n := min(int(b&63), len(s))
			if !tcp && n == 0 {
				n = len(s)
			}
			if n == 0 {
				continue
			}
			h := n
			if b&0x80 != 0 {
				h = n / 2
			}
			head := append([]byte(nil), s[:h]...)
			p.Feed(&l7.Chunk{Dir: d, TimeNs: now, Offset: uint64(off[d]), Len: uint32(n), Head: head}, check)
			for i := range head {
				head[i] = 0xff
			}
			off[d] += n
			now++
		}
		p.Close(check)
		if pp := p.(*parser); len(pp.pending) != 0 {
			t.Fatalf("%d pending after Close", len(pp.pending))
		}
	})
}
