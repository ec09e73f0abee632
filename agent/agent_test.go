package agent

import (
	"context"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/aggregate"
	"github.com/flowbus/flowbus/agent/export"
	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
)

// bus is an in-process Publisher that decodes what it receives.
type bus struct {
	mu    sync.Mutex
	dec   *flowcodec.Decoder
	msgs  []schemas.Message
	flows []schemas.Flow
	err   error
}

func (b *bus) Publish(_ context.Context, msgs []schemas.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range msgs {
		var err error
		if b.flows, err = b.dec.Decode(b.flows, m.Value); err != nil && b.err == nil {
			b.err = err
		}
		b.msgs = append(b.msgs, m)
	}
	return nil
}

func (b *bus) Close() error { return nil }

// countingTap counts what the taps see and checks it runs on one goroutine at a time.
type countingTap struct {
	mu       sync.Mutex
	flows    int
	lost     map[flowpb.LostEventSource]uint64
	inFlight bool
	overlap  bool
}

func (c *countingTap) Observe(flows []schemas.Flow) {
	c.mu.Lock()
	if c.inFlight {
		c.overlap = true
	}
	c.inFlight = true
	c.flows += len(flows)
	c.inFlight = false
	c.mu.Unlock()
}

func (c *countingTap) Lost(s flowpb.LostEventSource, n uint64) {
	c.mu.Lock()
	if c.lost == nil {
		c.lost = map[flowpb.LostEventSource]uint64{}
	}
	c.lost[s] += n
	c.mu.Unlock()
}

func endpointKey(e *schemas.Endpoint) string {
	if e.Identity == 2 {
		return "reserved:world"
	}
	return e.Namespace + "/" + e.Workload
}

func runAgent(t *testing.T, ctx context.Context, src Source, agg aggregate.Config, taps ...Tap) (*bus, *prometheus.Registry) {
	t.Helper()
	b := &bus{dec: flowcodec.NewDecoder()}
	reg := prometheus.NewRegistry()
	a, err := New(Config{
		Node: "node-a", Source: src, Aggregate: agg,
		Export: export.Config{Linger: 50 * time.Millisecond},
	}, nil, reg, b, taps...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60 s")
	}
	if b.err != nil {
		t.Fatalf("a published message does not decode: %v", b.err)
	}
	return b, reg
}

func TestEverySyntheticFlowArrivesAggregatedAndExact(t *testing.T) {
	for _, disabled := range []bool{false, true} {
		name := map[bool]string{false: "with aggregation the folded counts add up to the generator's totals",
			true: "without aggregation every raw flow is published as is"}[disabled]
		t.Run(name, func(t *testing.T) {
			src, _ := synthetic.New(synthetic.Config{Seed: 42, Count: 30000, Start: time.Unix(1_700_000_000, 0)})
			tap := &countingTap{}
			b, reg := runAgent(t, context.Background(), src, aggregate.Config{Disabled: disabled}, tap)

			want := src.Totals()
			got := map[synthetic.Pair]synthetic.PairTotals{}
			var total uint64
			for i := range b.flows {
				f := &b.flows[i]
				p := synthetic.Pair{Src: endpointKey(&f.Src), Dst: endpointKey(&f.Dst), Verdict: f.Verdict, DropReason: f.DropReason}
				pt := got[p]
				pt.Flows += f.FlowCount()
				pt.BytesFwd += f.BytesFwd
				pt.BytesRev += f.BytesRev
				pt.PacketsFwd += f.PacketsFwd
				pt.PacketsRev += f.PacketsRev
				got[p] = pt
				total += f.FlowCount()
			}
			if total != 30000 || want.Flows != 30000 {
				t.Fatalf("published %d flows, generator made %d; want 30000", total, want.Flows)
			}
			for p, w := range want.Pairs {
				if got[p] != w {
					t.Errorf("pair %v: published %+v, generated %+v", p, got[p], w)
				}
			}
			if len(got) != len(want.Pairs) {
				t.Errorf("published %d pairs, generated %d", len(got), len(want.Pairs))
			}
			if disabled && len(b.flows) != 30000 {
				t.Errorf("%d records without aggregation, want 30000", len(b.flows))
			}
			if !disabled && len(b.flows) >= 30000 {
				t.Errorf("%d records with aggregation, want fewer than 30000", len(b.flows))
			}
			if tap.flows != 30000 || tap.overlap {
				t.Errorf("tap saw %d flows (overlapping calls: %v), want 30000 from one goroutine", tap.flows, tap.overlap)
			}
			for i, m := range b.msgs {
				if m.Seq != uint64(i+1) || m.Node != "node-a" {
					t.Fatalf("message %d: seq %d node %q, want seq %d node node-a", i, m.Seq, m.Node, i+1)
				}
			}
			stages := gatherStages(t, reg)
			wantStages := map[string]float64{
				"received/aggregate": 30000, "emitted/source": 30000,
				"emitted/aggregate": float64(len(b.flows)), "received/export": float64(len(b.flows)), "emitted/export": float64(len(b.flows)),
			}
			for k, v := range wantStages {
				if stages[k] != v {
					t.Errorf("stage counter %s = %v, want %v", k, stages[k], v)
				}
			}
		})
	}
}

