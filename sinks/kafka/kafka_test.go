package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const testPartitions = 8

func itoa(i int) string { return strconv.Itoa(i) }

func headerMap(m *schemas.Message) map[string]string {
	h := map[string]string{}
	for _, kv := range m.Headers() {
		h[kv[0]] = kv[1]
	}
	return h
}

func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func newProducer(t *testing.T, cfg ProducerConfig) *Producer {
	t.Helper()
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newConsumer(t *testing.T, cfg ConsumerConfig) *Consumer {
	t.Helper()
	c, err := NewConsumer(cfg)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return c
}

// checkDeliveries asserts that ds is exactly msgs (bustest.CheckDeliveries),
// each with every header of its message, from DefaultTopic.
func checkDeliveries(t *testing.T, ds []bus.Delivery, msgs []schemas.Message, partitions int) {
	t.Helper()
	bustest.CheckDeliveries(t, ds, msgs, partitions, func(d *bus.Delivery, m *schemas.Message) {
		if want := headerMap(m); !maps.Equal(d.Headers, want) {
			t.Errorf("message %s: headers %v, want %v", m.ID(), d.Headers, want)
		}
		if d.Topic != DefaultTopic {
			t.Errorf("message %s: topic %q", m.ID(), d.Topic)
		}
	})
}

func TestPublishedMessagesReachAConsumerGroupExactlyOnce(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(testPartitions, DefaultTopic))
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}})
	msgs := bustest.Messages("node-a", 1, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs[:20]); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := p.Publish(ctx, msgs[20:]); err != nil {
		t.Fatalf("publish: %v", err)
	}

	var assigned []int32
	cons := newConsumer(t, ConsumerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Group: "g1",
		OnAssigned: func(ps []int32) { assigned = append(assigned, ps...) }})
	defer cons.Close()
	ds := bustest.PollN(t, cons, len(msgs), 15*time.Second)
	ds = append(ds, bustest.PollQuiet(t, cons, 300*time.Millisecond)...)
	checkDeliveries(t, ds, msgs, testPartitions)
	if want := []int32{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(assigned, want) {
		t.Errorf("OnAssigned got %v, want %v", assigned, want)
	}
	used := map[int32]bool{}
	for _, d := range ds {
		used[d.Partition] = true
	}
	if len(used) < 4 {
		t.Errorf("only %d partitions used by %d keys: partitioning is not by key", len(used), len(bustest.Keys))
	}
}

func TestAConsumerRestartResumesAtTheCommittedOffsetWithoutDuplicates(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(testPartitions, DefaultTopic))
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}})
	msgs := bustest.Messages("node-b", 1, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
	cfg := ConsumerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Group: "g-restart", MaxPollRecords: 7}

	// First run: process (and commit) the first polls only, up to >= 20
	// records; records fetched but not processed must come again.
	first := newConsumer(t, cfg)
	processed, next := bustest.CommitFirst(ctx, t, first, 20, 7)
	first.Close()

	second := newConsumer(t, cfg)
	defer second.Close()
	rest := bustest.PollN(t, second, len(msgs)-len(processed), 15*time.Second)
	rest = append(rest, bustest.PollQuiet(t, second, 300*time.Millisecond)...)
	bustest.CheckNotBefore(t, rest, next)
	checkDeliveries(t, append(processed, rest...), msgs, testPartitions)
}

func TestPublishRejectsAMessageOverTheLimitBeforeSendingAnything(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(1, DefaultTopic))
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, MaxMessageBytes: 4096})
	msgs := bustest.Messages("node-c", 1, 3) // values of 1077, 2054 and 3031 bytes
	msgs[2].Value = make([]byte, 5000)
	err := p.Publish(context.Background(), msgs)
	if !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("publish: got %v, want bus.ErrTooLarge", err)
	}
	if got := countRecords(t, c.ListenAddrs(), DefaultTopic); got != 0 {
		t.Errorf("%d records landed, want 0", got)
	}
	// A 1 MiB value passes our default limit but not a topic left at the
	// broker default max.message.bytes (1048588): the producer read the
	// topic's limit, refuses before sending, and the error says what to do.
	big := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}})
	msgs[2].Value = make([]byte, 1<<20)
	err = big.Publish(context.Background(), msgs[2:])
	if !errors.Is(err, bus.ErrTooLarge) || !strings.Contains(err.Error(), "raise the topic's max.message.bytes") {
		t.Errorf("1 MiB record to a default topic: got %v, want bus.ErrTooLarge asking to raise the topic's max.message.bytes", err)
	}
	if got := countRecords(t, c.ListenAddrs(), DefaultTopic); got != 0 {
		t.Errorf("%d records landed, want 0", got)
	}
}

