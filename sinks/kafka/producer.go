package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrTooLarge is wrapped by Publish when a message cannot fit in one record
// under MaxMessageBytes; nothing of that Publish call was sent.
var ErrTooLarge = errors.New("message larger than the bus limit")

// Producer publishes bus messages to one Kafka topic with an idempotent
// producer (acks=all, no compression, murmur2 key partitioning). It is safe
// for concurrent use.
type Producer struct {
	cfg  ProducerConfig
	cl   *kgo.Client
	hook *connHook

	topicMu    sync.Mutex
	topicReady bool
}

// NewProducer returns a Producer for cfg. It does not contact the brokers:
// a bus that is down at start makes Publish block, not NewProducer fail.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts, err := cfg.Conn.opts()
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	hook := &connHook{log: cfg.Logger}
	opts = append(opts, kgo.WithHooks(hook))
	opts = append(opts, producerOpts(cfg.Topic, cfg.MaxMessageBytes, cfg.MaxBufferedBytes, cfg.Linger)...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: new client: %w", err)
	}
	return &Producer{cfg: cfg, cl: cl, hook: hook, topicReady: !cfg.CreateTopic}, nil
}

// producerOpts are the producing options shared by Producer and the
// consumer's dead-letter producer. Idempotence (franz-go's default) implies
// acks=all; it is not turned off anywhere.
func producerOpts(topic string, maxMessageBytes, maxBufferedBytes int, linger time.Duration) []kgo.Opt {
	return []kgo.Opt{
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(int32(maxMessageBytes)),
		kgo.MaxBufferedBytes(maxBufferedBytes),
		kgo.ProducerLinger(linger),
		// No RecordDeliveryTimeout and unlimited RecordRetries (the
		// defaults): a record is retried until the brokers take it or the
		// caller's context ends.
	}
}

// Publish sends msgs, in order, and returns nil only once the brokers
// acknowledged every one of them (acks=all). Messages with the same Key go to
// the same partition, schemas.PartitionOf(Key, partitions), and keep their
// relative order there. While the brokers are unreachable Publish blocks,
// retrying, until ctx is done; it then returns an error wrapping ctx.Err().
// On any error some messages may have landed, and records already handed to
// the client may still land after Publish returned: delivery is
// at-least-once (see doc.go). A message over MaxMessageBytes fails the whole
// call with ErrTooLarge before anything is sent.
func (p *Producer) Publish(ctx context.Context, msgs []schemas.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, len(msgs))
	for i := range msgs {
		recs[i] = messageRecord(&msgs[i])
		if n := recordSize(recs[i]); n > p.cfg.MaxMessageBytes {
			return fmt.Errorf("kafka publish %s: %d bytes over max message bytes %d: %w", msgs[i].ID(), n, p.cfg.MaxMessageBytes, ErrTooLarge)
		}
	}
	if err := p.ensureTopic(ctx); err != nil {
		return p.hook.explain(err)
	}
	return p.hook.explain(produceAll(ctx, p.cl, recs, p.cfg.Topic))
}

// connHook remembers the last failed broker connection (refused, TLS, SASL)
// so that a Publish that ran out of time says why, and logs each new kind
// of failure once.
type connHook struct {
	log  *slog.Logger
	mu   sync.Mutex
	last error
}

func (h *connHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.last = nil
		return
	}
	if h.last == nil || h.last.Error() != err.Error() {
		h.log.Warn("kafka broker connection failed", "broker", net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), "err", err)
	}
	h.last = err
}

// explain adds the last connection failure to a context error.
func (h *connHook) explain(err error) error {
	if err == nil || (!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)) {
		return err
	}
	h.mu.Lock()
	last := h.last
	h.mu.Unlock()
	if last == nil {
		return err
	}
	return fmt.Errorf("%w (last broker connection error: %v)", err, last)
}

// produceAll produces recs and waits for all promises or ctx.
func produceAll(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, topic string) error {
	var (
		left     atomic.Int64
		errOnce  sync.Once
		firstErr error
		done     = make(chan struct{})
	)
	left.Store(int64(len(recs)))
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			errOnce.Do(func() { firstErr = describeProduceErr(r, err, topic) })
		}
		if left.Add(-1) == 0 {
			close(done)
		}
	}
	for _, r := range recs {
		cl.Produce(ctx, r, promise)
	}
	select {
	case <-done:
		return firstErr
	case <-ctx.Done():
		return fmt.Errorf("kafka publish to %s: %d of %d records unacknowledged: %w", topic, left.Load(), len(recs), ctx.Err())
	}
}

func describeProduceErr(r *kgo.Record, err error, topic string) error {
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("kafka publish: topic %s does not exist (create it, or enable topic creation): %w", topic, err)
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("kafka publish: record of %d bytes refused by the broker (raise the topic's max.message.bytes): %w", recordSize(r), err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("kafka publish to %s: %w", topic, err)
	}
	return fmt.Errorf("kafka publish to %s partition %d: %w", topic, r.Partition, err)
}

// messageRecord turns m into a record: key = Key, value = Value, headers =
// m.Headers() in order. The key is never nil, so that an empty key is hashed
// like any other (Kafka partitions nil keys elsewhere).
func messageRecord(m *schemas.Message) *kgo.Record {
	hs := m.Headers()
	rec := &kgo.Record{Key: append(make([]byte, 0, len(m.Key)), m.Key...), Value: m.Value, Headers: make([]kgo.RecordHeader, len(hs))}
	for i, h := range hs {
		rec.Headers[i] = kgo.RecordHeader{Key: h[0], Value: []byte(h[1])}
	}
	return rec
}

// recordSize is an upper bound of the record's size inside a batch, plus the
// batch header (61 bytes), which is what the broker checks against
// max.message.bytes when the record is alone in its batch.
func recordSize(r *kgo.Record) int {
	n := 61 + 21 + len(r.Key) + len(r.Value) + 5
	for _, h := range r.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// ensureTopic creates the topic once when CreateTopic is set, retrying
// transient failures until ctx is done.
func (p *Producer) ensureTopic(ctx context.Context) error {
	p.topicMu.Lock()
	defer p.topicMu.Unlock()
	if p.topicReady {
		return nil
	}
	if err := createTopic(ctx, p.cl, p.cfg.Topic, p.cfg.Partitions, p.cfg.ReplicationFactor, p.cfg.MaxMessageBytes); err != nil {
		return err
	}
	p.topicReady = true
	p.cfg.Logger.Info("kafka topic ready", "topic", p.cfg.Topic)
	return nil
}

// createTopic creates topic unless it exists. Transient errors (broker
// unreachable, no controller) are retried with backoff until ctx is done.
func createTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int32, rf int16, maxMessageBytes int) error {
	adm := kadm.NewClient(cl)
	mmb := strconv.Itoa(maxMessageBytes)
	configs := map[string]*string{"max.message.bytes": &mmb}
	backoff := 100 * time.Millisecond
	for {
		_, err := adm.CreateTopic(ctx, partitions, rf, configs, topic)
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			return nil
		}
		var ke *kerr.Error
		if errors.As(err, &ke) && !ke.Retriable {
			return fmt.Errorf("create kafka topic %s: %w", topic, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create kafka topic %s: %w (last error: %v)", topic, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Close closes the client. Records of a Publish call abandoned through its
// context and not yet acknowledged are failed.
func (p *Producer) Close() error {
	p.cl.Close()
	return nil
}
