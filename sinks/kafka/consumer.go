package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ConsumerConfig configures a group Consumer. Zero fields take the Default*
// values.
type ConsumerConfig struct {
	Conn
	Topic    string // default DefaultTopic
	Group    string // consumer group; default DefaultGroup
	DLQTopic string // dead-letter topic; default Topic + DefaultDLQSuffix
	// MaxPollRecords bounds one Poll; default DefaultMaxPollRecords.
	MaxPollRecords int
	// MaxMessageBytes bounds a dead-letter record and is the DLQ topic's
	// max.message.bytes on creation; default DefaultMaxMessageBytes.
	MaxMessageBytes int
	// CreateDLQTopic creates DLQTopic (Partitions, ReplicationFactor) on the
	// first DeadLetter call when it is missing.
	CreateDLQTopic    bool
	Partitions        int32 // default DefaultPartitions
	ReplicationFactor int16 // default DefaultReplicationFactor
	// SessionTimeout and RebalanceTimeout are the group timeouts; zero keeps
	// franz-go's defaults (45 s and 60 s). The caller must come back to Poll
	// within RebalanceTimeout of a rebalance starting.
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
	// InstanceID, if set, makes the consumer a static member of the group
	// (KIP-345): restarted with the same id it takes its partitions back at
	// once, with no rebalance and without waiting for its old session to
	// expire; it does not leave the group when closed, so a consumer that
	// stops for good holds its partitions until SessionTimeout. Two live
	// consumers with one id fence each other: each must have its own.
	InstanceID string

	// OnAssigned is called with the partitions newly given to this member,
	// before any of their records is returned.
	OnAssigned func(partitions []int32)
	// OnRevoked is called with partitions about to be given to another
	// member, before they move: the caller writes what it holds for them and
	// calls Commit from inside the callback. Also called from Close.
	OnRevoked func(partitions []int32)
	// OnLost is called with partitions this member lost without a clean
	// handover (session expired): a commit for them would fail, so the caller
	// drops their uncommitted state. Nil means OnRevoked.
	OnLost func(partitions []int32)
	Logger *slog.Logger
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.DLQTopic == "" {
		c.DLQTopic = c.Topic + DefaultDLQSuffix
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = DefaultMaxPollRecords
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	if c.OnLost == nil {
		c.OnLost = c.OnRevoked
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first problem with c (after defaults), naming the field.
func (c ConsumerConfig) Validate() error {
	c = c.withDefaults()
	if err := c.Conn.validate(); err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	if err := validTopic(c.Topic); err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	if err := validTopic(c.DLQTopic); err != nil {
		return fmt.Errorf("kafka consumer: dead-letter %w", err)
	}
	if c.DLQTopic == c.Topic {
		return fmt.Errorf("kafka consumer: dead-letter topic equals the topic %s", c.Topic)
	}
	if c.MaxPollRecords < 1 {
		return fmt.Errorf("kafka consumer: max poll records %d, want >= 1", c.MaxPollRecords)
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 1<<30 {
		return fmt.Errorf("kafka consumer: max message bytes %d out of range [1024, 1GiB]", c.MaxMessageBytes)
	}
	if c.Partitions < 1 {
		return fmt.Errorf("kafka consumer: partitions %d, want >= 1", c.Partitions)
	}
	if c.ReplicationFactor < -1 {
		return fmt.Errorf("kafka consumer: replication factor %d, want >= 1 or -1", c.ReplicationFactor)
	}
	if c.SessionTimeout < 0 || c.RebalanceTimeout < 0 {
		return errors.New("kafka consumer: negative group timeout")
	}
	return nil
}

// Consumer reads the topic as a member of a consumer group, with offsets
// committed only by Commit. Rebalance callbacks run only while the caller is
// inside Poll, Commit or Close, never while it processes what Poll returned
// (franz-go's BlockRebalanceOnPoll): Poll, Commit, DeadLetter and Close are
// meant for one goroutine.
type Consumer struct {
	cfg ConsumerConfig
	cl  *kgo.Client

	dlqMu    sync.Mutex
	dlqReady bool // DLQTopic created (or creation not asked for)
	dlqLimit int  // record limit learnt from DLQTopic's max.message.bytes; 0 until known
}

// NewConsumer returns a Consumer that joins cfg.Group on the first Poll. With
// no committed offset, a partition is read from its start.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts, err := cfg.Conn.opts()
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	c := &Consumer{cfg: cfg, dlqReady: !cfg.CreateDLQTopic}
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxPartitionBytes(int32(max(cfg.MaxMessageBytes, 1<<20))),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if ps := m[cfg.Topic]; len(ps) > 0 && cfg.OnAssigned != nil {
				cfg.OnAssigned(sorted(ps))
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if ps := m[cfg.Topic]; len(ps) > 0 && cfg.OnRevoked != nil {
				cfg.OnRevoked(sorted(ps))
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if ps := m[cfg.Topic]; len(ps) > 0 && cfg.OnLost != nil {
				cfg.OnLost(sorted(ps))
			}
		}),
	)
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout))
	}
	if cfg.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(cfg.RebalanceTimeout))
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	// The same client produces dead letters.
	opts = append(opts, producerOpts(cfg.DLQTopic, cfg.MaxMessageBytes, 4*cfg.MaxMessageBytes, 0)...)
	c.cl, err = kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: new client: %w", err)
	}
	return c, nil
}

