package bench

import (
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/flowbus/flowbus/sinks/nats"
)

// BenchmarkAgentShapes runs the real agent binary on the synthetic
// payments fleet at 1k, 10k and 100k raw flows/s with its default export
// settings (aggregation in 1 s windows, messages per partition key, linger
// 1 s), pinned to one CPU with GOMAXPROCS=1, publishing to an embedded NATS
// JetStream in this process, for shapesRun of wall time. It reports:
//
//   - the agent's whole-process CPU per raw flow (/proc, every thread);
//
//   - the messages it published: records per raw flow, and the rows per
//     message (p10, p50, p90, max), the shapes the aggregators decode;
//
//   - the encoding, on exactly those messages (read back from the bus and
//     decoded), side by side on one locked thread: Arrow with the raw-storage
//     rule at 1000 rows (the default), at 250 rows, and never; proto binary
//     of the equivalent GetFlowsResponse (Hubble's gRPC stream); CPU per
//     record and bus bytes per raw flow, and bytes per raw flow of Hubble's
//     JSON export line (GetFlowsResponse as `hubble observe -o json` prints it,
//     without flowbus's extension fields) beside the bus bytes.
//
//     go test ./bench -run '^$' -bench AgentShapes -benchtime 1x -count 2
func BenchmarkAgentShapes(b *testing.B) {
	bin := buildFlowbus(b)
	for _, rate := range []int{1000, 10000, 100000} {
		b.Run("rate="+strconv.Itoa(rate), func(b *testing.B) {
			for range b.N {
				runShapes(b, bin, rate)
			}
		})
	}
}

const shapesRun = 12 * time.Second

// agentRun is what the real agent published in shapesRun at one rate.
type agentRun struct {
	batches  [][]schemas.Flow // every message's records, in the order read
	records  int
	raw      int           // raw flows the source made in the measured span
	cpu      time.Duration // the agent's whole-process CPU in that span
	wall     time.Duration
	messages int
}