// countRecords reads topic from the start with a plain client until idle.
func countRecords(t *testing.T, brokers []string, topic string) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			return n
		}
		n += fs.NumRecords()
	}
}

func TestPublishCreatesAMissingTopicWhenAsked(t *testing.T) {
	c := newCluster(t)
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Topic: "flows.created", CreateTopic: true, Partitions: 5})
	msgs := bustest.Messages("node-d", 1, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	parts, mmb := describeTopic(t, cl, "flows.created")
	if parts != 5 {
		t.Errorf("created topic has %d partitions, want 5", parts)
	}
	if mmb != strconv.Itoa(DefaultMaxMessageBytes) {
		t.Errorf("created topic max.message.bytes = %q, want %d", mmb, DefaultMaxMessageBytes)
	}
	if p.limit != DefaultMaxMessageBytes {
		t.Errorf("record limit %d after creating the topic, want %d", p.limit, DefaultMaxMessageBytes)
	}
	if got := countRecords(t, c.ListenAddrs(), "flows.created"); got != 10 {
		t.Errorf("%d records in the created topic, want 10", got)
	}
	// A 1 MiB Arrow value fits the created topic.
	big := bustest.Messages("node-d", 11, 1)
	big[0].Value = make([]byte, 1<<20)
	if err := p.Publish(ctx, big); err != nil {
		t.Errorf("publish of a 1 MiB value to the created topic: %v", err)
	}
}

func TestPublishToAMissingTopicFailsWithAClearError(t *testing.T) {
	c := newCluster(t)
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Topic: "flows.missing"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.Publish(ctx, bustest.Messages("node-e", 1, 1))
	if err == nil || !strings.Contains(err.Error(), "does not exist") || ctx.Err() != nil {
		t.Fatalf("publish to a missing topic: got %v, want a 'does not exist' error before the deadline", err)
	}
}

func TestPublishBlocksWhileNoBrokerAnswersUntilTheContextEnds(t *testing.T) {
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: []string{"127.0.0.1:1"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Publish(ctx, bustest.Messages("node-f", 1, 3))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish with no broker: got %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el < 650*time.Millisecond {
		t.Errorf("publish gave up after %s, before the context ended", el)
	}
}

func TestDeadLetterCopiesTheRecordWithReasonPartitionAndOffset(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(testPartitions, DefaultTopic))
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}})
	msgs := bustest.Messages("node-g", 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	cons := newConsumer(t, ConsumerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Group: "g-dlq", CreateDLQTopic: true, Partitions: 2})
	defer cons.Close()
	ds := bustest.PollN(t, cons, 3, 15*time.Second)
	bad := ds[1]
	if err := cons.DeadLetter(ctx, bad, "arrow: truncated stream"); err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	r := onlyRecord(ctx, t, c, DefaultTopic+".dlq")
	if !bytes.Equal(r.Key, bad.Key) || !bytes.Equal(r.Value, bad.Value) {
		t.Errorf("dead letter key %q / %d value bytes differ from the original %q / %d", r.Key, len(r.Value), bad.Key, len(bad.Value))
	}
	got := map[string]string{}
	for _, h := range r.Headers {
		got[h.Key] = string(h.Value)
	}
	want := maps.Clone(bad.Headers)
	want[bus.HeaderDLQReason] = "arrow: truncated stream"
	want[bus.HeaderDLQPartition] = strconv.Itoa(int(bad.Partition))
	want[bus.HeaderDLQOffset] = strconv.FormatInt(bad.Offset, 10)
	if !maps.Equal(got, want) {
		t.Errorf("dead letter headers %v, want %v", got, want)
	}
}

// onlyRecord reads topic from its start and returns its one record, failing
// the test if it holds another number of records.
func onlyRecord(ctx context.Context, t *testing.T, c *kfake.Cluster, topic string) *kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fs := cl.PollFetches(ctx)
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	recs := fs.Records()
	if len(recs) != 1 {
		t.Fatalf("%d records in %s, want 1", len(recs), topic)
	}
	return recs[0]
}

// describeTopic returns a topic's partition count and max.message.bytes.
func describeTopic(t *testing.T, cl *kgo.Client, topic string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	r, err := rc.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mmb string
	for _, c := range r.Configs {
		if c.Key == "max.message.bytes" && c.Value != nil {
			mmb = *c.Value
		}
	}
	return len(td[topic].Partitions), mmb
}

func ExampleProducer() {
	p, err := NewProducer(ProducerConfig{Conn: Conn{Brokers: []string{"kafka-0:9092"}}, CreateTopic: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	fmt.Println(p.cfg.Topic, p.cfg.MaxMessageBytes)
	// Output: flowbus.flows.v1 1114112
}
