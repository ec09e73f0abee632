package ocsf

import (
	"encoding/json"
	"testing"

	"github.com/flowbus/flowbus/internal/flowtest"
)

// BenchmarkAppend encodes fleet records; the json.Marshal sub-benchmark is
// the floor it is measured beside: a map with the same event's fields.
func BenchmarkAppend(b *testing.B) {
	flows := flowtest.Fleet(1, 4096)
	b.Run("encoder", func(b *testing.B) {
		var enc Encoder
		var buf []byte
		n := 0
		for i := 0; b.Loop(); i++ {
			var err error
			buf, err = enc.Append(buf[:0], &flows[i%len(flows)])
			if err != nil {
				b.Fatal(err)
			}
			n += len(buf)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.SetBytes(int64(n / b.N))
	})
	b.Run("json.Marshal-map", func(b *testing.B) {
		var enc Encoder
		events := make([]map[string]any, 64)
		for i := range events {
			buf, _ := enc.Append(nil, &flows[i])
			if err := json.Unmarshal(buf, &events[i]); err != nil {
				b.Fatal(err)
			}
		}
		n := 0
		for i := 0; b.Loop(); i++ {
			buf, err := json.Marshal(events[i%len(events)])
			if err != nil {
				b.Fatal(err)
			}
			n += len(buf)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.SetBytes(int64(n / b.N))
	})
}