// captureAgent runs the agent on the synthetic fleet at rate raw flows/s
// for shapesRun after its first message, then reads back every message it
// published.
func captureAgent(b *testing.B, bin string, rate int) agentRun {
	url := startBus(b, true)
	p := startAgentProc(b, bin, "--source", "synthetic", "--rate", strconv.Itoa(rate), "--seed", "3", "--bus", url, "--spool-dir", "off")
	// Warm-up: the stream made and the first windows out.
	deadline := time.Now().Add(time.Minute)
	for p.metric("flowbus_export_messages_total", "", "") == 0 {
		p.failIfExited(b, "starting")
		if time.Now().After(deadline) {
			b.Fatal("the agent published nothing in a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	raw0, cpu0, t0 := p.delivered(), p.cpu(b), time.Now()
	time.Sleep(shapesRun)
	r := agentRun{raw: p.delivered() - raw0, cpu: p.cpu(b) - cpu0, wall: time.Since(t0)}
	p.failIfExited(b, "running")
	r.messages = int(p.metric("flowbus_export_messages_total", "", ""))

	// Every message published so far, from the stream's start.
	cons, err := nats.NewConsumer(nats.ConsumerConfig{Conn: nats.Conn{URL: url}, Durable: "shapes"})
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Close()
	dec := flowcodec.NewDecoder()
	for _, d := range bustest.PollN(b, cons, r.messages, time.Minute) {
		fs, err := dec.Decode(nil, d.Value)
		if err != nil {
			b.Fatal(err)
		}
		r.batches = append(r.batches, fs)
		r.records += len(fs)
	}
	return r
}

func runShapes(b *testing.B, bin string, rate int) {
	ar := captureAgent(b, bin, rate)
	batches, records, raw, cpu, wall := ar.batches, ar.records, ar.raw, ar.cpu, ar.wall
	var err error
	var rows []int
	for _, fs := range batches {
		rows = append(rows, len(fs))
	}
	slices.Sort(rows)
	q := func(f float64) float64 { return float64(rows[min(len(rows)-1, int(f*float64(len(rows))))]) }
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(raw)/1000, "agent-cpu-µs/flow")
	b.ReportMetric(float64(raw)/wall.Seconds(), "raw-flows/s")
	b.ReportMetric(float64(records)/float64(raw), "records/flow")
	b.ReportMetric(q(0.1), "rows-p10")
	b.ReportMetric(q(0.5), "rows-p50")
	b.ReportMetric(q(0.9), "rows-p90")
	b.ReportMetric(float64(rows[len(rows)-1]), "rows-max")

	// The encodings of the same batches, each charged its own thread CPU.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	encs := []struct {
		name string
		enc  *flowcodec.Encoder
	}{{"arrow", flowcodec.NewEncoder()}, {"arrow-rule250", flowcodec.NewEncoderRawRule(250)}, {"arrow-norule", flowcodec.NewEncoderRawRule(0)}}
	resps := make([][]proto.Message, len(batches))
	jsonBytes := 0
	jopts := protojson.MarshalOptions{UseProtoNames: true}
	for i, fs := range batches {
		for j := range fs {
			r := response(&fs[j])
			resps[i] = append(resps[i], r) // with flowbus's extension: the same information as the Arrow row
			h := proto.Clone(r).(*observerpb.GetFlowsResponse)
			h.GetFlow().Extensions = nil // Hubble's own line
			line, err := jopts.Marshal(h)
			if err != nil {
				b.Fatal(err)
			}
			jsonBytes += len(line) + 1
		}
	}
	// Each batch is encoded by every encoder in turn, so that all see the
	// same machine state; a first round warms them up and is not counted.
	// The order rotates from batch to batch: the encoder that runs first
	// after another's finds the caches cold (at 1k flows/s, ~80-row
	// batches, the first of the three Arrow encoders, identical there,
	// cost twice the others when it always went first).
	// Rounds: at least 3, and enough for ~0.3 s of encoding in all (the
	// agent's messages at 1k flows/s take a few ms a round, where one GC or
	// preemption would be most of the figure).
	rounds := 3
	var buf []byte
	arrowCPU := map[string]time.Duration{}
	arrowBytes := map[string]int{}
	var protoCPU time.Duration
	protoBytes := 0
	opts := proto.MarshalOptions{}
	warm := flowtest.ThreadCPU()
	for round := 0; round <= rounds; round++ {
		count := round > 0
		if round == 1 {
			if d := flowtest.ThreadCPU() - warm; d > 0 {
				rounds = max(rounds, min(200, int(300*time.Millisecond/d)))
			}
			runtime.GC()
		}
		for i, fs := range batches {
			for k := range len(encs) + 1 {
				e := (i + k) % (len(encs) + 1)
				if e < len(encs) {
					t := flowtest.ThreadCPU()
					if buf, err = encs[e].enc.Encode(buf[:0], fs); err != nil {
						b.Fatal(err)
					}
					if count {
						arrowCPU[encs[e].name] += flowtest.ThreadCPU() - t
						if round == 1 {
							arrowBytes[encs[e].name] += len(buf)
						}
					}
					continue
				}
				t := flowtest.ThreadCPU()
				buf = buf[:0]
				for _, r := range resps[i] {
					buf = append(buf, 0, 0, 0, 0)
					if buf, err = opts.MarshalAppend(buf, r); err != nil {
						b.Fatal(err)
					}
				}
				if count {
					protoCPU += flowtest.ThreadCPU() - t
					if round == 1 {
						protoBytes += len(buf)
					}
				}
			}
		}
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(rounds) / float64(records) }
	for _, e := range encs {
		b.ReportMetric(per(arrowCPU[e.name]), e.name+"-cpu-ns/rec")
		b.ReportMetric(float64(arrowBytes[e.name])/float64(raw), e.name+"-B/flow")
		b.ReportMetric(float64(protoCPU)/float64(arrowCPU[e.name]), "proto/"+e.name+"-cpu")
	}
	b.ReportMetric(per(protoCPU), "proto-cpu-ns/rec")
	b.ReportMetric(float64(protoBytes)/float64(raw), "proto-B/flow")
	// Hubble's exporter writes a line per raw flow; a folded record's line
	// is a raw flow's (the same fields).
	line := float64(jsonBytes) / float64(records)
	b.ReportMetric(line, "hubble-json-B/flow")
	b.ReportMetric(line/(float64(arrowBytes["arrow"])/float64(raw)), "hubble-json/arrow-B")
}
