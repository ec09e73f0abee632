package agent

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowbus/flowbus/agent/aggregate"
	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// BenchmarkBytesPerFlow reports what one second of the payments fleet costs
// on the bus per raw flow, at 1k and 10k flows/s: the agent's way (1 s
// aggregation, one message per partition per second as the 1 s linger
// makes it, Arrow IPC + zstd) beside Hubble's JSON export of the same raw
// flows (protojson of flow.Flow, one line each). Time is simulated: the
// figures do not depend on the machine.
func BenchmarkBytesPerFlow(b *testing.B) {
	for _, rate := range []int{1000, 10000} {
		b.Run("rate="+itoa(rate), func(b *testing.B) {
			g, err := synthetic.NewGenerator(synthetic.Config{Seed: 1, Rate: float64(rate), Start: time.Unix(1_700_000_000, 0)})
			if err != nil {
				b.Fatal(err)
			}
			raw := make([]schemas.Flow, rate)
			g.Fill(raw)
			var arrowBytes, jsonBytes, msgs int
			for b.Loop() {
				agg, _ := aggregate.New(aggregate.Config{}, nil)
				agg.Add(raw)
				parts := map[string][]schemas.Flow{}
				for _, r := range agg.Flush() {
					parts[r.PartitionKey()] = append(parts[r.PartitionKey()], r)
				}
				enc := flowcodec.NewEncoder()
				arrowBytes, msgs = 0, 0
				for _, p := range parts {
					v, err := enc.Encode(nil, p)
					if err != nil {
						b.Fatal(err)
					}
					arrowBytes += len(v)
					msgs++
				}
			}
			for i := range raw {
				j, err := protojson.Marshal(hubble.ToProto(&raw[i]))
				if err != nil {
					b.Fatal(err)
				}
				jsonBytes += len(j) + 1
			}
			b.ReportMetric(float64(arrowBytes)/float64(rate), "arrow-B/flow")
			b.ReportMetric(float64(jsonBytes)/float64(rate), "json-B/flow")
			b.ReportMetric(float64(jsonBytes)/float64(arrowBytes), "json/arrow")
			b.ReportMetric(float64(msgs), "msgs/s")
		})
	}
}

func itoa(n int) string {
	if n >= 1000 {
		return itoa(n/1000) + "k"
	}
	s := ""
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}
