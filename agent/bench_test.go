package agent

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/aggregate"
	"github.com/flowbus/flowbus/agent/export"
	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/schemas"
	flowbusnats "github.com/flowbus/flowbus/sinks/nats"
)

// replaySource sends count flows cycled from a pre-generated set, restamped,
// so that a benchmark measures the agent's path rather than the generator.
type replaySource struct {
	flows []schemas.Flow
	count int
	batch int
	free  chan []schemas.Flow
}

func (r replaySource) Recycle(b []schemas.Flow) {
	select {
	case r.free <- b:
	default:
	}
}

func (r replaySource) Name() string { return "replay" }

func (r replaySource) Run(ctx context.Context, out chan<- []schemas.Flow, _ LostFunc) error {
	now := time.Now().UnixNano()
	j := 0
	for sent := 0; sent < r.count; {
		n := min(r.batch, r.count-sent)
		var b []schemas.Flow
		select {
		case b = <-r.free:
		default:
			b = make([]schemas.Flow, r.batch)
		}
		b = b[:n]
		for i := range b {
			b[i] = r.flows[j]
			b[i].TimeNs = now + int64(sent+i)
			if j++; j == len(r.flows) {
				j = 0
			}
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return nil
		}
		sent += n
	}
	return nil
}

func syntheticFlows(b *testing.B, n int) []schemas.Flow {
	g, err := synthetic.NewGenerator(synthetic.Config{Seed: 1, Start: time.Unix(1_700_000_000, 0)})
	if err != nil {
		b.Fatal(err)
	}
	flows := make([]schemas.Flow, n)
	g.Fill(flows)
	return flows
}

// cpuTime is the CPU time this process used so far (user + system), the
// fair measure on a shared machine where wall time includes waiting for a core.
// With -cpu 1, events/cpu-s is the rate one core sustains (GC included).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type discard struct{ msgs, bytes int }

func (d *discard) Publish(_ context.Context, msgs []schemas.Message) error {
	for i := range msgs {
		d.msgs++
		d.bytes += len(msgs[i].Value)
	}
	return nil
}
func (d *discard) Close() error { return nil }

// BenchmarkAgent measures raw flows per second through the whole agent path:
// replayed synthetic flows → aggregation (1 s windows) → batching → Arrow
// encode → publish. The source=synthetic case generates the flows live
// instead, so it includes the generator's own cost. Run it with -cpu 1 for the one-core figure. The
// in-process broker is an embedded NATS JetStream server (sinks/nats), and the
// baseline beside it publishes to a Publisher that discards, so the two
// figures separate the agent's cost from the broker's.
func BenchmarkAgent(b *testing.B) {
	flows := syntheticFlows(b, 1<<16)
	replay := func(n int) Source {
		// Batches of the eBPF source's size (ebpf.DefaultBatchSize, not
		// imported: that package builds on Linux only): a batch of 880-byte
		// records should stay in cache between the source and the aggregator.
		return replaySource{flows: flows, count: n, batch: 512, free: make(chan []schemas.Flow, 32)}
	}
	run := func(b *testing.B, pub export.Publisher, agg aggregate.Config, source ...Source) {
		reg := prometheus.NewRegistry()
		src := replay(b.N)
		if len(source) > 0 {
			src = source[0]
		}
		a, err := New(Config{Node: "node-a", Source: src, Aggregate: agg}, nil, reg, pub)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cpuTime()
		if err := a.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		cpu := cpuTime() - cpu0
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
		b.ReportMetric(metric(nil, reg, "flowbus_export_messages_total"), "msgs")
	}
	b.Run("aggregate/publish=discard", func(b *testing.B) { run(b, &discard{}, aggregate.Config{}) })
	b.Run("aggregate/publish=nats-embedded", func(b *testing.B) {
		srv, url, err := flowbusnats.StartEmbedded(filepath.Join(b.TempDir(), "js"), -1)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		pub, err := flowbusnats.NewPublisher(flowbusnats.PublisherConfig{Conn: flowbusnats.Conn{URL: url}})
		if err != nil {
			b.Fatal(err)
		}
		defer pub.Close()
		run(b, pub, aggregate.Config{})
	})
	b.Run("no-aggregation/publish=discard", func(b *testing.B) { run(b, &discard{}, aggregate.Config{Disabled: true}) })
	b.Run("source=synthetic/aggregate/publish=discard", func(b *testing.B) {
		src, err := synthetic.New(synthetic.Config{Seed: 1, Count: uint64(b.N)})
		if err != nil {
			b.Fatal(err)
		}
		run(b, &discard{}, aggregate.Config{}, src)
	})
}
