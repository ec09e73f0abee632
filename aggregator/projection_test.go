package aggregator

import (
	"reflect"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
)

// TestProjectionCoversTheRollup folds the same messages twice, decoded in
// full and decoded with the aggregator's projection (rollupColumns): every
// pair and route row must be equal, so no field the rollup reads is left
// out of the projection. The flows cover every L7 protocol, drops, late
// records, endpoints known by pod name only and flows that carry a
// latency histogram (an agent's aggregated records).
func TestProjectionCoversTheRollup(t *testing.T) {
	g := generate(31, 20_000, 3*time.Minute, 50)
	for i := range g.flows {
		f := &g.flows[i]
		if i%5 == 0 {
			f.Dst.Workload = "" // the rollup falls back to the pod name
		}
		if i%7 == 0 {
			f.Count = 3
			f.LatencyHist = schemas.Histogram{{Index: schemas.HistBucket(f.LatencyNs), Count: 2}, {Index: 400, Count: 1}}
		}
	}
	msgs := encodeAll(t, split(g.flows, 1, 1000))
	a, _ := newTestAggregator(t, Config{Out: t.TempDir()})
	proj, err := flowcodec.NewProjection(rollupColumns...)
	if err != nil {
		t.Fatal(err)
	}
	dec := flowcodec.NewDecoder()
	fold := func(project bool) *partition {
		ps := newPartition(0, nil)
		var flows []schemas.Flow
		for i, m := range msgs {
			var err error
			if project {
				flows, err = dec.DecodeProjected(flows[:0], m.Value, proj)
			} else {
				flows, err = dec.Decode(flows[:0], m.Value)
			}
			if err != nil {
				t.Fatal(err)
			}
			ps.add(a, flows, &bus.Delivery{Partition: 0, Offset: int64(i)})
		}
		return ps
	}
	full, projected := fold(false), fold(true)
	if len(full.open) < 4 {
		t.Fatalf("only %d buckets: the test needs several windows", len(full.open))
	}
	routes := 0
	for k, fb := range full.open {
		pb := projected.open[k]
		if pb == nil {
			t.Fatalf("bucket %v missing from the projected fold", k)
		}
		if !reflect.DeepEqual(fb.pairRows(), pb.pairRows()) {
			t.Fatalf("bucket %v: pair rows differ", k)
		}
		if !reflect.DeepEqual(fb.routeRows(), pb.routeRows()) {
			t.Fatalf("bucket %v: route rows differ", k)
		}
		routes += len(fb.routes)
	}
	if len(projected.open) != len(full.open) || routes == 0 {
		t.Fatalf("%d buckets projected, %d full, %d route rows", len(projected.open), len(full.open), routes)
	}
}
