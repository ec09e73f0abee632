package kafka

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/syncbuf"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaDefaultMaxMessageBytes is Kafka's (and kfake's) default
// message.max.bytes, the effective max.message.bytes of a topic without an
// override.
const kafkaDefaultMaxMessageBytes = 1048588

// createTestTopic creates topic with partitions and, when mmb is not 0, a
// max.message.bytes override, as an operator would before the agent runs.
func createTestTopic(t *testing.T, c *kfake.Cluster, topic string, partitions int32, mmb int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var configs map[string]*string
	if mmb != 0 {
		v := strconv.Itoa(mmb)
		configs = map[string]*string{"max.message.bytes": &v}
	}
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, configs, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// sameKeyMessages returns n messages with one key (one partition) and values
// of size bytes, each value distinct.
func sameKeyMessages(n, size int) []schemas.Message {
	msgs := bustest.Messages("node-limit", 1, n)
	for i := range msgs {
		msgs[i].Key = "payments/ledger-svc"
		msgs[i].Value = bytes.Repeat([]byte{byte('a' + i)}, size)
	}
	return msgs
}

// checkLimitAndRecords checks the producer's record limit and how many
// records landed in DefaultTopic.
func checkLimitAndRecords(t *testing.T, c *kfake.Cluster, p *Producer, limit, records int) {
	t.Helper()
	if p.limit != limit {
		t.Errorf("record limit %d, want %d", p.limit, limit)
	}
	if got := countRecords(t, c.ListenAddrs(), DefaultTopic); got != records {
		t.Errorf("%d records landed, want %d", got, records)
	}
}

// logBuffer collects slog records as text, safe for concurrent use.
type logBuffer struct{ syncbuf.Buffer }

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Several records of one partition that each fit the topic's default
// max.message.bytes but not two together: franz-go must not pack them into
// one batch the broker refuses.
func TestPublishToAnExistingDefaultTopicKeepsBatchesUnderItsLimit(t *testing.T) {
	c := newCluster(t)
	createTestTopic(t, c, DefaultTopic, 3, 0)
	var logs logBuffer
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Logger: logs.logger()})
	// Two values of 530,000 bytes exceed 1048588 together but not the
	// configured 1114112, and each fits alone.
	msgs := sameKeyMessages(6, 530_000)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
	cons := newConsumer(t, ConsumerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Group: "g-limit"})
	defer cons.Close()
	ds := bustest.PollN(t, cons, len(msgs), 15*time.Second)
	ds = append(ds, bustest.PollQuiet(t, cons, 300*time.Millisecond)...)
	checkDeliveries(t, ds, msgs, 3)
	want := "max.message.bytes=" + strconv.Itoa(kafkaDefaultMaxMessageBytes)
	if got := logs.String(); strings.Count(got, want) != 1 || !strings.Contains(got, "level=INFO") {
		t.Errorf("want one Info log of the topic's %s, got:\n%s", want, got)
	}
}

// A message that fits MaxMessageBytes but not the existing topic's default
// max.message.bytes fails with bus.ErrTooLarge naming the topic's limit.
func TestPublishRejectsAMessageOverTheTopicLimitNamingIt(t *testing.T) {
	c := newCluster(t)
	createTestTopic(t, c, DefaultTopic, 3, 0)
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := sameKeyMessages(2, 0)
	// msgs[1] is one byte over the topic's limit by recordSize's bound
	// (about 1,048,200 bytes of value); msgs[0] is exactly at it.
	overhead := recordSize(messageRecord(&msgs[1]))
	msgs[0].Value = bytes.Repeat([]byte{'a'}, kafkaDefaultMaxMessageBytes-overhead)
	msgs[1].Value = make([]byte, kafkaDefaultMaxMessageBytes-overhead+1)
	err := p.Publish(ctx, msgs)
	if !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("publish: got %v, want bus.ErrTooLarge", err)
	}
	want := "over topic " + DefaultTopic + " max.message.bytes 1048588 (raise the topic's max.message.bytes"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if got := countRecords(t, c.ListenAddrs(), DefaultTopic); got != 0 {
		t.Errorf("%d records landed, want 0", got)
	}
	// The limit is kept: the message still fails, the one at the limit
	// passes.
	if err := p.Publish(ctx, msgs[1:]); !errors.Is(err, bus.ErrTooLarge) || !strings.Contains(err.Error(), want) {
		t.Errorf("second publish: got %v, want bus.ErrTooLarge containing %q", err, want)
	}
	if err := p.Publish(ctx, msgs[:1]); err != nil {
		t.Fatalf("publish of a message at the topic's limit: %v", err)
	}
	if got := countRecords(t, c.ListenAddrs(), DefaultTopic); got != 1 {
		t.Errorf("%d records landed, want 1", got)
	}
}

