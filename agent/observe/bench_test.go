package observe

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"

	"github.com/flowbus/flowbus/schemas"
)

// BenchmarkFollowDelay measures how long a flow written by the pipeline
// takes to reach a following gRPC client on loopback, and reports the p50
// and p99 delays in milliseconds (target: p99 ≤ 100 ms).
func BenchmarkFollowDelay(b *testing.B) {
	r := NewRing(4096, nil)
	f := fixtureFlows()[0]
	r.Observe([]schemas.Flow{f})
	c, _ := startServer(b, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Number 1 with follow starts at the flow already there, so the stream is
	// known to be in place once that flow arrived.
	stream, err := c.GetFlows(ctx, &observerpb.GetFlowsRequest{Follow: true, Number: 1})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		b.Fatal(err)
	}
	delays := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.UUID = fmt.Sprint(i)
		start := time.Now()
		r.Observe([]schemas.Flow{f})
		resp, err := stream.Recv()
		if err != nil {
			b.Fatal(err)
		}
		delays = append(delays, time.Since(start))
		if resp.GetFlow().GetUuid() != f.UUID {
			b.Fatalf("got flow %q, want %q", resp.GetFlow().GetUuid(), f.UUID)
		}
	}
	b.StopTimer()
	slices.Sort(delays)
	q := func(p float64) float64 { return float64(delays[int(p*float64(len(delays)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkRingObserve is the pipeline's cost of the tap: a batch of 64
// flows into the ring, with no follower (the baseline) and with a follower
// that never reads (it must cost the same: writes never wait for readers).
func BenchmarkRingObserve(b *testing.B) {
	batch := make([]schemas.Flow, 64)
	for i := range batch {
		batch[i] = fixtureFlows()[i%10]
	}
	b.Run("no followers", func(b *testing.B) {
		r := NewRing(4096, nil)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r.Observe(batch)
		}
	})
	b.Run("one stalled follower", func(b *testing.B) {
		r := NewRing(4096, nil)
		c, _ := startServer(b, r)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if _, err := c.GetFlows(ctx, &observerpb.GetFlowsRequest{Follow: true}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r.Observe(batch)
		}
	})
}
