package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowbus/flowbus/sinks/bus"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerConfig configures a Consumer. Zero fields take the defaults.
type ConsumerConfig struct {
	Conn
	Stream     StreamConfig // created if missing, as by the Publisher
	Partitions int          // default DefaultPartitions; must match the publishers'
	// Assigned lists the partitions this instance reads; default all. Each
	// partition must be read by one instance at a time (see doc.go).
	Assigned []int32
	// Durable names the consumers: one per partition, <Durable>-p<NN>.
	// Default DefaultDurable.
	Durable string
	// AckWait is how long a delivered, uncommitted message waits before the
	// server sends it again (Poll drops such repeats); default DefaultAckWait.
	AckWait time.Duration
	// MaxAckPending bounds delivered, uncommitted messages per partition:
	// the server pauses the partition there until Commit. Default
	// DefaultMaxAckPending.
	MaxAckPending int
	// CommitTimeout bounds the wait for the server's confirmation of one
	// partition's commit; default DefaultAckTimeout. Commit then fails and
	// the caller commits again later: an ack sent while the server restarts
	// can go unanswered, and a commit that waited for ever would stop the
	// caller from polling again (seen in CI: an aggregator read nothing for
	// 2 minutes after a NATS restart).
	CommitTimeout time.Duration
	// PullMaxBytes bounds what is buffered per partition ahead of Poll; at
	// least twice the stream's MaxMsgSize. Default DefaultPullMaxBytes, or
	// twice MaxMsgSize if that is more.
	PullMaxBytes   int
	MaxPollRecords int    // default DefaultMaxPollRecords
	DLQStream      string // default DefaultDLQStream
	DLQSubject     string // default DefaultDLQSubject
	// OnAssigned is called inside the first Poll with the partitions read;
	// OnRevoked inside Close, before they are released, so that the caller
	// can write and Commit.
	OnAssigned func(partitions []int32)
	OnRevoked  func(partitions []int32)
	Logger     *slog.Logger
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	c.Conn = c.Conn.withDefaults()
	c.Stream = c.Stream.withDefaults()
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if len(c.Assigned) == 0 {
		c.Assigned = make([]int32, c.Partitions)
		for i := range c.Assigned {
			c.Assigned[i] = int32(i)
		}
	}
	if c.Durable == "" {
		c.Durable = DefaultDurable
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = DefaultAckTimeout
	}
	if c.PullMaxBytes == 0 {
		c.PullMaxBytes = max(DefaultPullMaxBytes, 2*int(c.Stream.MaxMsgSize))
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = DefaultMaxPollRecords
	}
	if c.DLQStream == "" {
		c.DLQStream = DefaultDLQStream
	}
	if c.DLQSubject == "" {
		c.DLQSubject = DefaultDLQSubject
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
		return fmt.Errorf("nats consumer: %w", err)
	}
	if err := c.Stream.validate(); err != nil {
		return fmt.Errorf("nats consumer: %w", err)
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		return fmt.Errorf("nats consumer: partitions %d, want 1..%d", c.Partitions, MaxPartitions)
	}
	seen := map[int32]bool{}
	for _, p := range c.Assigned {
		if p < 0 || int(p) >= c.Partitions {
			return fmt.Errorf("nats consumer: assigned partition %d outside 0..%d", p, c.Partitions-1)
		}
		if seen[p] {
			return fmt.Errorf("nats consumer: partition %d assigned twice", p)
		}
		seen[p] = true
	}
	if err := validName(c.Durable); err != nil {
		return fmt.Errorf("nats consumer: durable: %w", err)
	}
	if err := validName(c.DLQStream); err != nil {
		return fmt.Errorf("nats consumer: dead-letter stream: %w", err)
	}
	if c.DLQStream == c.Stream.Name {
		return fmt.Errorf("nats consumer: dead-letter stream equals the stream %s", c.Stream.Name)
	}
	if err := validSubject(c.DLQSubject); err != nil {
		return fmt.Errorf("nats consumer: dead-letter %w", err)
	}
	if strings.HasPrefix(c.DLQSubject, c.Stream.SubjectPrefix+".") {
		return fmt.Errorf("nats consumer: dead-letter subject %s lies inside the stream's subjects %s.>", c.DLQSubject, c.Stream.SubjectPrefix)
	}
	if c.AckWait < time.Second {
		return fmt.Errorf("nats consumer: ack wait %s, want >= 1s", c.AckWait)
	}
	if c.CommitTimeout < 0 {
		return fmt.Errorf("nats consumer: commit timeout %s, want > 0", c.CommitTimeout)
	}
	if c.MaxAckPending < 1 {
		return fmt.Errorf("nats consumer: max ack pending %d, want >= 1", c.MaxAckPending)
	}
	if c.PullMaxBytes < 2*int(c.Stream.MaxMsgSize) {
		return fmt.Errorf("nats consumer: pull max bytes %d below twice the max msg size %d", c.PullMaxBytes, c.Stream.MaxMsgSize)
	}
	if c.MaxPollRecords < 1 {
		return fmt.Errorf("nats consumer: max poll records %d, want >= 1", c.MaxPollRecords)
	}
	return nil
}