// A topic allowing more than MaxMessageBytes leaves the configured limit in
// force, for records and batches.
func TestPublishKeepsTheConfiguredLimitBelowALargerTopicLimit(t *testing.T) {
	c := newCluster(t)
	createTestTopic(t, c, DefaultTopic, 3, 2<<20)
	var logs logBuffer
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Logger: logs.logger()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := sameKeyMessages(2, 1<<20)
	msgs[1].Value = make([]byte, DefaultMaxMessageBytes)
	err := p.Publish(ctx, msgs[1:])
	if !errors.Is(err, bus.ErrTooLarge) || !strings.Contains(err.Error(), "over max message bytes "+strconv.Itoa(DefaultMaxMessageBytes)+":") {
		t.Fatalf("publish of %d bytes: got %v, want bus.ErrTooLarge over the configured max message bytes", DefaultMaxMessageBytes, err)
	}
	if err := p.Publish(ctx, msgs[:1]); err != nil {
		t.Fatalf("publish of a 1 MiB value: %v", err)
	}
	if p.limit != DefaultMaxMessageBytes || p.batchMax.Load() != DefaultMaxMessageBytes {
		t.Errorf("record limit %d, batch limit %d, want both %d", p.limit, p.batchMax.Load(), DefaultMaxMessageBytes)
	}
	if got := countRecords(t, c.ListenAddrs(), DefaultTopic); got != 1 {
		t.Errorf("%d records landed, want 1", got)
	}
	if got := logs.String(); strings.Contains(got, "max.message.bytes=") {
		t.Errorf("logged a topic limit that is not in force:\n%s", got)
	}
}

// DescribeConfigs denied: one warning, the configured limit, publishing works.
func TestPublishKeepsTheConfiguredLimitWhenTheTopicConfigIsDenied(t *testing.T) {
	c := newCluster(t)
	createTestTopic(t, c, DefaultTopic, 3, 0)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.DescribeConfigs}, Resource: DefaultTopic, Err: kerr.TopicAuthorizationFailed, Count: -1})
	var logs logBuffer
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Logger: logs.logger()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 2 {
		if err := p.Publish(ctx, bustest.Messages("node-denied", 1+3*i, 3)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	got := logs.String()
	if strings.Count(got, "level=WARN") != 1 || !strings.Contains(got, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("want one warning naming TOPIC_AUTHORIZATION_FAILED, got:\n%s", got)
	}
	checkLimitAndRecords(t, c, p, DefaultMaxMessageBytes, 6)
}

// A transient DescribeConfigs failure is retried: it must not leave the
// producer on the configured limit.
func TestPublishRetriesATransientTopicConfigFailure(t *testing.T) {
	c := newCluster(t)
	createTestTopic(t, c, DefaultTopic, 3, 0)
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.DescribeConfigs}, Resource: DefaultTopic, Err: kerr.RequestTimedOut, Count: 2})
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := sameKeyMessages(4, 530_000)
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if hits := h.Hits(); hits != 2 {
		t.Errorf("fault answered %d DescribeConfigs, want 2", hits)
	}
	checkLimitAndRecords(t, c, p, kafkaDefaultMaxMessageBytes, 4)
}

// With CreateTopic, a topic that already exists with a smaller limit is
// honoured like any existing topic.
func TestPublishWithCreateTopicHonoursAnExistingTopicsSmallerLimit(t *testing.T) {
	c := newCluster(t)
	createTestTopic(t, c, DefaultTopic, 3, 0)
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, CreateTopic: true, Partitions: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := sameKeyMessages(4, 530_000)
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
	checkLimitAndRecords(t, c, p, kafkaDefaultMaxMessageBytes, 4)
}

