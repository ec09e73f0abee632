package hubblegrpc

import (
	"context"
	"syscall"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/internal/hubbletest"
	"github.com/flowbus/flowbus/schemas"
)

// BenchmarkSource is the source alone: a cluster's Hubble events, encoded
// once, replayed by a local gRPC server and received, converted, counted
// and batched by Run; the batches are dropped. cpu-ns/flow is this
// process's CPU (the replaying server's share included, a few percent).
// The whole agent as a process: bench/ (BenchmarkHubbleSource).
func BenchmarkSource(b *testing.B) {
	events := hubbletest.Flows(hubbletest.NewCluster(3, epoch, "node-a").NextEvents(20_000))
	encoded, err := hubbletest.Encode(events)
	if err != nil {
		b.Fatal(err)
	}
	addr, stop, err := hubbletest.Replay(encoded, b.N)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	src, err := New(Config{Server: addr}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	out := make(chan []schemas.Flow, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cpu0 := cpuTime()
	b.ResetTimer()
	go func() { done <- src.Run(ctx, out, func(flowpb.LostEventSource, uint64) {}) }()
	for n := 0; n < b.N; {
		select {
		case batch := <-out:
			n += len(batch)
		case <-time.After(10 * time.Second):
			b.Fatalf("%d of %d flows", n, b.N)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/flow")
	cancel()
	go func() {
		for range out {
		}
	}()
	<-done
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
