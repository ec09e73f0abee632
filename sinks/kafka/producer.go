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
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Producer publishes bus messages to one Kafka topic with an idempotent
// producer (acks=all, no compression, murmur2 key partitioning). It is safe
// for concurrent use.
type Producer struct {
	cfg  ProducerConfig
	cl   *kgo.Client
	hook *connHook

	// batchMax is franz-go's batch limit for cfg.Topic. franz-go reads it
	// once per partition, when it first learns the partition, which is
	// after the first Produce, so after ensureTopic stored the topic's
	// limit here.
	batchMax atomic.Int32

	topicMu      sync.Mutex
	topicCreated bool   // CreateTopic done (or not asked for)
	topicReady   bool   // limit known; records may be produced
	limit        int    // effective record limit, min(MaxMessageBytes, topic's max.message.bytes)
	limitFrom    string // what set limit, for the bus.ErrTooLarge error
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
	p := &Producer{cfg: cfg, hook: hook, topicCreated: !cfg.CreateTopic}
	p.batchMax.Store(int32(cfg.MaxMessageBytes))
	opts = append(opts, producerOpts(cfg.Topic, cfg.MaxMessageBytes, cfg.MaxBufferedBytes, cfg.Linger)...)
	// Overrides producerOpts' fixed ProducerBatchMaxBytes: the topic's
	// limit is only known at the first Publish.
	opts = append(opts, kgo.ProducerBatchMaxBytesFn(func(topic string) int32 {
		if topic == cfg.Topic {
			return p.batchMax.Load()
		}
		return int32(cfg.MaxMessageBytes)
	}))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: new client: %w", err)
	}
	p.cl = cl
	return p, nil
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
// at-least-once (see doc.go). A message over MaxMessageBytes, or over the
// topic's max.message.bytes when that is smaller, fails the whole call with
// an error wrapping bus.ErrTooLarge before anything is sent.
func (p *Producer) Publish(ctx context.Context, msgs []schemas.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, len(msgs))
	for i := range msgs {
		recs[i] = messageRecord(&msgs[i])
	}
	return p.publish(ctx, recs, func(i int) string { return msgs[i].ID() })
}

// PublishRecords is Publish for records that are not flow messages (the
// OCSF events of 'flowbus ocsf'): key = Key, value = Value, headers =
// Headers in order; ID is not used. Same acknowledgement, ordering,
// blocking and size rules as Publish; a record is named by its index in
// errors.
func (p *Producer) PublishRecords(ctx context.Context, recs []bus.Record) error {
	if len(recs) == 0 {
		return nil
	}
	out := make([]*kgo.Record, len(recs))
	for i := range recs {
		r := &recs[i]
		out[i] = &kgo.Record{Key: []byte(r.Key), Value: r.Value, Headers: make([]kgo.RecordHeader, len(r.Headers))}
		if out[i].Key == nil {
			out[i].Key = []byte{}
		}
		for j, h := range r.Headers {
			out[i].Headers[j] = kgo.RecordHeader{Key: h[0], Value: []byte(h[1])}
		}
	}
	return p.publish(ctx, out, func(i int) string { return "record " + strconv.Itoa(i) + " (key " + strconv.Quote(recs[i].Key) + ")" })
}

// Ready returns once the topic is known to the brokers (created first with
// CreateTopic) and its record limit read, as the first Publish does; it
// lets a command find a wrong address, a missing topic or refused
// credentials at start rather than at its first message. While no broker
// answers it retries until ctx is done, and the error then says the last
// connection failure.
func (p *Producer) Ready(ctx context.Context) error {
	_, _, err := p.ensureTopic(ctx)
	return p.hook.explain(err)
}