// Consumer reads the partitions of the stream through one durable pull
// consumer per partition (filter subject <prefix>.<p>, ack policy "all"),
// in stream order per partition. Poll, Commit, DeadLetter and Close are
// meant for one goroutine.
type Consumer struct {
	cfg ConsumerConfig
	nc  *natsgo.Conn
	js  jetstream.JetStream

	parts map[int32]*partition
	items chan item
	stop  chan struct{}
	// reconnected has a value once the connection came back after a loss:
	// Poll then subscribes every partition again (resubscribe).
	reconnected chan struct{}
	started     bool
	closed      bool
	dlqReady    bool
	dlqMax      int32 // the dead-letter stream's max_msg_size (≤ 0: none)
}

// errClosed is what Poll returns once the Consumer is closed.
var errClosed = fmt.Errorf("nats %w", bus.ErrClosed)

// partition is one partition's pull subscription. Its messages reach Poll
// through Consume's handler, which blocks on the items channel (nats.go
// holds what the server sent meanwhile, at most PullMaxBytes). Consume
// rather than Messages: with PullMaxBytes, nats.go gives Messages' iterator
// a channel of 1,000,000 message pointers (8 MB) per partition, which the
// aggregator's process zeroed at start and its GC scanned in every cycle
// (16 partitions: 128 MB, most of its heap).
type partition struct {
	cc        jetstream.ConsumeContext
	gen       uint64        // subscriptions so far; an item of an older one is stale
	quit      chan struct{} // closed when the subscription is replaced
	mu        sync.Mutex    // lastErr
	lastErr   string
	delivered uint64    // highest stream sequence handed out
	pending   []pending // handed out, not committed, ascending
	repeats   int       // resent by the server after AckWait, dropped
}

type pending struct {
	seq   uint64
	reply string // "" once void: its consumer was replaced (resubscribe)
}

type item struct {
	p   int32
	gen uint64
	msg jetstream.Msg
}

// NewConsumer connects to cfg.URL; the streams and consumers are set up by
// the first Poll, which retries while the server is unavailable.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	nc, err := connect(cfg.Conn, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("nats consumer: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats consumer: jetstream: %w", err)
	}
	c := &Consumer{cfg: cfg, nc: nc, js: js, parts: map[int32]*partition{},
		items: make(chan item, cfg.MaxPollRecords), stop: make(chan struct{}), reconnected: make(chan struct{}, 1)}
	prev := nc.Opts.ReconnectedCB
	nc.SetReconnectHandler(func(n *natsgo.Conn) {
		if prev != nil {
			prev(n)
		}
		select {
		case c.reconnected <- struct{}{}:
		default:
		}
	})
	return c, nil
}

// ConsumerName returns the durable consumer name of partition p.
func ConsumerName(durable string, p int32) string { return fmt.Sprintf("%s-p%02d", durable, p) }

// start ensures the stream and (re)creates each partition's durable
// consumer so that it resumes right after its ack floor (the last commit),
// then subscribes to each partition (Consume).
func (c *Consumer) start(ctx context.Context) error {
	if err := ensureStream(ctx, c.js, c.cfg.Stream.jetstream(), c.cfg.Logger); err != nil {
		return fmt.Errorf("nats consumer: %w", err)
	}
	for _, p := range c.cfg.Assigned {
		if _, ok := c.parts[p]; ok {
			continue
		}
		cons, err := c.resumeRetry(ctx, p)
		if err != nil {
			return err
		}
		ps := &partition{}
		if err := c.consume(p, ps, cons); err != nil {
			return err
		}
		c.parts[p] = ps
	}
	return nil
}

