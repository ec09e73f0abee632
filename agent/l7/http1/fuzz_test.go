package http1

import (
	"bytes"
	"math/rand/v2"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

// FuzzParser feeds the two byte streams cut into chunks at random (sizes,
// head limits, interleaving and gaps from seed). Invariants: no panic; no
// more exchanges than request lines could have been read (a '\n' in the
// client's heads each) and no more answered with a status than status
// lines (in the server's); every exchange well formed; the state within its bounds after
// every Feed; nothing read from a Head after Feed returned.
func FuzzParser(f *testing.F) {
	f.Add([]byte(get1+get2), []byte(ok5+nf0), uint64(1))
	f.Add([]byte("POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), []byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nrest"), uint64(2))
	f.Add([]byte("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), []byte("HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x00"), uint64(3))
	f.Fuzz(func(t *testing.T, client, server []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>32))
		opts := Options{MaxPending: 1 + rng.IntN(8), MaxHeaderBytes: 16 + rng.IntN(512), Headers: []string{"host"}}
		var st l7.Stats
		p := New(&st, opts).(*parser)
		var newlines [2]int
		var answered, status0, total int
		emit := func(e *l7.Exchange) {
			total++
			l := &e.L7
			if l.Protocol != schemas.L7HTTP || (l.Type == flowpb.L7FlowType_RESPONSE) != (e.ResponseNs != 0) ||
				(l.Type != flowpb.L7FlowType_RESPONSE && l.Type != flowpb.L7FlowType_REQUEST) {
				t.Fatalf("exchange %+v", e)
			}
			if l.Type == flowpb.L7FlowType_RESPONSE {
				answered++
				if l.HTTPStatus == 0 {
					status0++
				}
			}
			if bytes.IndexByte([]byte(l.HTTPMethod+l.HTTPURL), 0xff) >= 0 && bytes.IndexByte(client, 0xff) < 0 {
				t.Fatalf("exchange %+v has bytes of a Head overwritten after Feed", e)
			}
		}
		streams := [2][]byte{client, server}
		var off [2]uint64
		for t0 := int64(1); len(streams[0])+len(streams[1]) > 0; t0++ {
			d := l7.Direction(rng.IntN(2))
			if len(streams[d]) == 0 {
				d ^= 1
			}
			b := streams[d]
			n := min(len(b), 1+rng.IntN(300))
			h := min(n, rng.IntN(320))
			if rng.IntN(4) == 0 {
				h = n
			}
			if rng.IntN(40) == 0 {
				off[d] += uint64(1 + rng.IntN(100))
			}
			head := append([]byte(nil), b[:h]...)
			newlines[d] += bytes.Count(head, []byte("\n"))
			p.Feed(&l7.Chunk{Dir: d, TimeNs: t0, Offset: off[d], Len: uint32(n), Head: head}, emit)
			for i := range head {
				head[i] = 0xff
			}
			off[d] += uint64(n)
			streams[d] = b[n:]
			if p.n > opts.MaxPending || len(p.ring) > opts.MaxPending {
				t.Fatalf("%d pending, ring %d; cap %d", p.n, len(p.ring), opts.MaxPending)
			}
			for i := range p.dirs {
				if len(p.dirs[i].buf) > opts.MaxHeaderBytes || cap(p.dirs[i].buf) > 2*opts.MaxHeaderBytes+64 {
					t.Fatalf("buffer %d/%d; cap %d", len(p.dirs[i].buf), cap(p.dirs[i].buf), opts.MaxHeaderBytes)
				}
			}
		}
		p.Close(emit)
		// A response whose status line was cut answers with status 0:
		// one per truncated or over-long header at most.
		if total > newlines[0] || answered-status0 > newlines[1] || uint64(status0) > st[l7.ReasonTruncated]+st[l7.ReasonStateCap] {
			t.Fatalf("%d exchanges (%d answered, %d with status 0) from %d client and %d server lines; stats %v",
				total, answered, status0, newlines[0], newlines[1], st)
		}
	})
}
