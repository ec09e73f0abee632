package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/parquet"
)

// DeadLetter receives a copy of every bad message with the reason label
// (BadNotArrow, BadTruncated, BadUnknownSchema, BadOther) and the error.
// An error from it stops the aggregator: the message is not committed.
type DeadLetter func(ctx context.Context, m bus.Delivery, reason string, cause error) error

// Bad-message reasons (label of flowbus_aggregator_bad_messages_total).
const (
	BadNotArrow      = "not_arrow"
	BadTruncated     = "truncated"
	BadUnknownSchema = "unknown_schema"
	BadOther         = "invalid"
)

// errNotAssigned is returned for a message of a partition not assigned.
var errNotAssigned = errors.New("partition not assigned")

// Aggregator turns bus messages into Parquet rollups with the commit
// protocol of the package doc. It is driven by one goroutine (a consumer
// loop): not safe for concurrent use.
type Aggregator struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	dlq     DeadLetter
	dec     *flowcodec.Decoder
	tpl     *templater
	parts   map[int32]*partition
	window  int64
	late    int64
	opts    parquet.Options
	rawOpts parquet.Options                                       // raw flows: row groups capped at rawRowGroupRows
	stage   rawStage                                              // raw rows of the message being folded (RawFlows)
	hook    func(point string, m *bus.Delivery) error             // tests: crash injection
	decode  func(msg []byte, fn func(*schemas.Flow)) (int, error) // the rollup's projection; tests swap it
	written int
}

// New returns an Aggregator. reg receives the flowbus_aggregator_* metrics
// (nil: not registered). Bad messages are only counted and logged until
// SetDeadLetter is called; RunKafka and RunNATS set it to their consumer's
// DeadLetter.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aggregator config: %w", err)
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Aggregator{
		cfg: cfg, log: log, m: m,
		dec:    flowcodec.NewDecoder(),
		tpl:    newTemplater(cfg.RouteMaxLen, cfg.RouteTemplates),
		parts:  make(map[int32]*partition),
		window: int64(cfg.Window), late: int64(cfg.Lateness),
		opts: parquet.Options{RowGroupRows: cfg.RowGroupRows, NoSync: cfg.NoSync, Compressor: parquet.NewCompressor()},
	}
	a.rawOpts = a.opts
	a.rawOpts.PageBufferBytes = rawPageBufferBytes
	if a.rawOpts.RowGroupRows == 0 || a.rawOpts.RowGroupRows > rawRowGroupRows {
		a.rawOpts.RowGroupRows = rawRowGroupRows
	}
	proj, err := flowcodec.NewProjection(rollupColumns...)
	if err != nil {
		return nil, fmt.Errorf("aggregator: %w", err) // a column renamed in schemas without updating rollupColumns
	}
	if cfg.RawFlows {
		proj = flowcodec.Projection{} // every column
	}
	a.decode = func(msg []byte, fn func(*schemas.Flow)) (int, error) {
		return a.dec.DecodeEach(msg, proj, fn)
	}
	return a, nil
}

// SetDeadLetter sets where bad messages are copied.
func (a *Aggregator) SetDeadLetter(dlq DeadLetter) { a.dlq = dlq }

// Drop forgets partitions without writing anything: for partitions lost
// without a clean handover, whose offsets can no longer be committed, and
// after an error. Their next owner re-reads from the last committed offset.
// Open raw flows files of theirs are closed and removed.
func (a *Aggregator) Drop(parts ...int32) {
	for _, p := range parts {
		if ps := a.parts[p]; ps != nil {
			for _, b := range ps.open {
				b.abortRaw()
			}
		}
		delete(a.parts, p)
	}
	a.m.partitions.Set(float64(len(a.parts)))
	a.m.openWindows.Set(float64(a.openBuckets()))
}

