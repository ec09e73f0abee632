package kafka

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPublishRecords: records that are not flow messages are produced with
// their key (partitioned as the flows' keys are) and headers, in order.
func TestPublishRecords(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(testPartitions, "ocsf.t"))
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Topic: "ocsf.t"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	var recs []bus.Record
	for i := range 20 {
		recs = append(recs, bus.Record{Key: fmt.Sprintf("ns/w%d", i%5), Value: []byte(fmt.Sprintf(`{"i":%d}`, i)),
			Headers: [][2]string{{"content-type", "application/json"}, {"x-i", fmt.Sprint(i)}}, ID: "ignored"})
	}
	if err := p.PublishRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("ocsf.t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []*kgo.Record
	for len(got) < len(recs) && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	last := map[string]int{} // key → last x-i seen: order per key
	for _, r := range got {
		i := 0
		fmt.Sscan(string(r.Headers[1].Value), &i)
		want := recs[i]
		if string(r.Key) != want.Key || string(r.Value) != string(want.Value) || len(r.Headers) != 2 || r.Headers[0].Key != "content-type" {
			t.Errorf("record %d read back as key %q value %q headers %v", i, r.Key, r.Value, r.Headers)
		}
		if int(r.Partition) != schemas.PartitionOf(want.Key, testPartitions) {
			t.Errorf("record %d in partition %d, want %d", i, r.Partition, schemas.PartitionOf(want.Key, testPartitions))
		}
		if j, ok := last[want.Key]; ok && j > i {
			t.Errorf("key %s: record %d after %d", want.Key, i, j)
		}
		last[want.Key] = i
	}
	if len(got) != len(recs) {
		t.Errorf("%d records read back, want %d", len(got), len(recs))
	}
}

// TestReadyMissingTopic: Ready names a topic that does not exist at once.
func TestReadyMissingTopic(t *testing.T) {
	c := newCluster(t)
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Topic: "nope"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Ready(ctx); err == nil || !strings.Contains(err.Error(), "topic nope does not exist") {
		t.Fatalf("Ready = %v, want the topic named as missing", err)
	}
}
