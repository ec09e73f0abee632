package bench

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/nats"
)

// BenchmarkAggregatorBacklog runs the real `flowbus aggregator` binary
// (pinned to one CPU, GOMAXPROCS=1) draining a backlog from an embedded
// NATS JetStream in the benchmark's process, and reports its whole-process
// CPU per row until it has exited after SIGTERM: decode, rollups, windows
// closed, Parquet written (--raw-flows off, as by default) and offsets
// committed. The backlog is the real agent's messages at 1k, 10k and 100k
// raw flows/s (captureAgent, as BenchmarkAgentShapes), the same batches
// published again with their times moved on by the capture's span until
// there are at least 400,000 rows: the aggregator decodes the messages, the
// sizes and the record mix the agent sends.
//
//	go test ./bench -run '^$' -bench AggregatorBacklog -benchtime 1x -count 2
//
// FLOWBUS_BENCH_AGGREGATORS=before=/tmp/old,after=/tmp/new runs each of
// those aggregator binaries in turn on the same captured backlog (the agent
// is the tree's), as sub-benchmarks bin=before and bin=after, to compare two
// builds back to back on one machine's load; FLOWBUS_BENCH_CPUPROFILE=DIR
// writes each run's CPU profile there (the aggregator's --cpuprofile).
func BenchmarkAggregatorBacklog(b *testing.B) {
	bin := buildFlowbus(b)
	type aggBin struct{ name, path string }
	var aggs []aggBin
	for _, s := range strings.Split(os.Getenv("FLOWBUS_BENCH_AGGREGATORS"), ",") {
		if name, path, ok := strings.Cut(s, "="); ok {
			aggs = append(aggs, aggBin{name, path})
		}
	}
	for _, rate := range []int{1000, 10000, 100000} {
		b.Run("rate="+strconv.Itoa(rate), func(b *testing.B) {
			msgs, rows := backlog(b, captureAgent(b, bin, rate), 400_000)
			if len(aggs) == 0 {
				b.ResetTimer() // the agent's capture is not the aggregator's time
				for range b.N {
					runAggregatorBacklog(b, bin, msgs, rows)
				}
				return
			}
			for _, agg := range aggs {
				b.Run("bin="+agg.name, func(b *testing.B) {
					for range b.N {
						runAggregatorBacklog(b, agg.path, msgs, rows)
					}
				})
			}
		})
	}
}

// backlog repeats the agent's batches, each round's times moved on by the
// span they cover, until they hold at least minRows records, encoded as the
// agent encodes them.
func backlog(b *testing.B, ar agentRun, minRows int) ([]schemas.Message, int) {
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, fs := range ar.batches {
		for i := range fs {
			lo, hi = min(lo, fs[i].TimeNs), max(hi, fs[i].TimeNs)
		}
	}
	span := hi - lo + int64(time.Second)
	enc := flowcodec.NewEncoder()
	var msgs []schemas.Message
	var sizes []int
	rows := 0
	for round := int64(0); rows < minRows; round++ {
		for _, fs := range ar.batches {
			moved := slices.Clone(fs)
			for i := range moved {
				moved[i].TimeNs += round * span
				if moved[i].FirstSeenNs != 0 {
					moved[i].FirstSeenNs += round * span
				}
				if moved[i].LastSeenNs != 0 {
					moved[i].LastSeenNs += round * span
				}
			}
			v, err := enc.Encode(nil, moved)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, schemas.Message{Key: moved[0].PartitionKey(), Node: "bench", Run: "backlog", Seq: uint64(len(msgs) + 1),
				Rows: len(moved), FirstTS: moved[0].TimeNs, LastTS: moved[len(moved)-1].TimeNs, Value: v})
			sizes = append(sizes, len(moved))
			rows += len(moved)
		}
	}
	slices.Sort(sizes)
	b.ReportMetric(float64(sizes[len(sizes)/2]), "rows-p50")
	b.ReportMetric(float64(sizes[len(sizes)*9/10]), "rows-p90")
	return msgs, rows
}

func runAggregatorBacklog(b *testing.B, bin string, msgs []schemas.Message, rows int) {
	b.StopTimer()
	url := startBus(b, true)
	pub, err := nats.NewPublisher(nats.PublisherConfig{Conn: nats.Conn{URL: url}})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < len(msgs); i += 500 {
		if err := pub.Publish(context.Background(), msgs[i:min(i+500, len(msgs))]); err != nil {
			b.Fatal(err)
		}
	}
	pub.Close()

	metrics := freePort(b)
	t0 := time.Now()
	b.StartTimer()
	args := []string{"aggregator", "--bus", url, "--data-dir", filepath.Join(b.TempDir(), "out"), "--metrics-address", metrics}
	if dir := os.Getenv("FLOWBUS_BENCH_CPUPROFILE"); dir != "" {
		args = append(args, "--cpuprofile", filepath.Join(dir, strings.ReplaceAll(b.Name(), "/", "_")+".pprof"))
	}
	p := startProc(b, bin, "1", "aggregator", args...)
	p.metrics = metrics
	deadline := time.Now().Add(5 * time.Minute)
	for int(p.metric("flowbus_aggregator_flow_rows_total", "", "")) < rows {
		p.failIfExited(b, "draining")
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(p.log)
			b.Fatalf("the aggregator decoded %v of %d rows in 5 minutes\n%s", p.metric("flowbus_aggregator_flow_rows_total", "", ""), rows, log)
		}
		time.Sleep(100 * time.Millisecond) // each scrape costs the aggregator CPU
	}
	drained := time.Since(t0)
	cpuDrained := p.cpu(b)
	rss := p.hwm(b)
	// The CPU clock of a process that has exited is in its rusage.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	b.StopTimer()
	ru, _ := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := cpuDrained
	if ru != nil {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if !p.cmd.ProcessState.Success() {
		log, _ := os.ReadFile(p.log)
		b.Fatalf("the aggregator exited %v\n%s", p.cmd.ProcessState, log)
	}
	b.ReportMetric(float64(rows)/cpu.Seconds(), "rows/cpu-s")
	b.ReportMetric(float64(rows)/cpuDrained.Seconds(), "rows/cpu-s-drained")
	b.ReportMetric(float64(rows)/drained.Seconds(), "rows/s")
	b.ReportMetric(float64(len(msgs)), "messages")
	b.ReportMetric(rss, "rss-MB")
}