func sorted(ps []int32) []int32 {
	ps = slices.Clone(ps)
	slices.Sort(ps)
	return ps
}

// Poll returns the next records, at most MaxPollRecords, in offset order per
// partition; it blocks until there is at least one or ctx is done (then it
// returns ctx.Err() and no records). Once the Consumer is closed it returns
// an error wrapping bus.ErrClosed. Calling Poll declares the records of the
// previous Poll processed: a pending rebalance runs its callbacks inside this
// call. Fetch errors that franz-go retries by itself are logged, not returned.
func (c *Consumer) Poll(ctx context.Context) ([]bus.Delivery, error) {
	c.cl.AllowRebalance()
	fs := c.cl.PollRecords(ctx, c.cfg.MaxPollRecords)
	if fs.IsClientClosed() {
		return nil, fmt.Errorf("kafka %w", bus.ErrClosed)
	}
	var out []bus.Delivery
	fs.EachRecord(func(r *kgo.Record) {
		d := bus.Delivery{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Time: r.Timestamp}
		d.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			d.Headers[h.Key] = string(h.Value)
		}
		out = append(out, d)
	})
	var pollErr error
	fs.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			pollErr = err
			return
		}
		c.cfg.Logger.Warn("kafka fetch error", "topic", t, "partition", p, "err", err)
	})
	if len(out) == 0 && pollErr != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("kafka poll: %w", pollErr)
	}
	return out, nil
}

// Commit commits, for each partition, the offset of the next record to read
// (last processed offset + 1), synchronously. It fails, wrapping the broker's
// error, for partitions this member no longer owns; call it from the caller's
// loop or from OnRevoked.
func (c *Consumer) Commit(ctx context.Context, next map[int32]int64) error {
	if len(next) == 0 {
		return nil
	}
	ps := make(map[int32]kgo.EpochOffset, len(next))
	for p, o := range next {
		if o < 0 {
			return fmt.Errorf("kafka commit: partition %d: negative offset %d", p, o)
		}
		ps[p] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	var cerr error
	c.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{c.cfg.Topic: ps},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				cerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
						cerr = fmt.Errorf("partition %d: %w", p.Partition, e)
					}
				}
			}
		})
	if cerr != nil {
		return fmt.Errorf("kafka commit group %s: %w", c.cfg.Group, cerr)
	}
	return nil
}

