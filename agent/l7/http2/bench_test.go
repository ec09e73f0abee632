package http2

import (
	"testing"

	"github.com/flowbus/flowbus/agent/l7"
)

const benchCalls = 500

// benchChunks is a recorded connection of benchCalls unary gRPC calls,
// chunked as the proxy read it, with heads of 256 bytes.
func benchChunks(b *testing.B) []l7.Chunk {
	b.Helper()
	t := &testing.T{}
	reads, _ := recordGRPC(t, benchCalls-3) // the recording adds a failed Check, a Watch and a Check
	if t.Failed() {
		b.Fatal("recording failed")
	}
	return splitReadsFixed(reads, 256)
}

// BenchmarkParser: the parser on a recorded gRPC connection; calls/s is
// the figure to compare with BenchmarkFloorFrameWalk.
func BenchmarkParser(b *testing.B) {
	cs := benchChunks(b)
	var st l7.Stats
	n := 0
	emit := func(*l7.Exchange) { n++ }
	b.ReportAllocs()
	for b.Loop() {
		n = 0
		p := New(&st, Options{})
		for i := range cs {
			p.Feed(&cs[i], emit)
		}
		p.Close(emit)
	}
	if n != benchCalls || st != (l7.Stats{}) {
		b.Fatalf("%d exchanges, stats %v", n, st)
	}
	b.ReportMetric(float64(benchCalls*b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkFloorFrameWalk walks the same chunks' frame headers and nothing
// else: the floor under any HTTP/2 parser of heads.
func BenchmarkFloorFrameWalk(b *testing.B) {
	cs := benchChunks(b)
	frames := 0
	b.ReportAllocs()
	for b.Loop() {
		frames = 0
		var next [2]uint64
		next[l7.FromClient] = uint64(len(preface))
		var hdr [2][9]byte
		var hn [2]int
		for i := range cs {
			c := &cs[i]
			d := c.Dir & 1
			end := c.Offset + uint64(c.Len)
			for next[d] < end {
				pos := next[d] - c.Offset
				if pos >= uint64(len(c.Head)) {
					b.Fatal("frame header not captured")
				}
				k := copy(hdr[d][hn[d]:], c.Head[pos:])
				hn[d] += k
				next[d] += uint64(k)
				if hn[d] == 9 {
					h := hdr[d]
					next[d] += uint64(h[0])<<16 | uint64(h[1])<<8 | uint64(h[2])
					hn[d] = 0
					frames++
				}
			}
		}
	}
	b.ReportMetric(float64(benchCalls*b.N)/b.Elapsed().Seconds(), "calls/s")
	b.ReportMetric(float64(frames), "frames/conn")
}
