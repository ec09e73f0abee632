package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/stage"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/spool"
)

// Publisher sends messages to the bus. sinks/kafka, sinks/nats and
// sinks/stdout implement it. Publish returns nil only when every message is
// durably accepted by the bus; on error the Exporter retries the same
// messages, so Publish must be idempotent per Message.ID (NATS Nats-Msg-Id,
// Kafka's idempotent producer) or accept duplicates. Publish is called from
// one goroutine at a time.
type Publisher interface {
	Publish(ctx context.Context, msgs []schemas.Message) error
	Close() error
}

// OneStream is implemented by a Publisher that is a single ordered stream
// rather than a partitioned bus (sinks/stdout) and returns true. The
// Exporter then keeps one batch for every partition key, so records reach
// it in the order they reached the Exporter; per-partition batches, each
// sent when full or after Linger, would interleave partitions out of time
// order by up to Linger.
type OneStream interface {
	OneStream() bool
}

// encoder is flowcodec.Encoder's method, as an interface so tests can count calls.
type encoder interface {
	Encode(dst []byte, flows []schemas.Flow) ([]byte, error)
}

// Exporter batches flow records per partition key, encodes them as Arrow
// messages and publishes them, buffering in memory and then on disk while
// the bus is down or slow. Create with New, drive with Run.
type Exporter struct {
	cfg   Config
	log   *slog.Logger
	pub   Publisher
	enc   encoder
	spool *spool.Spool // nil without a spool
	st    *stage.Counters
	m     metrics

	seq uint64 // last Seq assigned (batcher goroutine only)
	// oneBatch: the publisher is one ordered stream (OneStream): one batch
	// for every partition.
	oneBatch bool

	// pubCtx is the context of every Publish; cancelled when the shutdown
	// drain times out.
	pubCtx    context.Context
	pubCancel context.CancelFunc

	mu      sync.Mutex
	queue   []schemas.Message // oldest first; never non-empty while the spool is
	closing bool              // input done and every batch enqueued
	wake    chan struct{}     // cap 1: something was enqueued or closing set

	dropTooLarge, dropQueueFull, dropSpool, dropShutdown, dropEncode prometheus.Counter
}

type metrics struct {
	messages, rows, bytes, publishErrors, spooled prometheus.Counter
	publishSeconds                                prometheus.Histogram
	messageRows                                   prometheus.Histogram
	queue                                         prometheus.Gauge
}

// New returns an Exporter publishing through pub, with metrics on reg (nil:
// none) and stage counters st (nil: unregistered ones). It opens the spool,
// if configured: messages left in it by an earlier run are published first.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, pub Publisher, st *stage.Counters) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, errors.New("export: nil publisher")
	}
	cfg = cfg.withDefaults()
	if cfg.Run == "" {
		cfg.Run = time.Now().UTC().Format(time.RFC3339Nano)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if st == nil {
		st = (*stage.Metrics)(nil).Stage("export")
	}
	one, _ := pub.(OneStream)
	e := &Exporter{
		oneBatch: one != nil && one.OneStream(),
		cfg:      cfg,
		log:      logger,
		pub:      pub,
		enc:      flowcodec.NewEncoder(),
		st:       st,
		wake:     make(chan struct{}, 1),

		m: metrics{
			messages:      counter("flowbus_export_messages_total", "Messages published to the bus."),
			rows:          counter("flowbus_export_rows_total", "Flow records published to the bus."),
			bytes:         counter("flowbus_export_bytes_total", "Encoded message bytes published to the bus."),
			publishErrors: counter("flowbus_export_publish_errors_total", "Failed Publish calls (each is retried)."),
			spooled:       counter("flowbus_export_spooled_messages_total", "Messages written to the disk spool because the bus was down or slow."),
			publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "flowbus_bus_publish_seconds",
				Help:    "Duration of Publish calls to the bus, successful or not.",
				Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
			}),
			messageRows: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "flowbus_export_message_rows",
				Help:    "Flow records per message published to the bus (the shape of what the aggregators decode).",
				Buckets: prometheus.ExponentialBuckets(1, 2, 17),
			}),
			queue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flowbus_export_queue_messages", Help: "Encoded messages waiting in memory for the bus."}),
		},
		dropTooLarge:  st.Dropped("too_large"),
		dropQueueFull: st.Dropped("queue_full"),
		dropSpool:     st.Dropped("spool_error"),
		dropShutdown:  st.Dropped("shutdown"),
		dropEncode:    st.Dropped("encode_error"),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{e.m.messages, e.m.rows, e.m.bytes, e.m.publishErrors, e.m.spooled, e.m.publishSeconds, e.m.messageRows, e.m.queue} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register export metrics: %w", err)
			}
		}
	}
	e.pubCtx, e.pubCancel = context.WithCancel(context.Background())
	if cfg.Spool.Dir != "" {
		sp, err := spool.Open(cfg.Spool, logger, reg)
		if err != nil {
			return nil, fmt.Errorf("open export spool: %w", err)
		}
		e.spool = sp
		if n := sp.Len(); n > 0 {
			logger.Info("export: replaying spooled messages from an earlier run", "messages", n, "bytes", sp.Bytes())
		}
	}
	return e, nil
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// Run consumes batches of flow records from in until it is closed, then
// flushes every partial batch and publishes (or, if the bus does not take
// them within DrainTimeout, spools) every message, closes the spool and
// returns. Run never blocks on the bus while reading in: a message that finds
// the in-memory queue full goes to the spool. The slices received from in
// are owned by Run. Run must be called once.
func (e *Exporter) Run(in <-chan []schemas.Flow) error {
	pubDone := make(chan error, 1)
	go func() { pubDone <- e.publishLoop() }()
	b := newBatcher(e)
	// The ticker that sends lingering batches runs only while the batcher
	// holds a partition: an agent with no flows for idleLingers × Linger
	// is not woken by it (4 wakeups a second at the default Linger).
	period := max(e.cfg.Linger/4, 5*time.Millisecond)
	tick := time.NewTicker(period)
	defer tick.Stop()
	ticking := true
loop:
	for {
		select {
		case flows, ok := <-in:
			if !ok {
				break loop
			}
			e.st.Received.Add(float64(len(flows)))
			b.add(flows)
			if !ticking && len(b.parts) > 0 {
				tick.Reset(period)
				ticking = true
			}
		case now := <-tick.C:
			b.expire(now)
			if len(b.parts) == 0 {
				tick.Stop()
				ticking = false
			}
		}
	}
	b.flushAll()
	e.mu.Lock()
	e.closing = true
	e.mu.Unlock()
	e.signal()
	drain := time.AfterFunc(e.cfg.DrainTimeout, e.pubCancel)
	err := <-pubDone
	drain.Stop()
	e.pubCancel()
	if e.spool != nil {
		if cerr := e.spool.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close export spool: %w", cerr)
		}
	}
	return err
}

