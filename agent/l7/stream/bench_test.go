package stream

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/agent/l7/http1"
)

// BenchmarkTrackerHTTP1: one op is one segment of a keep-alive HTTP/1.1
// connection (a request segment, then a response segment with a 1 KiB
// body, heads cut at 256 bytes) through the tracker and the http1 parser;
// "parser" is the floor, the same segments as chunks to the parser alone.
// 64 connections are interleaved so that the map and LRU list work.
func BenchmarkTrackerHTTP1(b *testing.B) {
	const conns, exchanges = 64, 256
	var segs []Segment
	for i := range exchanges {
		for k := range conns {
			f := &tcp{c: l7.Conn{Client: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+k)), Server: netip.MustParseAddrPort("10.0.0.2:8080"), Proto: TCP},
				isn: [2]uint32{uint32(k) << 20, uint32(k) << 21}}
			req := fmt.Sprintf("GET /api/v1/orders/%d?expand=items HTTP/1.1\r\nHost: orders.payments.svc:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\r\n", i)
			resp := "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Type: application/json\r\nDate: Sun, 06 Dec 2026 04:51:22 GMT\r\n\r\n"
			segs = append(segs, f.at(l7.FromClient, int64(2*i), 0, req)) // sequence numbers set below
			r := f.at(l7.FromServer, int64(2*i+1), 0, resp)
			r.Len += 1024
			segs = append(segs, r)
		}
	}
	// Sequence numbers as a real connection's: each request's after the
	// previous one's.
	var next = map[l7.Conn]*[2]uint32{}
	for i := range segs {
		s := &segs[i]
		n := next[s.Conn]
		if n == nil {
			n = &[2]uint32{}
			next[s.Conn] = n
		}
		s.Seq = uint32(i%2+1)<<28 + n[s.Dir]
		n[s.Dir] += s.Len
		s.Head = s.Head[:min(len(s.Head), 256)]
	}
	b.Run("tracker", func(b *testing.B) {
		tr, err := New(Config{Ports: Ports{{TCP, 8080}: HTTP1}})
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		emit := func(*Record) { got++ }
		b.ReportAllocs()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			k := i % len(segs)
			if k == 0 && i > 0 {
				tr.Close(emit)
			}
			tr.Feed(&segs[k], emit)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "segments/s")
		if st := tr.Stats(); got < b.N/2-len(segs) || st.Parse[HTTP1] != (l7.Stats{}) || st.Retransmits != 0 {
			b.Fatalf("%d exchanges of %d segments, stats %+v", got, b.N, st)
		}
	})
	b.Run("parser", func(b *testing.B) {
		var st l7.Stats
		ps := map[l7.Conn]l7.Parser{}
		off := map[l7.Conn]*[2]uint64{}
		chunks := make([]l7.Chunk, len(segs))
		parsers := make([]l7.Parser, len(segs))
		for i, s := range segs {
			if ps[s.Conn] == nil {
				ps[s.Conn] = http1.New(&st, http1.Options{})
				off[s.Conn] = &[2]uint64{}
			}
			o := off[s.Conn]
			chunks[i] = l7.Chunk{Dir: s.Dir, TimeNs: s.TimeNs, Offset: o[s.Dir], Len: s.Len, Head: s.Head}
			o[s.Dir] += uint64(s.Len)
			parsers[i] = ps[s.Conn]
		}
		got := 0
		emit := func(*l7.Exchange) { got++ }
		b.ReportAllocs()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			k := i % len(segs)
			if k == 0 && i > 0 {
				for c := range ps {
					ps[c].Close(emit)
					ps[c] = http1.New(&st, http1.Options{})
				}
				for j, s := range segs {
					parsers[j] = ps[s.Conn]
				}
			}
			parsers[k].Feed(&chunks[k], emit)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "segments/s")
		if got < b.N/2-len(segs) || st != (l7.Stats{}) {
			b.Fatalf("%d exchanges of %d segments, stats %v", got, b.N, st)
		}
	})
}
