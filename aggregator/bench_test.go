package aggregator

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/parquet"
)

// benchMessages encodes 200,000 generated flows into messages of at most
// per flows, with one encoder, cut as shape says.
func benchMessages(b *testing.B, per int, shape benchShape) ([]schemas.Message, int) {
	b.Helper()
	g := generate(11, 200_000, shape.span, 0)
	var gms []genMessage
	if shape.byKey {
		gms = splitByKey(g.flows, per)
	} else {
		gms = split(g.flows, 1, per)
	}
	msgs := encodeAll(b, gms)
	return msgs, len(g.flows)
}

// benchShape is how the benchmark's messages are cut.
type benchShape struct {
	name  string
	span  time.Duration // event time the 200,000 flows cover
	byKey bool          // one destination workload per message
}

// benchShapes: "agent" is what agents send when throughput matters
// (export batches per partition key, the destination workload, each full
// well within its 1 s linger; 200,000 flows in 2 s of event time, so no
// window closes during a pass); "mixed" puts every destination in each
// message and spreads the flows over 10 minutes, so that a window closes
// every ~20,000 rows and its pairs and routes are built again: a harder
// case than any agent produces.
var benchShapes = []benchShape{
	{name: "agent", span: 2 * time.Second, byKey: true},
	{name: "mixed", span: 10 * time.Minute},
}

// splitByKey groups flows into messages of at most per flows per partition
// key, in the order they fill, as the agent's exporter does; the partly
// filled ones follow (as the linger would send them).
func splitByKey(flows []schemas.Flow, per int) []genMessage {
	var out []genMessage
	cur := map[string][]schemas.Flow{}
	var keys []string
	for _, f := range flows {
		k := f.PartitionKey()
		fs, seen := cur[k]
		if !seen {
			keys = append(keys, k)
		}
		fs = append(fs, f)
		if len(fs) == per {
			out = append(out, genMessage{0, fs})
			fs = nil
		}
		cur[k] = fs
	}
	for _, k := range keys {
		if fs := cur[k]; len(fs) > 0 {
			out = append(out, genMessage{0, fs})
		}
	}
	return out
}

// benchRows are the message sizes of the decode and rollup benchmarks: a
// mid-size message, and the agent's full batch (export's default row cap),
// which is what agents send when throughput matters and at which the
// encoder stores incompressible buffers raw (internal/flowcodec/doc.go).
var benchRows = []int{1000, 8192}

// benchRun folds messages i = 0..b.N-1 (cycling) into one partition as
// the aggregator does (a.decode: DecodeEach with the rollup's projection);
// windows the watermark passes are discarded instead of written, so that
// the figure is decode + rollup alone. decode and fold select the stages:
// decode alone hands each row to a no-op; fold alone folds flows decoded
// (with the same projection) before the timer starts.
func benchRun(b *testing.B, decode, fold bool) {
	for _, per := range benchRows {
		for _, sh := range benchShapes {
			b.Run(fmt.Sprintf("rows=%d/msgs=%s", per, sh.name), func(b *testing.B) { benchRunPer(b, per, sh, decode, fold) })
		}
	}
}