// A bad message larger than an existing dead-letter topic accepts is
// dead-lettered cut to fit, with its original length in a header, instead of
// failing (which would stop its partition at that message for good).
func TestADeadLetterTooLargeForItsTopicIsCutToFit(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(testPartitions, DefaultTopic))
	const dlqLimit = 100_000
	createTestTopic(t, c, DefaultTopic+DefaultDLQSuffix, 1, dlqLimit)
	var logs logBuffer
	cons := newConsumer(t, ConsumerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Group: "g-dlq-limit", Logger: logs.logger()})
	defer cons.Close()
	value := make([]byte, 600_000)
	for i := range value {
		value[i] = byte(i * 7)
	}
	bad := bus.Delivery{Topic: DefaultTopic, Partition: 1, Offset: 42, Key: []byte("payments/ledger-svc"), Value: value,
		Headers: map[string]string{"flowbus-schema": "flow.v1"}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cons.DeadLetter(ctx, bad, "not an Arrow stream"); err != nil {
		t.Fatalf("dead letter: %v", err)
	}

	r := onlyRecord(ctx, t, c, DefaultTopic+DefaultDLQSuffix)
	// The broker accepted it, so it fits; it must also keep nearly all the
	// limit's worth of the value (headers and framing take ~200 bytes).
	if n := len(r.Value); n > dlqLimit || n < dlqLimit-1000 || !bytes.Equal(r.Value, value[:n]) {
		t.Errorf("dead letter value: %d bytes (prefix of the original: %v), want the first %d-1000..%d bytes", n, bytes.Equal(r.Value, value[:min(n, len(value))]), dlqLimit, dlqLimit)
	}
	got := map[string]string{}
	for _, h := range r.Headers {
		got[h.Key] = string(h.Value)
	}
	want := map[string]string{"flowbus-schema": "flow.v1", bus.HeaderDLQReason: "not an Arrow stream",
		bus.HeaderDLQPartition: "1", bus.HeaderDLQOffset: "42", bus.HeaderDLQTruncated: "600000"}
	if !maps.Equal(got, want) {
		t.Errorf("dead letter headers %v, want %v", got, want)
	}
	if !strings.Contains(logs.String(), "kafka dead letter cut to fit the dead-letter topic") || !strings.Contains(logs.String(), "kept=") {
		t.Errorf("no warning about the cut dead letter in the log:\n%s", logs.String())
	}

	// A limit that the key and headers alone exceed is still an error.
	tiny := "tiny.dlq"
	createTestTopic(t, c, tiny, 1, 300)
	cons2 := newConsumer(t, ConsumerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Group: "g-dlq-tiny", DLQTopic: tiny})
	defer cons2.Close()
	err := cons2.DeadLetter(ctx, bad, strings.Repeat("x", 2000))
	if !errors.Is(err, bus.ErrTooLarge) || !strings.Contains(err.Error(), "over the dead-letter limit 300") {
		t.Errorf("dead letter to a 300-byte topic with a 1 KiB reason: got %v, want bus.ErrTooLarge over the dead-letter limit 300", err)
	}
}

// A dead-letter topic whose max.message.bytes is lowered while the
// aggregator runs: the dead letter that meets the new limit fails once (the
// caller retries, as the aggregator does on restart), and the next attempt
// reads the limit again and cuts to it.
func TestADeadLetterFollowsALoweredTopicLimit(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(testPartitions, DefaultTopic))
	dlq := DefaultTopic + DefaultDLQSuffix
	createTestTopic(t, c, dlq, 1, 200_000)
	cons := newConsumer(t, ConsumerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Group: "g-dlq-lowered"})
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bad := bus.Delivery{Topic: DefaultTopic, Partition: 0, Offset: 1, Value: bytes.Repeat([]byte("v"), 150_000)}
	if err := cons.DeadLetter(ctx, bad, "not an Arrow stream"); err != nil {
		t.Fatalf("first dead letter: %v", err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	v := "100000"
	rs, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &v}}, dlq)
	if err == nil {
		_, err = rs.On(dlq, nil)
	}
	if err != nil {
		t.Fatalf("lower %s's max.message.bytes: %v", dlq, err)
	}

	bad.Offset = 2
	err = cons.DeadLetter(ctx, bad, "not an Arrow stream")
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("dead letter after the limit was lowered: got %v, want the broker's MESSAGE_TOO_LARGE once", err)
	}
	if err := cons.DeadLetter(ctx, bad, "not an Arrow stream"); err != nil {
		t.Fatalf("second attempt, which should read the new limit: %v", err)
	}
}