// resumeRetry is resume, retried while the server is unavailable.
func (c *Consumer) resumeRetry(ctx context.Context, p int32) (jetstream.Consumer, error) {
	backoff := 50 * time.Millisecond
	for {
		cons, err := c.resume(ctx, p)
		if err == nil {
			return cons, nil
		}
		if fatal(err) || gone(err) || !sleep(ctx, backoff) {
			return nil, fmt.Errorf("nats consumer %s: %w", ConsumerName(c.cfg.Durable, p), errors.Join(err, ctx.Err()))
		}
		backoff = min(2*backoff, time.Second)
	}
}

// consume subscribes ps to partition p's durable consumer cons, as a new
// generation: items of the ones before are stale.
func (c *Consumer) consume(p int32, ps *partition, cons jetstream.Consumer) error {
	ps.gen++
	gen, quit := ps.gen, make(chan struct{})
	ps.quit = quit
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case c.items <- item{p, gen, m}:
		case <-quit:
		case <-c.stop:
		}
	}, jetstream.PullMaxBytes(c.cfg.PullMaxBytes), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		ps.readError(c.cfg.Logger, p, err)
	}))
	if err != nil {
		return fmt.Errorf("nats consumer %s: consume: %w", ConsumerName(c.cfg.Durable, p), err)
	}
	ps.cc = cc
	return nil
}

// resubscribe replaces every partition's subscription after the connection
// came back. Decision: after a server restart, nats.go's pull subscriptions
// sometimes never pulled again (the aggregator reconnected and then read
// nothing for minutes while hundreds of messages waited: seen in CI with
// both the Messages iterator and Consume), so the consumer does not rely
// on them. Each partition's durable consumer is created again right after
// its ack floor (resume), as at start: the server then sends, in order,
// the messages delivered but not committed, which Poll drops as repeats
// (the caller has them) but whose new reply subjects it keeps for Commit
// (the old consumer's are void), and then the rest. Items the old
// subscription had queued and Poll had not handed out are dropped as stale:
// they come again from the new one, in order.
func (c *Consumer) resubscribe(ctx context.Context) error {
	for _, p := range slices.Sorted(maps.Keys(c.parts)) {
		ps := c.parts[p]
		close(ps.quit)
		ps.cc.Stop()
		cons, err := c.resumeRetry(ctx, p)
		if err != nil {
			return err
		}
		for i := range ps.pending {
			ps.pending[i].reply = ""
		}
		if err := c.consume(p, ps, cons); err != nil {
			return err
		}
	}
	c.cfg.Logger.Info("nats consumer: subscribed again after the connection came back", "partitions", len(c.parts))
	return nil
}

// resume deletes partition p's durable consumer, if any, and creates it
// again starting right after its ack floor: messages delivered but not
// committed by the previous run come back at once, not after AckWait.
func (c *Consumer) resume(ctx context.Context, p int32) (jetstream.Consumer, error) {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	name := ConsumerName(c.cfg.Durable, p)
	cc := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "flowbus aggregator, partition " + strconv.Itoa(int(p)),
		FilterSubject: Subject(c.cfg.Stream.SubjectPrefix, int(p)),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       c.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.cfg.MaxAckPending,
	}
	old, err := c.js.Consumer(actx, c.cfg.Stream.Name, name)
	switch {
	case err == nil:
		info := old.CachedInfo()
		if floor := info.AckFloor.Stream; floor > 0 {
			cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
			cc.OptStartSeq = floor + 1
		}
		if err := c.js.DeleteConsumer(actx, c.cfg.Stream.Name, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, err
	}
	return c.js.CreateConsumer(actx, c.cfg.Stream.Name, cc)
}

// readError logs an error of partition p's pull subscription, once until
// another error comes. nats.go goes on pulling after it (it reconnects and
// pulls again itself); it is called from nats.go's goroutines.
func (ps *partition) readError(log *slog.Logger, p int32, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if err.Error() != ps.lastErr {
		log.Warn("nats consumer read error", "partition", p, "err", err)
		ps.lastErr = err.Error()
	}
}