// DeadLetter publishes d's key, value and headers to DLQTopic, with the
// headers of bus.DeadLetterHeaders, and waits for the acknowledgement. The
// caller commits d's offset only after it returned nil.
//
// A value too large for the dead-letter topic (MaxMessageBytes, or the
// topic's max.message.bytes when that is lower) is cut to fit, with
// bus.HeaderDLQTruncated giving its original length, and a warning is
// logged: one oversized bad message must not stop its partition for good,
// and the whole of it stays in the topic at the offset the headers name
// while retention keeps it. When the key and headers alone exceed the
// limit, the error wraps bus.ErrTooLarge.
func (c *Consumer) DeadLetter(ctx context.Context, d bus.Delivery, reason string) error {
	limit, err := c.ensureDLQ(ctx)
	if err != nil {
		return err
	}
	hs := bus.DeadLetterHeaders(d, reason)
	rec := &kgo.Record{Topic: c.cfg.DLQTopic, Key: d.Key, Value: d.Value, Headers: make([]kgo.RecordHeader, len(hs), len(hs)+1)}
	if rec.Key == nil {
		rec.Key = []byte{}
	}
	for i, h := range hs {
		rec.Headers[i] = kgo.RecordHeader{Key: h[0], Value: []byte(h[1])}
	}
	if recordSize(rec) > limit {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: bus.HeaderDLQTruncated, Value: []byte(strconv.Itoa(len(d.Value)))})
		over := recordSize(rec) - limit
		if over > len(rec.Value) {
			return fmt.Errorf("kafka dead letter %s/%d@%d: key and headers alone take %d bytes, over the dead-letter limit %d: %w",
				d.Topic, d.Partition, d.Offset, recordSize(rec)-len(rec.Value), limit, bus.ErrTooLarge)
		}
		rec.Value = rec.Value[:len(rec.Value)-over]
		c.cfg.Logger.Warn("kafka dead letter cut to fit the dead-letter topic; the whole message stays at its offset in the topic",
			"topic", d.Topic, "partition", d.Partition, "offset", d.Offset, "bytes", len(d.Value), "kept", len(rec.Value),
			"dlq_topic", c.cfg.DLQTopic, "limit", limit)
	}
	if err := produceAll(ctx, c.cl, []*kgo.Record{rec}, c.cfg.DLQTopic); err != nil {
		if errors.Is(err, kerr.MessageTooLarge) {
			// The topic's limit was lowered since it was read: read it
			// again on the next attempt.
			c.dlqMu.Lock()
			c.dlqLimit = 0
			c.dlqMu.Unlock()
		}
		return fmt.Errorf("kafka dead letter %d@%d: %w", d.Partition, d.Offset, err)
	}
	return nil
}

// ensureDLQ creates DLQTopic on first use when CreateDLQTopic is set, and
// returns the dead-letter record limit: MaxMessageBytes, or the topic's
// max.message.bytes when that is lower. If that cannot be read (describe
// denied), a warning is logged once and MaxMessageBytes stands. A topic
// that does not exist yet (and was not created here) is looked up again
// on the next call, since producing to it may create it.
func (c *Consumer) ensureDLQ(ctx context.Context) (int, error) {
	c.dlqMu.Lock()
	defer c.dlqMu.Unlock()
	if c.dlqLimit > 0 {
		return c.dlqLimit, nil
	}
	if !c.dlqReady {
		if err := createTopic(ctx, c.cl, c.cfg.DLQTopic, c.cfg.Partitions, c.cfg.ReplicationFactor, c.cfg.MaxMessageBytes); err != nil {
			return 0, err
		}
		c.dlqReady = true
	}
	limit, _, err := recordLimit(ctx, c.cl, c.cfg.Logger, c.cfg.DLQTopic, c.cfg.MaxMessageBytes, c.cfg.CreateDLQTopic)
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return c.cfg.MaxMessageBytes, nil
	case err != nil:
		return 0, fmt.Errorf("kafka dead letter: %w", err)
	}
	c.dlqLimit = limit
	return limit, nil
}

// Close leaves the group, calling OnRevoked for the partitions held (the
// caller can still Commit from it), and closes the client.
func (c *Consumer) Close() error {
	c.cl.AllowRebalance()
	c.cl.Close()
	return nil
}
