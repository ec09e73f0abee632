package observer

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
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

// BenchmarkGetFlowsIncidentQuery is `observe --to-pod data/redis --verdict
// DROPPED` (last 20) over a full ring of 4096 flows where one in ten
// matches, beside the same request without a filter as the baseline.
func BenchmarkGetFlowsIncidentQuery(b *testing.B) {
	r := NewRing(4096, nil)
	fx := fixtureFlows()
	batch := make([]schemas.Flow, 0, 4096)
	for i := 0; i < 4096; i++ {
		f := fx[i%10]
		f.UUID = fmt.Sprint(i)
		batch = append(batch, f)
	}
	r.Observe(batch)
	c, _ := startServer(b, r)
	filtered := &observerpb.GetFlowsRequest{Number: 20, Whitelist: []*flowpb.FlowFilter{{
		DestinationPod: []string{"data/redis"}, Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}}}
	for _, bc := range []struct {
		name string
		req  *observerpb.GetFlowsRequest
	}{{"no filter", &observerpb.GetFlowsRequest{Number: 20}}, {"to-pod and verdict", filtered}} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				s, err := c.GetFlows(context.Background(), bc.req)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					if _, err := s.Recv(); err != nil {
						break
					}
					n++
				}
				if n != 20 {
					b.Fatalf("got %d flows, want 20", n)
				}
			}
		})
	}
}