// Poll returns the next messages, at most MaxPollRecords, in stream order
// per partition; it blocks until there is at least one or ctx is done (then
// it returns ctx.Err()); once the Consumer is closed it returns an error
// wrapping bus.ErrClosed. The first Poll sets up the consumers and calls
// OnAssigned. A message the server sends again because it was not committed
// within AckWait is dropped here: the caller already has it.
func (c *Consumer) Poll(ctx context.Context) ([]bus.Delivery, error) {
	if c.closed {
		return nil, errClosed
	}
	if !c.started {
		if err := c.start(ctx); err != nil {
			return nil, err
		}
		c.started = true
		if c.cfg.OnAssigned != nil {
			c.cfg.OnAssigned(slices.Sorted(slices.Values(c.cfg.Assigned)))
		}
	}
	var out []bus.Delivery
	add := func(it item) {
		if d, ok := c.delivery(it); ok {
			out = append(out, d)
		}
	}
	check := time.NewTicker(time.Second) // while waiting: has nats.go given up?
	defer check.Stop()
	for len(out) == 0 {
		select {
		case <-c.reconnected:
			if err := c.resubscribe(ctx); err != nil {
				return nil, err
			}
		case it := <-c.items:
			add(it)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.stop:
			return nil, errClosed
		case <-check.C:
			select {
			case <-c.stop: // our own Close, which closes the connection too
				return nil, errClosed
			default:
			}
			if err := c.lost(); err != nil {
				return nil, err
			}
		}
	drain:
		for len(out) < c.cfg.MaxPollRecords {
			select {
			case it := <-c.items:
				add(it)
			default:
				break drain
			}
		}
	}
	return out, nil
}

// lost returns an error when nats.go has closed the connection for good (a
// server error it does not retry): the subscriptions would wait for ever, so the
// caller stops instead, and a restart resumes after the last commit.
func (c *Consumer) lost() error {
	if !c.nc.IsClosed() {
		return nil
	}
	return fmt.Errorf("nats consumer: the client library closed the connection and does not retry (%v); restart to resume after the last commit", c.nc.LastError())
}

func (c *Consumer) delivery(it item) (bus.Delivery, bool) {
	meta, err := it.msg.Metadata()
	if err != nil {
		c.cfg.Logger.Warn("nats consumer: message without jetstream metadata", "partition", it.p, "err", err)
		return bus.Delivery{}, false
	}
	ps := c.parts[it.p]
	if it.gen != ps.gen {
		return bus.Delivery{}, false // stale: the new subscription sends it again
	}
	seq := meta.Sequence.Stream
	if seq <= ps.delivered {
		ps.repeats++
		i := sort.Search(len(ps.pending), func(i int) bool { return ps.pending[i].seq >= seq })
		if i < len(ps.pending) && ps.pending[i].seq == seq && ps.pending[i].reply == "" {
			ps.pending[i].reply = it.msg.Reply() // after resubscribe: the live consumer's
		}
		return bus.Delivery{}, false
	}
	ps.delivered = seq
	ps.pending = append(ps.pending, pending{seq: seq, reply: it.msg.Reply()})
	d := bus.Delivery{Topic: it.msg.Subject(), Partition: it.p, Offset: int64(seq), Value: it.msg.Data(), Time: meta.Timestamp}
	h := it.msg.Headers()
	d.Headers = make(map[string]string, len(h))
	for k, vs := range h {
		if len(vs) > 0 {
			d.Headers[k] = vs[0]
		}
	}
	d.Key = []byte(d.Headers[HeaderKey])
	return d, true
}

