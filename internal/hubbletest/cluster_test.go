package hubbletest

import (
	"fmt"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/proto"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Over a realistic stream (the fleet's connections as three nodes' Hubble
// reports them, through the wire form), the count-once rule counts exactly
// the events this package marks as carrying their connection: one per
// connection and one per L7 exchange; everything else counts nothing, or
// traffic only.
func TestCountAsCountsEachConnectionOnceOnAClusterStream(t *testing.T) {
	c := NewCluster(5, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), "node-0", "node-1", "node-2")
	events := c.Next(5000)
	kinds := map[string]int{}
	var counted, opened int
	for i := range events {
		e := &events[i]
		b, err := proto.Marshal(hubble.ToProto(&e.Flow))
		if err != nil {
			t.Fatal(err)
		}
		var p flowpb.Flow
		if err := proto.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if p.GetExtensions() != nil {
			t.Fatalf("event %s carries flowbus's extension: a Hubble event must not", e.Flow.UUID)
		}
		f, err := hubble.FromProto(&p)
		if err != nil {
			t.Fatal(err)
		}
		got := hubble.CountAs(&f, hubble.ServedByFlowbus(&p))
		if e.Counts != (got == schemas.CountFlow) {
			t.Fatalf("event %s (type %d, point %v, reply %v, node %s): CountAs %v, marked counts=%v", f.UUID, f.EventType, f.ObservationPoint, f.IsReply, f.NodeName, got, e.Counts)
		}
		kinds[fmt.Sprintf("%d/%v", f.EventType, f.ObservationPoint)]++
		if e.Counts {
			counted++
		}
		if e.Opens {
			opened++
		}
	}
	if opened != 5000 {
		t.Errorf("%d events open a connection, want one per connection (5000)", opened)
	}
	if counted <= opened || len(events) < 6*5000 {
		t.Errorf("%d events, %d counting: want ~7 per connection and L7 exchanges counted too", len(events), counted)
	}
	for _, k := range []string{"4/FROM_ENDPOINT", "4/TO_ENDPOINT", "4/TO_STACK", "1/UNKNOWN_POINT", "5/UNKNOWN_POINT", "129/UNKNOWN_POINT"} {
		if kinds[k] == 0 {
			t.Errorf("no event of type/point %s in %v", k, kinds)
		}
	}
	t.Logf("%d events of 5000 connections, %d counting; kinds %v", len(events), counted, kinds)
}
