package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"syscall"
	"testing"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/flowbus/flowbus/agent/aggregate"
	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
	"github.com/flowbus/flowbus/sinks/kafka"
)

// BenchmarkExportPath measures the agent's export path on the synthetic
// payments fleet: one second of raw flows at a given rate → aggregation
// (1 s window) → encoding of the folded records per partition key → publish
// to an in-process Kafka broker (kfake) with the real producer. The encoding
// is Arrow (flowbus), and the two baselines run on the same records in the
// same run: protojson of the equivalent GetFlowsResponse per record (what
// Hubble's JSON export costs) and length-delimited proto binary. A fourth
// case, hubble-export, is Hubble's exporter as it is: protojson of every raw
// flow, no aggregation.
//
// Reported per raw flow: cpu-ns/flow (process CPU, GC included; steadier
// than wall time on a shared machine) and bus-B/flow (message bytes).
//
//	go test ./bench -run '^$' -bench ExportPath -benchtime 20x
func BenchmarkExportPath(b *testing.B) {
	for _, rate := range []int{1000, 10000} {
		raw := make([]schemas.Flow, rate)
		g, err := synthetic.NewGenerator(synthetic.Config{Seed: 7, Rate: float64(rate), Start: time.Unix(1_764_000_000, 0)})
		if err != nil {
			b.Fatal(err)
		}
		g.Fill(raw)
		for _, enc := range []string{"arrow", "protojson", "protobin", "hubble-export"} {
			b.Run(fmt.Sprintf("rate=%d/encoding=%s", rate, enc), func(b *testing.B) {
				runExport(b, raw, enc)
			})
		}
	}
}

func runExport(b *testing.B, raw []schemas.Flow, enc string) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	defer cluster.Close()
	// The producer creates the topic as a deployment would, with
	// max.message.bytes = its batch limit: the broker default (1 MiB) is
	// below one full batch of the baselines' larger records.
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: cluster.ListenAddrs()},
		CreateTopic: true, Partitions: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	agg, err := aggregate.New(aggregate.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	arrow := flowcodec.NewEncoder()
	ctx := context.Background()
	var seq uint64
	var bytes int
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		recs := raw
		if enc != "hubble-export" {
			early := agg.Add(raw)
			recs = append(early, agg.Flush()...)
		}
		byKey := map[string][]schemas.Flow{}
		for _, r := range recs {
			k := r.PartitionKey()
			byKey[k] = append(byKey[k], r)
		}
		msgs := make([]schemas.Message, 0, len(byKey))
		bytes = 0
		emit := func(k string, rows int, v []byte) {
			seq++
			bytes += len(v)
			msgs = append(msgs, schemas.Message{Key: k, Node: "bench", Run: "bench", Seq: seq, Rows: rows, Value: v})
		}
		for k, rows := range byKey {
			var v []byte
			n := 0            // rows in v
			split := func() { // baselines: split messages by bytes under the bus limit, as the agent does
				if n++; len(v) > maxMessage {
					emit(k, n, v)
					v, n = nil, 0
				}
			}
			switch enc {
			case "arrow":
				if v, err = arrow.Encode(nil, rows); err != nil {
					b.Fatal(err)
				}
				n = len(rows)
			case "protojson", "hubble-export":
				for i := range rows {
					line, err := protojson.Marshal(response(&rows[i]))
					if err != nil {
						b.Fatal(err)
					}
					v = append(append(v, line...), '\n')
					split()
				}
			case "protobin":
				for i := range rows {
					m, err := proto.Marshal(response(&rows[i]))
					if err != nil {
						b.Fatal(err)
					}
					v = binary.AppendUvarint(v, uint64(len(m)))
					v = append(v, m...)
					split()
				}
			}
			if n > 0 {
				emit(k, n, v)
			}
		}
		if err := prod.Publish(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - cpu0
	n := float64(b.N) * float64(len(raw))
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/flow")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/flow")
	b.ReportMetric(float64(bytes)/float64(len(raw)), "bus-B/flow")
}

// maxMessage is the agent's default message limit (export.Config.MaxMessageBytes).
const maxMessage = 1008 << 10

func response(f *schemas.Flow) *observerpb.GetFlowsResponse {
	p := hubble.ToProto(f)
	return &observerpb.GetFlowsResponse{
		ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: p},
		NodeName:      p.GetNodeName(), Time: p.GetTime(),
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