// publish checks the size of recs (name says which one is too large),
// makes sure the topic is ready and produces them all.
func (p *Producer) publish(ctx context.Context, recs []*kgo.Record, name func(int) string) error {
	for i, r := range recs {
		if n := recordSize(r); n > p.cfg.MaxMessageBytes {
			return fmt.Errorf("kafka publish %s: %d bytes over max message bytes %d: %w", name(i), n, p.cfg.MaxMessageBytes, bus.ErrTooLarge)
		}
	}
	limit, from, err := p.ensureTopic(ctx)
	if err != nil {
		return p.hook.explain(err)
	}
	if limit < p.cfg.MaxMessageBytes {
		for i, r := range recs {
			if n := recordSize(r); n > limit {
				return fmt.Errorf("kafka publish %s: %d bytes over %s (raise the topic's max.message.bytes, or keep messages smaller): %w", name(i), n, from, bus.ErrTooLarge)
			}
		}
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

// ensureTopic runs before the first record is produced: it creates the
// topic once when CreateTopic is set, then reads the topic's max.message.bytes
// and, when that is below MaxMessageBytes, makes it the record and batch
// limit. Transient failures are retried until ctx is done; the next call
// starts over after an error. It returns the record limit and what set it.
func (p *Producer) ensureTopic(ctx context.Context) (int, string, error) {
	p.topicMu.Lock()
	defer p.topicMu.Unlock()
	if p.topicReady {
		return p.limit, p.limitFrom, nil
	}
	if !p.topicCreated {
		if err := createTopic(ctx, p.cl, p.cfg.Topic, p.cfg.Partitions, p.cfg.ReplicationFactor, p.cfg.MaxMessageBytes); err != nil {
			return 0, "", err
		}
		p.topicCreated = true
		p.cfg.Logger.Info("kafka topic ready", "topic", p.cfg.Topic)
	}
	limit, src, err := recordLimit(ctx, p.cl, p.cfg.Logger, p.cfg.Topic, p.cfg.MaxMessageBytes, p.cfg.CreateTopic)
	if err != nil {
		return 0, "", err
	}
	from := "max message bytes " + strconv.Itoa(p.cfg.MaxMessageBytes)
	if limit < p.cfg.MaxMessageBytes {
		from = fmt.Sprintf("topic %s max.message.bytes %d", p.cfg.Topic, limit)
		p.cfg.Logger.Info("kafka topic max.message.bytes is below the configured max message bytes; using it for records and batches",
			"topic", p.cfg.Topic, "max.message.bytes", limit, "source", src, "max_message_bytes", p.cfg.MaxMessageBytes)
	}
	// No record of this topic has been produced yet: franz-go reads the
	// batch limit at the first Produce below.
	p.batchMax.Store(int32(limit))
	p.limit, p.limitFrom, p.topicReady = limit, from, true
	return limit, from, nil
}

// recordLimit is the record limit for topic: configured, or the topic's
// max.message.bytes when that is lower (src then says where that value
// comes from). When the topic's value cannot be read (errNoTopicLimit), a
// warning is logged and configured stands; other errors of
// topicMaxMessageBytes are returned.
func recordLimit(ctx context.Context, cl *kgo.Client, log *slog.Logger, topic string, configured int, created bool) (limit int, src string, err error) {
	mmb, src, err := topicMaxMessageBytes(ctx, cl, topic, created)
	switch {
	case errors.Is(err, errNoTopicLimit):
		log.Warn("kafka topic max.message.bytes unknown; keeping the configured max message bytes",
			"topic", topic, "max_message_bytes", configured, "err", err)
		return configured, "", nil
	case err != nil:
		return 0, "", err
	}
	return min(configured, mmb), src, nil
}

// errNoTopicLimit wraps the failures to learn a topic's max.message.bytes
// that retrying does not fix (DescribeConfigs denied, no value reported).
var errNoTopicLimit = errors.New("cannot read the topic's max.message.bytes")

// topicMaxMessageBytes returns the effective max.message.bytes of topic (its
// override, else the broker's message.max.bytes) and where it comes from.
// Transient errors are retried with backoff until ctx is done. A missing
// topic is an error at once unless it was just created (created), when
// brokers may still be learning of it. Errors that retrying cannot fix wrap
// errNoTopicLimit.
func topicMaxMessageBytes(ctx context.Context, cl *kgo.Client, topic string, created bool) (int, string, error) {
	adm := kadm.NewClient(cl)
	pause := firstPause
	for {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err == nil {
			var rc kadm.ResourceConfig
			if rc, err = rcs.On(topic, nil); err == nil {
				err = rc.Err
			}
			if err == nil {
				for _, c := range rc.Configs {
					if c.Key != "max.message.bytes" {
						continue
					}
					if c.Value == nil {
						return 0, "", fmt.Errorf("describe kafka topic %s: %w: no value reported", topic, errNoTopicLimit)
					}
					n, perr := strconv.Atoi(*c.Value)
					if perr != nil || n <= 0 {
						return 0, "", fmt.Errorf("describe kafka topic %s: %w: value %q", topic, errNoTopicLimit, *c.Value)
					}
					return n, c.Source.String(), nil
				}
				return 0, "", fmt.Errorf("describe kafka topic %s: %w: not reported", topic, errNoTopicLimit)
			}
		}
		if errors.Is(err, kgo.ErrClientClosed) {
			return 0, "", fmt.Errorf("describe kafka topic %s: %w", topic, err)
		}
		if errors.Is(err, kerr.UnknownTopicOrPartition) && !created {
			return 0, "", fmt.Errorf("kafka publish: topic %s does not exist (create it, or enable topic creation): %w", topic, err)
		}
		var ke *kerr.Error
		if errors.As(err, &ke) && !ke.Retriable {
			return 0, "", fmt.Errorf("describe kafka topic %s: %w: %w", topic, errNoTopicLimit, err)
		}
		if werr := wait(ctx, &pause); werr != nil {
			return 0, "", fmt.Errorf("describe kafka topic %s: %w (last error: %v)", topic, werr, err)
		}
	}
}

// createTopic creates topic unless it exists. Transient errors (broker
// unreachable, no controller) are retried with backoff until ctx is done.
func createTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int32, rf int16, maxMessageBytes int) error {
	adm := kadm.NewClient(cl)
	mmb := strconv.Itoa(maxMessageBytes)
	configs := map[string]*string{"max.message.bytes": &mmb}
	pause := firstPause
	for {
		_, err := adm.CreateTopic(ctx, partitions, rf, configs, topic)
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			return nil
		}
		var ke *kerr.Error
		if errors.As(err, &ke) && !ke.Retriable {
			return fmt.Errorf("create kafka topic %s: %w", topic, err)
		}
		if werr := wait(ctx, &pause); werr != nil {
			return fmt.Errorf("create kafka topic %s: %w (last error: %v)", topic, werr, err)
		}
	}
}

// firstPause is the first wait between attempts of an admin request that
// failed transiently; wait doubles it up to 2 s.
const firstPause = 100 * time.Millisecond

// wait sleeps *pause, or returns ctx.Err() if ctx ends first, and doubles
// *pause up to 2 s for the next attempt.
func wait(ctx context.Context, pause *time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(*pause):
	}
	*pause = min(2**pause, 2*time.Second)
	return nil
}

// Close closes the client. Records of a Publish call abandoned through its
// context and not yet acknowledged are failed.
func (p *Producer) Close() error {
	p.cl.Close()
	return nil
}