// lossySource sends n flows in batches of 10 and reports a loss after each batch.
type lossySource struct{ n int }

func (l lossySource) Name() string { return "lossy" }
func (l lossySource) Run(ctx context.Context, out chan<- []schemas.Flow, lost LostFunc) error {
	for i := 0; i < l.n; i += 10 {
		b := make([]schemas.Flow, 10)
		for j := range b {
			b[j] = schemas.Flow{TimeNs: int64(i + j), Dst: schemas.Endpoint{Namespace: "ns", Workload: "w"}, DstPort: uint16(j)}
		}
		out <- b
		lost(flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, 3)
	}
	return nil
}

func TestLostEventsReachTapsAndCounters(t *testing.T) {
	tap := &countingTap{}
	b, reg := runAgent(t, context.Background(), lossySource{n: 100}, aggregate.Config{}, tap)
	if tap.lost[flowpb.LostEventSource_PERF_EVENT_RING_BUFFER] != 30 || tap.flows != 100 {
		t.Errorf("tap saw %d flows and lost %v, want 100 and 30 PERF_EVENT_RING_BUFFER", tap.flows, tap.lost)
	}
	if v := gatherStages(t, reg)["dropped/source/lost_perf_event_ring_buffer"]; v != 30 {
		t.Errorf("source dropped lost_perf_event_ring_buffer = %v, want 30", v)
	}
	var total uint64
	for i := range b.flows {
		total += b.flows[i].FlowCount()
	}
	if total != 100 {
		t.Errorf("published %d flows, want 100", total)
	}
}

func TestCancelFlushesEverythingDelivered(t *testing.T) {
	src, _ := synthetic.New(synthetic.Config{Seed: 1, Rate: 20000})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	b, _ := runAgent(t, ctx, src, aggregate.Config{Window: time.Hour})
	var total uint64
	for i := range b.flows {
		total += b.flows[i].FlowCount()
	}
	if want := src.Totals().Flows; total != want || want == 0 {
		t.Errorf("published %d flows after cancel, the source delivered %d", total, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for name, c := range map[string]Config{
		"a config without source is refused":  {Node: "n"},
		"a config without node is refused":    {Source: lossySource{}},
		"a bad aggregation window is refused": {Node: "n", Source: lossySource{}, Aggregate: aggregate.Config{Window: time.Microsecond}},
		"a negative export batch is refused":  {Node: "n", Source: lossySource{}, Export: export.Config{MaxRows: -1}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := c.Validate(); err == nil {
				t.Errorf("Validate(%+v) = nil, want error", c)
			}
		})
	}
}

// gatherStages returns the stage counters as "kind/stage[/reason]" → value.
func gatherStages(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	kinds := map[string]string{"flowbus_stage_received_total": "received", "flowbus_stage_emitted_total": "emitted", "flowbus_stage_dropped_total": "dropped"}
	for _, mf := range mfs {
		kind, ok := kinds[mf.GetName()]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			k := kind + "/" + labels["stage"]
			if r, ok := labels["reason"]; ok {
				k += "/" + r
			}
			out[k] = m.GetCounter().GetValue()
		}
	}
	return out
}