func (e *Exporter) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// emit encodes flows of one partition into messages (splitting to respect
// MaxMessageBytes) and enqueues them. Called from Run's goroutine.
func (e *Exporter) emit(key string, flows []schemas.Flow) {
	value, err := e.enc.Encode(nil, flows)
	if err != nil {
		e.dropEncode.Add(float64(len(flows)))
		e.log.Error("export: cannot encode flows; dropped", "rows", len(flows), "err", err)
		return
	}
	if len(value) > e.cfg.MaxMessageBytes {
		if len(flows) == 1 {
			e.dropTooLarge.Inc()
			e.log.Error("export: one flow encodes larger than the bus message limit; dropped", "bytes", len(value), "limit", e.cfg.MaxMessageBytes)
			return
		}
		h := len(flows) / 2
		e.emit(key, flows[:h])
		e.emit(key, flows[h:])
		return
	}
	e.seq++
	m := schemas.Message{Key: key, Node: e.cfg.Node, Run: e.cfg.Run, Seq: e.seq, Rows: len(flows), Value: value}
	m.FirstTS, m.LastTS = flows[0].TimeNs, flows[0].TimeNs
	for i := range flows {
		m.FirstTS = min(m.FirstTS, flows[i].TimeNs)
		m.LastTS = max(m.LastTS, flows[i].TimeNs)
	}
	e.enqueue(m)
}

// enqueue hands m to the publisher: to the in-memory queue if the spool is
// empty and the queue has room; otherwise the whole queue and m go to the
// spool, so that the queue is always older than the spool and order holds.
func (e *Exporter) enqueue(m schemas.Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.signal()
	spooling := e.spool != nil && e.spool.Len() > 0
	if !spooling && len(e.queue) < e.cfg.QueueMessages {
		e.queue = append(e.queue, m)
		e.m.queue.Set(float64(len(e.queue)))
		return
	}
	if e.spool == nil {
		e.dropQueueFull.Add(float64(m.Rows))
		e.log.Warn("export: queue full and no spool configured; dropped a message", "rows", m.Rows)
		return
	}
	if err := e.spoolQueueLocked(); err != nil {
		e.dropSpool.Add(float64(m.Rows))
		e.log.Error("export: cannot spool; dropped a message", "rows", m.Rows, "err", err)
		return
	}
	if err := e.spool.Append(&m); err != nil {
		e.dropSpool.Add(float64(m.Rows))
		e.log.Error("export: cannot spool; dropped a message", "rows", m.Rows, "err", err)
		return
	}
	e.m.spooled.Inc()
}

// spoolQueueLocked moves the in-memory queue, in order, to the spool. The
// caller holds e.mu.
func (e *Exporter) spoolQueueLocked() error {
	for i := range e.queue {
		if err := e.spool.Append(&e.queue[i]); err != nil {
			e.queue = e.queue[i:]
			e.m.queue.Set(float64(len(e.queue)))
			return err
		}
		e.m.spooled.Inc()
	}
	e.queue = nil
	e.m.queue.Set(0)
	return nil
}
