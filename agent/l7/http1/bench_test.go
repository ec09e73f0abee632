package http1

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/flowbus/flowbus/agent/l7"
)

// benchChunks is a keep-alive connection of n exchanges as a Go client
// and server send them: a request per chunk, a response per chunk with a
// 1 KiB body, heads cut at 256 bytes.
func benchChunks(n int) []l7.Chunk {
	var cs []l7.Chunk
	var off [2]uint64
	add := func(d l7.Direction, t int64, msg []byte, body int) {
		head := msg[:min(len(msg), 256)]
		cs = append(cs, l7.Chunk{Dir: d, TimeNs: t, Offset: off[d], Len: uint32(len(msg) + body), Head: head})
		off[d] += uint64(len(msg) + body)
	}
	for i := range n {
		req := fmt.Sprintf("GET /api/v1/orders/%d?expand=items HTTP/1.1\r\nHost: orders.payments.svc:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\r\n", i)
		resp := "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Type: application/json\r\nDate: Sun, 06 Dec 2026 04:51:22 GMT\r\n\r\n"
		add(l7.FromClient, int64(2*i+1), []byte(req), 0)
		add(l7.FromServer, int64(2*i+2), []byte(resp), 1024)
	}
	return cs
}

// BenchmarkParse: one op is one exchange (a request chunk and a response
// chunk) through the parser; "floor" is the least any parser does with
// them: finding each header's end (bytes.Index of CRLFCRLF in the head).
func BenchmarkParse(b *testing.B) {
	const n = 1024
	cs := benchChunks(n)
	b.Run("parser", func(b *testing.B) {
		var st l7.Stats
		p := New(&st, Options{})
		got := 0
		emit := func(*l7.Exchange) { got++ }
		b.ReportAllocs()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			k := i % n
			if k == 0 && i > 0 {
				p.Close(emit)
			}
			p.Feed(&cs[2*k], emit)
			p.Feed(&cs[2*k+1], emit)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		if got < b.N-n || st != (l7.Stats{}) {
			b.Fatalf("%d exchanges of %d, stats %v", got, b.N, st)
		}
	})
	b.Run("floor", func(b *testing.B) {
		found := 0
		start := time.Now()
		for i := 0; i < b.N; i++ {
			k := i % n
			found += min(1, bytes.Index(cs[2*k].Head, crlfcrlf)+1)
			found += min(1, bytes.Index(cs[2*k+1].Head, crlfcrlf)+1)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		if found != 2*b.N {
			b.Fatal("floor")
		}
	})
}