func benchRunPer(b *testing.B, per int, shape benchShape, decode, fold bool) {
	msgs, _ := benchMessages(b, per, shape)
	a, _ := newTestAggregator(b, Config{Out: b.TempDir()})
	if err := a.Assign(0); err != nil {
		b.Fatal(err)
	}
	ps := a.parts[0]
	proj, err := flowcodec.NewProjection(rollupColumns...)
	if err != nil {
		b.Fatal(err)
	}
	// The rollup-only baseline folds flows decoded beforehand (about 180 MB
	// of records); the other cases do not build them, so that the garbage
	// collector does not scan memory an aggregator would not hold.
	var pre [][]schemas.Flow
	if !decode {
		dec := flowcodec.NewDecoder()
		pre = make([][]schemas.Flow, len(msgs))
		for i := range msgs {
			if pre[i], err = dec.DecodeProjected(nil, msgs[i].Value, proj); err != nil {
				b.Fatal(err)
			}
		}
	}
	rows := 0
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		k := i % len(msgs)
		if k == 0 && i > 0 {
			// A new pass over the same event times: start the partition afresh.
			ps = newPartition(0, nil)
		}
		m := bus.Delivery{Partition: 0, Offset: int64(i)}
		var closed bool
		switch {
		case decode && fold:
			fo := ps.begin(a, &m)
			n, err := a.decode(msgs[k].Value, fo.add)
			if err != nil {
				b.Fatal(err)
			}
			closed = fo.end()
			rows += n
		case decode:
			n, err := a.decode(msgs[k].Value, func(*schemas.Flow) {})
			if err != nil {
				b.Fatal(err)
			}
			rows += n
		default:
			closed = ps.add(a, pre[k], &m)
			rows += len(pre[k])
		}
		if closed {
			for _, bk := range ps.closable(a.window, false) {
				delete(ps.open, bk)
			}
		}
	}
	reportRows(b, rows, cpu0)
}

// reportRows stops the timer and reports rows per second of wall time and
// of process CPU time since cpu0 (GC included: on a shared machine
// steadier than wall time).
func reportRows(b *testing.B, rows int, cpu0 time.Duration) {
	b.StopTimer()
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(rows)/(cpuTime()-cpu0).Seconds(), "rows/cpu-s")
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecodeRollup is Arrow decode + window/pair/route rollup of
// messages of 1000 and 8192 flows on one goroutine; its baselines are the
// two stages alone.
func BenchmarkDecodeRollup(b *testing.B) { benchRun(b, true, true) }

// BenchmarkDecodeOnly is the decode stage of BenchmarkDecodeRollup alone.
func BenchmarkDecodeOnly(b *testing.B) { benchRun(b, true, false) }

// BenchmarkRollupOnly is the rollup stage of BenchmarkDecodeRollup alone.
func BenchmarkRollupOnly(b *testing.B) { benchRun(b, false, true) }

// benchPairRows returns n pair_rollup rows shaped like a busy window's:
// a few hundred workloads, real histograms.
func benchPairRows(n int) []schemas.PairRollup {
	g := generate(12, 20_000, time.Minute, 0)
	a := &Aggregator{cfg: Config{}.withDefaults(), tpl: newTemplater(128, nil)}
	bk := newBucket(genStart, false, 0)
	for i := range g.flows {
		f := g.flows[i]
		f.Src.Workload = fmt.Sprintf("%s-%d", f.Src.Workload, i%300)
		bk.add(&f, a)
	}
	base := bk.pairRows()
	rows := make([]schemas.PairRollup, n)
	for i := range rows {
		rows[i] = base[i%len(base)]
		rows[i].DstPort += int32(i / len(base))
	}
	return rows
}

// BenchmarkParquetWrite writes 100,000 pair_rollup rows per file (zstd,
// dictionaries), without and with the fsyncs of the commit protocol.
func BenchmarkParquetWrite(b *testing.B) {
	rows := benchPairRows(100_000)
	for _, sync := range []bool{false, true} {
		name := "nosync"
		if sync {
			name = "fsync"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			var bytes int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				st, err := parquet.WriteFile(filepath.Join(dir, "bench.parquet"), rows, parquet.Options{NoSync: !sync})
				if err != nil {
					b.Fatal(err)
				}
				bytes += st.Bytes
			}
			b.StopTimer()
			s := b.Elapsed().Seconds()
			b.ReportMetric(float64(len(rows)*b.N)/s, "rows/s")
			b.ReportMetric(float64(bytes)/s/1e6, "MB/s")
			b.ReportMetric(float64(bytes)/float64(b.N*len(rows)), "B/row")
			os.Remove(filepath.Join(dir, "bench.parquet"))
		})
	}
}
