package kafka

import (
	"encoding/binary"
	"testing"

	"github.com/flowbus/flowbus/agent/l7"
)

// benchConversation is one connection of 1000 requests (produce of 1 KiB
// records, fetch, metadata, in turns) and their responses, cut into
// 1448-byte segments with 256-byte heads, the client's and the server's
// chunks interleaved as a client waiting for each answer sends them.
func benchConversation() (cs []l7.Chunk, requests int) {
	var segs []seg
	for i := range int32(1000) {
		switch i % 3 {
		case 0:
			segs = append(segs, seg{l7.FromClient, int64(2 * i), reqFrame(produceReq(9, -1, 1024, "orders"), i)},
				seg{l7.FromServer, int64(2*i + 1), respFrame(produceResp(9, 0, "orders"), i)})
		case 1:
			segs = append(segs, seg{l7.FromClient, int64(2 * i), reqFrame(fetchReq(12, "orders"), i)},
				seg{l7.FromServer, int64(2*i + 1), respFrame(fetchResp(12, 0, "orders"), i)})
		default:
			segs = append(segs, seg{l7.FromClient, int64(2 * i), reqFrame(metadataReq(9, "orders"), i)},
				seg{l7.FromServer, int64(2*i + 1), respFrame(metadataResp(9, 0, "orders"), i)})
		}
	}
	return chunks(segs, 1448, 256), 1000
}

// BenchmarkParser is the parser on one core, in requests (and their
// responses) a second.
func BenchmarkParser(b *testing.B) {
	cs, n := benchConversation()
	var st l7.Stats
	exchanges := 0
	emit := func(*l7.Exchange) { exchanges++ }
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p := New(&st, Options{})
		for i := range cs {
			p.Feed(&cs[i], emit)
		}
		p.Close(emit)
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "req/s")
	if exchanges != n*b.N || st != (l7.Stats{}) {
		b.Fatalf("%d exchanges, stats %v", exchanges, st)
	}
}

// BenchmarkFloor only walks the frame lengths of the same chunks: the cost
// of following Kafka's framing at all.
func BenchmarkFloor(b *testing.B) {
	cs, n := benchConversation()
	frames := 0
	b.ResetTimer()
	for range b.N {
		var next [2]uint64
		for i := range cs {
			c := &cs[i]
			for end := c.Offset + uint64(c.Len); next[c.Dir] < end; {
				at := next[c.Dir] - c.Offset // frames start in heads here
				next[c.Dir] += 4 + uint64(binary.BigEndian.Uint32(c.Head[at:]))
				frames++
			}
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "req/s")
	if frames != 2*n*b.N {
		b.Fatalf("%d frames", frames)
	}
}
