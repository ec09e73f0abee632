package nats

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
)

// TestPublishRecords: records that are not flow messages go to
// <prefix>.<partition of their key>, with their headers, the key header and
// their ID as Nats-Msg-Id, so that a record sent again within the duplicate
// window is stored once; the stream takes the description given.
func TestPublishRecords(t *testing.T) {
	_, u := startServer(t, filepath.Join(t.TempDir(), "js"), -1)
	stream := StreamConfig{Name: "FLOWBUS_OCSF_T", SubjectPrefix: "flowbus.ocsf.t", Description: "OCSF events"}
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Stream: stream, Partitions: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	var recs []bus.Record
	for i := range 10 {
		recs = append(recs, bus.Record{Key: fmt.Sprintf("ns/w%d", i%3), Value: []byte(fmt.Sprintf(`{"i":%d}`, i)),
			Headers: [][2]string{{"content-type", "application/json"}, {"x-i", fmt.Sprint(i)}}, ID: fmt.Sprintf("id-%d", i)})
	}
	if err := p.PublishRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishRecords(ctx, recs[:4]); err != nil { // again: deduplicated
		t.Fatal(err)
	}
	if n := streamMsgs(t, u, stream.Name); n != 10 {
		t.Fatalf("%d messages in the stream, want 10", n)
	}
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Stream: stream, Partitions: 4, Durable: "t"})
	got := map[string]bus.Delivery{}
	for len(got) < 10 && ctx.Err() == nil {
		ds, err := c.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			got[d.Headers["x-i"]] = d
		}
	}
	for i, r := range recs {
		d, ok := got[fmt.Sprint(i)]
		switch {
		case !ok:
			t.Fatalf("record %d not read back", i)
		case string(d.Value) != string(r.Value) || string(d.Key) != r.Key || d.Headers["content-type"] != "application/json":
			t.Errorf("record %d read back as key %q value %q headers %v", i, d.Key, d.Value, d.Headers)
		case d.Topic != Subject("flowbus.ocsf.t", schemas.PartitionOf(r.Key, 4)) || int(d.Partition) != schemas.PartitionOf(r.Key, 4):
			t.Errorf("record %d on %s partition %d, want partition %d of its key", i, d.Topic, d.Partition, schemas.PartitionOf(r.Key, 4))
		}
	}
}

// TestReadyUnreachableServer: Ready against a server that does not answer
// returns when its context ends, with an error that says so.
func TestReadyUnreachableServer(t *testing.T) {
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: "nats://127.0.0.1:1"}, Stream: StreamConfig{Name: "X", SubjectPrefix: "x"}})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "the server nats://127.0.0.1:1 is not reachable") || time.Since(start) > 5*time.Second {
		t.Fatalf("Ready = %v after %s, want an error at the deadline", err, time.Since(start))
	}
	t.Log(err)
}
