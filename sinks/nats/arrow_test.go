package nats

import (
	"context"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
)

// arrowMessages encodes, per destination workload, a message of rows flows
// toward it with the real codec, as the agent's exporter does.
func arrowMessages(t *testing.T, node string, rows int) ([]schemas.Message, map[string][]schemas.Flow) {
	t.Helper()
	dsts := []string{"ledger-svc", "checkout-api", "fraud-detector", "sanctions-svc", "postgres-primary", "rewards-cron"}
	enc := flowcodec.NewEncoder()
	byKey := map[string][]schemas.Flow{}
	var msgs []schemas.Message
	t0 := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC).UnixNano()
	for i, dst := range dsts {
		flows := make([]schemas.Flow, rows)
		for j := range flows {
			f := &flows[j]
			f.TimeNs = t0 + int64(i*rows+j)*int64(time.Millisecond)
			f.NodeName = node
			f.SrcIP = netip.AddrFrom4([4]byte{10, 0, 1, byte(j)})
			f.DstIP = netip.AddrFrom4([4]byte{10, 0, 2, byte(i)})
			f.SrcPort, f.DstPort, f.L4Protocol = uint16(30000+j), 8080, 6
			f.Src = schemas.Endpoint{Identity: 1000, Namespace: "payments", PodName: "checkout-api-7d9f", Workload: "checkout-api", WorkloadKind: "Deployment", Labels: []string{"k8s:app=checkout-api"}}
			f.Dst = schemas.Endpoint{Identity: uint32(2000 + i), Namespace: "payments", PodName: dst + "-0", Workload: dst, WorkloadKind: "Deployment", Labels: []string{"k8s:app=" + dst}}
		}
		v, err := enc.Encode(nil, flows)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		key := flows[0].PartitionKey()
		byKey[key] = flows
		msgs = append(msgs, schemas.Message{Key: key, Node: node, Run: "1", Seq: uint64(i + 1), Rows: rows,
			FirstTs: flows[0].TimeNs, LastTs: flows[rows-1].TimeNs, Value: v})
	}
	return msgs, byKey
}

func TestArrowMessagesDecodeToTheSameFlowsAfterJetStream(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	msgs, byKey := arrowMessages(t, "node-arrow", 500)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	ds := pollN(t, c, len(msgs), 10*time.Second)
	checkDeliveries(t, ds, msgs, testPartitions)
	dec := flowcodec.NewDecoder()
	for _, d := range ds {
		got, err := dec.Decode(nil, d.Value)
		if err != nil {
			t.Fatalf("decode delivery %d@%d: %v", d.Partition, d.Offset, err)
		}
		if want := byKey[string(d.Key)]; !reflect.DeepEqual(got, want) {
			t.Errorf("key %s: decoded %d flows differ from the %d encoded", d.Key, len(got), len(want))
		}
	}
}
