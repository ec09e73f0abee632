package agent

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowbus/flowbus/agent/aggregate"
	"github.com/flowbus/flowbus/agent/export"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/kafka"
	"github.com/flowbus/flowbus/sinks/spool"
)

// TestKafkaOutage stops the kfake broker for faultOutage (more than 10 s;
// 60 s under make faults) while the source keeps producing, restarts it on the same port and log directory, and
// checks that every flow arrives exactly once, in order per partition, and
// that the spool is empty again.
func TestKafkaOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("the outage lasts 10 s; skipped in -short mode")
	}
	outage := faultOutage()
	dir := t.TempDir()
	opts := func(port int) []kfake.Opt {
		return []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SeedTopics(4, kafka.DefaultTopic)}
	}
	c1, err := kfake.NewCluster(opts(0)...)
	if err != nil {
		t.Fatal(err)
	}
	addr := c1.ListenAddrs()[0]
	_, ps, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(ps)

	pub, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: []string{addr}}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	src := seqSource{workloads: []string{"ledger-svc", "fraud-detector", "sanctions-svc", "checkout-api", "coredns"}, rate: 2000, count: outageFlows(outage)}
	reg := prometheus.NewRegistry()
	a, err := New(Config{
		Node: "node-a", Source: src,
		Aggregate: aggregate.Config{Disabled: true},
		Export: export.Config{
			Linger: 100 * time.Millisecond, MaxRows: 500, QueueMessages: 8,
			RetryMax: 500 * time.Millisecond, // no PublishTimeout: a timed-out Kafka Publish may still land (see export.Config)
			Spool:    spool.Config{Dir: filepath.Join(t.TempDir(), "spool"), SegmentBytes: 1 << 20},
		},
	}, nil, reg, pub)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()

	time.Sleep(2 * time.Second)
	c1.Close()
	t.Logf("broker stopped for %v", outage)
	time.Sleep(outage)
	if v := metric(t, reg, "flowbus_spool_bytes"); v == 0 {
		t.Errorf("nothing was spooled during a %v outage", outage)
	}
	c2, err := kfake.NewCluster(opts(port)...)
	if err != nil {
		t.Fatalf("restart the broker on port %d: %v", port, err)
	}
	defer c2.Close()
	t.Log("broker restarted")

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the agent did not finish 60 s after the broker came back")
	}
	if v := metric(t, reg, "flowbus_spool_bytes"); v != 0 {
		t.Errorf("flowbus_spool_bytes = %v after recovery, want 0", v)
	}
	checkSequences(t, readTopic(t, addr, src.count), src)
}

// readTopic reads the topic until want flows arrived and then 500 ms more
// (to catch duplicates), returning the flows' UUIDs per partition key.
func readTopic(t *testing.T, addr string, want int) map[string][]string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(kafka.DefaultTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dec := flowcodec.NewDecoder()
	out := map[string][]string{}
	var flows []schemas.Flow
	n := 0
	deadline := time.Now().Add(30 * time.Second)
	quietUntil := time.Time{}
	for time.Now().Before(deadline) && (quietUntil.IsZero() || time.Now().Before(quietUntil)) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			if flows, err = dec.Decode(flows[:0], r.Value); err != nil {
				t.Fatalf("record at %d/%d does not decode: %v", r.Partition, r.Offset, err)
			}
			for i := range flows {
				k := flows[i].PartitionKey()
				if string(r.Key) != k {
					t.Fatalf("flow of %s in a record keyed %s", k, r.Key)
				}
				out[k] = append(out[k], flows[i].UUID)
				n++
			}
		})
		if n >= want && quietUntil.IsZero() {
			quietUntil = time.Now().Add(500 * time.Millisecond)
		}
	}
	return out
}