// Assign starts consuming partitions: it scans the output directory for
// the files already committed for them (so that records re-read after a
// crash or a rebalance are not written twice) and deletes what an
// interrupted commit left. Partitions already assigned are left as they are.
func (a *Aggregator) Assign(parts ...int32) error {
	want := make(map[int32]bool)
	for _, p := range parts {
		if a.parts[p] == nil {
			want[p] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	committed, err := scan(a.cfg.Out, want)
	if err != nil {
		return fmt.Errorf("assign partitions: %w", err)
	}
	for p := range want {
		a.parts[p] = newPartition(p, committed[p])
	}
	a.m.partitions.Set(float64(len(a.parts)))
	return nil
}

// Assigned returns the assigned partitions in order.
func (a *Aggregator) Assigned() []int32 {
	ps := make([]int32, 0, len(a.parts))
	for p := range a.parts {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// Process consumes one message. Messages of a partition must come in
// offset order; a message at an offset already processed is ignored. A
// flowbus-schema header other than schemas.SchemaVersion makes the message
// bad; m.Time is the event time of its flows that carry none. A bad
// message is counted, handed to the dead-letter function and skipped. An
// error means the aggregator cannot go on safely (a file could not be
// written, the dead-letter copy failed): the caller must stop without
// committing.
func (a *Aggregator) Process(ctx context.Context, m bus.Delivery) error {
	ps := a.parts[m.Partition]
	if ps == nil {
		return fmt.Errorf("message at offset %d of partition %d: %w", m.Offset, m.Partition, errNotAssigned)
	}
	if ps.started && m.Offset < ps.next {
		return nil
	}
	ps.started = true
	a.m.messages.Inc()
	if v, ok := m.Headers[schemas.HeaderSchema]; ok && v != schemas.SchemaVersion {
		ps.next = m.Offset + 1
		return a.bad(ctx, m, fmt.Errorf("%w: header %s=%q", flowcodec.ErrUnknownSchema, schemas.HeaderSchema, v))
	}
	// Rows are folded as they are decoded; a bad message is found before
	// its first row (DecodeEach), so it folds nothing.
	fo := ps.begin(a, &m)
	add := fo.add
	if a.cfg.RawFlows {
		add = fo.addRaw
	}
	n, err := a.decode(m.Value, add)
	if err != nil {
		ps.next = m.Offset + 1
		return a.bad(ctx, m, err)
	}
	a.m.flows.Add(float64(n))
	closed := fo.end()
	ps.next = m.Offset + 1
	if err := fo.flushRaw(); err != nil {
		return err
	}
	if closed {
		if err := a.writeClosed(ps, false); err != nil {
			return err
		}
	}
	if a.hook != nil {
		return a.hook("message", &m)
	}
	return nil
}

func (a *Aggregator) bad(ctx context.Context, m bus.Delivery, cause error) error {
	reason := BadOther
	switch {
	case errors.Is(cause, flowcodec.ErrNotArrow):
		reason = BadNotArrow
	case errors.Is(cause, flowcodec.ErrTruncated):
		reason = BadTruncated
	case errors.Is(cause, flowcodec.ErrUnknownSchema):
		reason = BadUnknownSchema
	}
	a.m.bad.WithLabelValues(reason).Inc()
	a.log.Warn("bad message", "partition", m.Partition, "offset", m.Offset, "reason", reason, "err", cause)
	if a.dlq == nil {
		return nil
	}
	if err := a.dlq(ctx, m, reason, cause); err != nil {
		return fmt.Errorf("dead-letter message at offset %d of partition %d: %w", m.Offset, m.Partition, err)
	}
	a.m.deadLettered.Inc()
	return nil
}

// CommitOffset returns the offset to commit for partition p (the next
// offset to read after a restart): the first offset of the oldest window
// not yet written, or, with none open, the offset after the last message
// processed. ok is false if p is not assigned or nothing was processed.
func (a *Aggregator) CommitOffset(p int32) (offset int64, ok bool) {
	ps := a.parts[p]
	if ps == nil || !ps.started {
		return 0, false
	}
	return ps.commitOffset(), true
}

// Committed tells the aggregator that the consumer committed its offsets;
// it only runs the test hook.
func (a *Aggregator) Committed() error {
	a.m.commits.Inc()
	if a.hook != nil {
		return a.hook("committed", nil)
	}
	return nil
}

// Release writes every open window of partitions parts (regular and late),
// forgets them, and returns the offset to commit for each that processed
// anything. Call it when partitions are revoked, and for all of them
// (Assigned) on shutdown. On error the partitions are dropped (Drop) and
// nothing must be committed.
func (a *Aggregator) Release(parts ...int32) (map[int32]int64, error) {
	offs := make(map[int32]int64)
	for _, p := range parts {
		ps := a.parts[p]
		if ps == nil {
			continue
		}
		if err := a.writeClosed(ps, true); err != nil {
			a.Drop(parts...)
			return nil, err
		}
		if ps.started {
			offs[p] = ps.commitOffset()
		}
		delete(a.parts, p)
	}
	a.m.partitions.Set(float64(len(a.parts)))
	return offs, nil
}

// writeClosed writes the buckets of ps whose window the watermark passed,
// and every late bucket, or (all) every bucket. Files of one partition are
// written in (window, late) order.
func (a *Aggregator) writeClosed(ps *partition, all bool) error {
	for _, bk := range ps.closable(a.window, all) {
		b := ps.open[bk]
		id := fileID{partition: ps.id, start: b.start, first: b.first, last: b.last, late: b.late}
		if err := a.writeBucket(id, b); err != nil {
			return err
		}
		delete(ps.open, bk)
	}
	a.m.openWindows.Set(float64(a.openBuckets()))
	return nil
}

// writeBucket commits one bucket: the raw flows file first (RawFlows), then
// the route file, then the pair file, which marks the bucket committed (see
// scan).
func (a *Aggregator) writeBucket(id fileID, b *bucket) error {
	if b.raw != nil {
		if err := a.commitRaw(id, b); err != nil {
			return err
		}
	}
	if routes := b.routeRows(); len(routes) > 0 {
		st, err := parquet.WriteFile(id.path(a.cfg.Out, RouteTable), routes, a.opts)
		if err != nil {
			return fmt.Errorf("write route rollup: %w", err)
		}
		a.m.wrote(RouteTable, st)
		if a.hook != nil {
			if err := a.hook("route-written", nil); err != nil {
				return err
			}
		}
	}
	pairs := b.pairRows()
	st, err := parquet.WriteFile(id.path(a.cfg.Out, PairTable), pairs, a.opts)
	if err != nil {
		return fmt.Errorf("write pair rollup: %w", err)
	}
	a.m.wrote(PairTable, st)
	a.written++
	a.log.Debug("bucket written", "file", id.name(), "flows", b.flows, "pairs", len(pairs))
	if a.hook != nil {
		return a.hook("written", nil)
	}
	return nil
}

func (a *Aggregator) openBuckets() int {
	n := 0
	for _, ps := range a.parts {
		n += len(ps.open)
	}
	return n
}