// Commit acknowledges, per partition, every delivered message with an offset
// below the given next offset (one ack-all of the last of them, waiting for
// the server's confirmation at most CommitTimeout). A restarted Consumer resumes after the
// committed messages.
func (c *Consumer) Commit(ctx context.Context, next map[int32]int64) error {
	ps := make([]int32, 0, len(next))
	for p := range next {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	for _, p := range ps {
		st, ok := c.parts[p]
		if !ok {
			return fmt.Errorf("nats commit: partition %d is not assigned to this consumer", p)
		}
		n := next[p]
		i := sort.Search(len(st.pending), func(i int) bool { return int64(st.pending[i].seq) >= n })
		// The last of them with a live reply subject (after resubscribe,
		// the ones not sent again yet have none): an ack-all of it; the
		// rest stay pending, acked by a later commit.
		j := i - 1
		for j >= 0 && st.pending[j].reply == "" {
			j--
		}
		if j < 0 {
			continue
		}
		last := st.pending[j]
		actx, cancel := context.WithTimeout(ctx, c.cfg.CommitTimeout)
		_, err := c.nc.RequestWithContext(actx, last.reply, []byte("+ACK"))
		cancel()
		if err != nil {
			return fmt.Errorf("nats commit partition %d offset %d: %w", p, last.seq, err)
		}
		st.pending = st.pending[j+1:]
	}
	return nil
}

// DeadLetter publishes d's value and headers (less the Nats-* ones) to
// DLQSubject in DLQStream (created if missing), with the headers of
// bus.DeadLetterHeaders and Nats-Msg-Id "<stream>/<offset>", so that
// dead-lettering the same message twice stores it once. It retries while
// the server is unavailable, until ctx is done. Commit the offset only after
// it returned nil. A message that with those headers exceeds the server's
// max_payload or the dead-letter stream's max_msg_size (read once, as the
// stream may predate this Consumer) is cut to fit, with
// bus.HeaderDLQTruncated giving its original length: failing instead would
// stop the partition at it on every restart.
func (c *Consumer) DeadLetter(ctx context.Context, d bus.Delivery, reason string) error {
	if !c.dlqReady {
		if err := ensureStream(ctx, c.js, dlqStream(c.cfg.DLQStream, c.cfg.DLQSubject, c.cfg.Stream.MaxMsgSize, c.cfg.Stream.Replicas), c.cfg.Logger); err != nil {
			return fmt.Errorf("nats dead letter: %w", err)
		}
		st, err := c.js.Stream(ctx, c.cfg.DLQStream)
		if err != nil {
			return fmt.Errorf("nats dead letter: stream %s: %w", c.cfg.DLQStream, err)
		}
		c.dlqMax = st.CachedInfo().Config.MaxMsgSize
		c.dlqReady = true
	}
	h := natsgo.Header{}
	for _, kv := range bus.DeadLetterHeaders(d, reason) {
		if !strings.HasPrefix(kv[0], "Nats-") {
			h[kv[0]] = []string{kv[1]}
		}
	}
	id := c.cfg.Stream.Name + "/" + strconv.FormatInt(d.Offset, 10)
	m := &natsgo.Msg{Subject: c.cfg.DLQSubject, Header: h, Data: d.Value}
	limit := int(c.nc.MaxPayload())
	if c.dlqMax > 0 {
		limit = min(limit, int(c.dlqMax))
	}
	if hb := headerBytes(h, id); hb+len(d.Value) > limit {
		// Room for the truncation header too, and for any escaping.
		room := limit - hb - dlqSlack
		if room <= 0 {
			return fmt.Errorf("nats dead letter %d@%d: its headers alone take %d of the %d bytes a dead letter may have", d.Partition, d.Offset, hb, limit)
		}
		h[bus.HeaderDLQTruncated] = []string{strconv.Itoa(len(d.Value))}
		m.Data = d.Value[:room]
		c.cfg.Logger.Warn("nats dead letter cut to fit; the whole message stays in the stream at its sequence",
			"stream", c.cfg.Stream.Name, "partition", d.Partition, "sequence", d.Offset, "bytes", len(d.Value), "kept", len(m.Data),
			"limit", limit)
	}
	backoff := 50 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, DefaultAckTimeout)
		_, err := c.js.PublishMsg(pctx, m, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return nil
		}
		if fatal(err) {
			return fmt.Errorf("nats dead letter %d@%d: %w", d.Partition, d.Offset, err)
		}
		if !sleep(ctx, backoff) {
			return fmt.Errorf("nats dead letter %d@%d: %w (last error: %v)", d.Partition, d.Offset, ctx.Err(), err)
		}
		backoff = min(2*backoff, time.Second)
	}
}

// headerBytes is the size of h as NATS sends it (a "NATS/1.0" line, one
// "Key: value" line per value, an empty line) with the Nats-Msg-Id header
// id added.
func headerBytes(h natsgo.Header, id string) int {
	n := len("NATS/1.0\r\n\r\n") + len(jetstream.MsgIDHeader) + len(": \r\n") + len(id)
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}

// dlqSlack is room left under the limit, when a dead letter is cut, for the
// truncation header and any header escaping.
const dlqSlack = 64

// Close calls OnRevoked (the caller may still Commit from it), stops the
// subscriptions and closes the connection. Messages delivered but not committed
// are read again by the next Consumer of the partition.
func (c *Consumer) Close() error {
	if c.closed {
		return nil
	}
	if c.started && c.cfg.OnRevoked != nil {
		c.cfg.OnRevoked(slices.Sorted(slices.Values(c.cfg.Assigned)))
	}
	c.closed = true
	c.stopReaders()
	c.nc.Close()
	return nil
}

func (c *Consumer) stopReaders() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	for _, ps := range c.parts {
		ps.cc.Stop()
	}
}
