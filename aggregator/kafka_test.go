package aggregator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/kafka"
)

const testTopic = kafka.DefaultTopic

// encodeAll encodes generated messages as the agent's exporter would.
func encodeAll(t testing.TB, gms []genMessage) []schemas.Message {
	t.Helper()
	enc := flowcodec.NewEncoder()
	out := make([]schemas.Message, len(gms))
	for i, gm := range gms {
		v, err := enc.Encode(nil, gm.flows)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = schemas.Message{Key: gm.flows[0].PartitionKey(), Node: "node-a", Run: "1", Seq: uint64(i + 1),
			Rows: len(gm.flows), FirstTS: gm.flows[0].TimeNs, LastTS: gm.flows[len(gm.flows)-1].TimeNs, Value: v}
	}
	return out
}

// newKafka starts kfake with the flows topic (parts partitions, created by
// the producer with flowbus's max.message.bytes) and the dead-letter topic.
func newKafka(t testing.TB, parts int32) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, testTopic+".dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	mmb := strconv.Itoa(kafka.DefaultMaxMessageBytes)
	_, err = kadm.NewClient(cl).CreateTopic(context.Background(), parts, 1, map[string]*string{"max.message.bytes": &mmb}, testTopic)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func publishKafka(t testing.TB, c *kfake.Cluster, msgs []schemas.Message) {
	t.Helper()
	p, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: c.ListenAddrs()}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < len(msgs); i += 200 {
		if err := p.Publish(context.Background(), msgs[i:min(i+200, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
}

func consumerConfig(c *kfake.Cluster) kafka.ConsumerConfig {
	return kafka.ConsumerConfig{Conn: kafka.Conn{Brokers: c.ListenAddrs()}, Group: "agg-test",
		SessionTimeout: 6 * time.Second, RebalanceTimeout: 10 * time.Second}
}

// runUntil runs RunKafka with a and cc until p is done (p.run).
func runUntil(a *Aggregator, cc kafka.ConsumerConfig, p *progress) error {
	return p.run(func(ctx context.Context) error { return RunKafka(ctx, a, cc) })
}

// TestKafkaExactTotalsOfAMillionFlows is the acceptance run: 1,000,000
// flows of the agent's seeded synthetic fleet through kfake, one
// aggregator, Parquet, DuckDB.
func TestKafkaExactTotalsOfAMillionFlows(t *testing.T) {
	fd := fleetRun(t)
	c := newKafka(t, fleetPartitions)
	publishKafka(t, c, fd.msgs)
	out := t.TempDir()
	a, reg := newTestAggregator(t, Config{Out: out})
	p := newProgress(len(fd.msgs))
	a.hook = p.hook(nil)
	start := time.Now()
	if err := runUntil(a, consumerConfig(c), p); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d flows in %d messages aggregated in %v", fd.n, len(fd.msgs), time.Since(start))
	checkFleet(t, out, fd)
	if got := counter(t, reg, "flowbus_aggregator_flow_rows_total"); got != float64(fd.n) {
		t.Errorf("flow_rows_total = %v, want %d", got, fd.n)
	}
}

// TestKafkaCrashesAndRestartsKeepTotalsExact kills the aggregator at random
// points (after a message, after a file's rename before the commit, between
// the route and the pair file, after a commit) and starts a new one in the
// same group over the same directory, until the topic is consumed.
func TestKafkaCrashesAndRestartsKeepTotalsExact(t *testing.T) {
	g := generate(4, 150_000, 12*time.Minute, 1000)
	msgs := encodeAll(t, split(g.flows, 3, 500))
	c := newKafka(t, 3)
	publishKafka(t, c, msgs)
	out := t.TempDir()
	p := newProgress(len(msgs))
	points := []string{"message", "written", "route-written", "committed"}
	limits := map[string]int{"message": 40, "written": 3, "route-written": 3, "committed": 2}
	crashes := 0
	for run := 0; ; run++ {
		if run > 30 {
			t.Fatal("no run finished")
		}
		a, _ := newTestAggregator(t, Config{Out: out})
		var crash func(string, *bus.Delivery) error
		if crashes < 10 {
			point := points[crashes%len(points)]
			left := 1 + (run*7919)%limits[point]
			crash = func(pt string, _ *bus.Delivery) error {
				if pt == point {
					if left--; left == 0 {
						return errCrash
					}
				}
				return nil
			}
		}
		a.hook = p.hook(crash)
		err := runUntil(a, consumerConfig(c), p)
		if errors.Is(err, errCrash) {
			crashes++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	if crashes < 10 {
		t.Fatalf("only %d crashes", crashes)
	}
	checkExact(t, out, g)
	checkQuantiles(t, out, g)
}

// TestKafkaRebalanceLosesAndDuplicatesNothing runs two aggregators in one
// group: B joins while A runs (A hands over partitions), then A leaves (B
// takes all), and B finishes. Raw flows are on: flows/ too holds every
// record once.
func TestKafkaRebalanceLosesAndDuplicatesNothing(t *testing.T) {
	g := withUUIDs(generate(5, 200_000, 12*time.Minute, 0))
	msgs := encodeAll(t, split(g.flows, 4, 500))
	c := newKafka(t, 4)
	publishKafka(t, c, msgs)
	out := t.TempDir()
	p := newProgress(len(msgs))

	// A is slowed down so that B joins while A still has work; once B has
	// processed 40 messages A shuts down (writes, commits, leaves) and B
	// takes every partition.
	ctxA, stopA := context.WithCancel(context.Background())
	defer stopA()
	var mu sync.Mutex
	var seenA, seenB int
	a, _ := newTestAggregator(t, Config{Out: out, RawFlows: true})
	a.hook = p.hook(func(pt string, _ *bus.Delivery) error {
		if pt == "message" {
			mu.Lock()
			seenA++
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
	b, _ := newTestAggregator(t, Config{Out: out, RawFlows: true})
	b.hook = p.hook(func(pt string, _ *bus.Delivery) error {
		if pt == "message" {
			mu.Lock()
			seenB++
			if seenB == 40 {
				stopA()
			}
			mu.Unlock()
		}
		return nil
	})
	errA := make(chan error, 1)
	go func() { errA <- RunKafka(ctxA, a, consumerConfig(c)) }()
	for {
		mu.Lock()
		s := seenA
		mu.Unlock()
		if s >= 20 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := runUntil(b, consumerConfig(c), p); err != nil {
		t.Fatal(err)
	}
	stopA() // in case B never got to 40 messages: A must not outlive the test
	if err := <-errA; err != nil {
		t.Fatalf("aggregator A: %v", err)
	}
	mu.Lock()
	t.Logf("A processed %d messages, B %d, of %d", seenA, seenB, len(msgs))
	if seenA < 20 || seenB < 40 || seenA+seenB < len(msgs) {
		t.Errorf("A processed %d and B %d messages of %d: the group did not split the work", seenA, seenB, len(msgs))
	}
	mu.Unlock()
	checkExact(t, out, g)
	checkQuantiles(t, out, g)
	checkRawFlows(t, out, g)
}

// TestKafkaBadMessagesAreCountedDeadLetteredAndSkipped puts a non-Arrow
// value, a truncated Arrow stream and an unknown schema version between
// good messages.
func TestKafkaBadMessagesAreCountedDeadLetteredAndSkipped(t *testing.T) {
	g := generate(6, 20_000, 5*time.Minute, 0)
	msgs := encodeAll(t, split(g.flows, 1, 500))
	c := newKafka(t, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(testTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := func(v []byte, schema string) *kgo.Record {
		return &kgo.Record{Value: v, Headers: []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte(schema)}}}
	}
	var recs []*kgo.Record
	bad := map[int]string{3: BadNotArrow, 7: BadTruncated, 11: BadUnknownSchema}
	for i, m := range msgs {
		switch bad[i] {
		case BadNotArrow:
			recs = append(recs, rec([]byte("{\"not\": \"arrow\"}"), schemas.SchemaVersion))
		case BadTruncated:
			recs = append(recs, rec(m.Value[:len(m.Value)/2], schemas.SchemaVersion))
		case BadUnknownSchema:
			recs = append(recs, rec(m.Value, "flow.v9"))
		}
		recs = append(recs, rec(m.Value, schemas.SchemaVersion))
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	a, reg := newTestAggregator(t, Config{Out: out})
	p := newProgress(len(recs))
	a.hook = p.hook(nil)
	// Bad messages do not reach the "message" hook; count them via the DLQ.
	cc := consumerConfig(c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- RunKafka(ctx, a, cc) }()
	deadline := time.Now().Add(time.Minute)
	for {
		p.mu.Lock()
		n := len(p.seen)
		p.mu.Unlock()
		if n == len(msgs) && counter(t, reg, "flowbus_aggregator_dead_lettered_total") == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processed %d of %d good messages", n, len(msgs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{BadNotArrow, BadTruncated, BadUnknownSchema} {
		if got := counter(t, reg, "flowbus_aggregator_bad_messages_total", "reason", reason); got != 1 {
			t.Errorf("bad_messages_total{reason=%q} = %v, want 1", reason, got)
		}
	}
	// The dead-letter topic holds the three, with their reasons and offsets.
	dl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(testTopic+".dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	got := map[string]string{}
	fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer fcancel()
	for len(got) < 3 && fctx.Err() == nil {
		dl.PollFetches(fctx).EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			got[h[bus.HeaderDLQReason]] = h[bus.HeaderDLQOffset]
		})
	}
	want := map[string]string{}
	off := 0
	for i := range msgs {
		if r, ok := bad[i]; ok {
			want[r] = strconv.Itoa(off)
			off++
		}
		off++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dead letters (reason → offset) = %v, want %v", got, want)
	}
	checkExact(t, out, g)
}
