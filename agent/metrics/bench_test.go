package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkObserve is the pipeline's cost of the metrics tap per batch of
// 8 flows: only hubble_lost_events_total (the baseline), Cilium's usual
// metric set, and the same with source/destination workload context.
func BenchmarkObserve(b *testing.B) {
	flows := testFlows()
	for _, bc := range []struct{ name, spec string }{
		{"no flow metrics", ""},
		{"dns drop tcp flow port-distribution icmp httpV2", "dns drop tcp flow port-distribution icmp httpV2"},
		{"with workload context", "dns drop tcp flow:sourceContext=workload;destinationContext=workload port-distribution icmp httpV2:sourceContext=workload;destinationContext=workload"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m, err := New(Config{Metrics: []string{bc.spec}}, prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				m.Observe(flows)
			}
		})
	}
}
