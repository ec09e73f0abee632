package aggregator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flowbus/flowbus/sinks/bus"
)

// shutdownTimeout bounds the final write and commit after ctx is cancelled.
const shutdownTimeout = 30 * time.Second

// consumer is a bus consumer as the driver uses it: *kafka.Consumer and
// *nats.Consumer. Its partition callbacks are set in its configuration, to
// the driver's onAssigned, onRevoked and (Kafka) onLost, before it is
// created; it calls them only from inside Poll, Commit and Close, so that
// everything runs on the driver's goroutine.
type consumer interface {
	// Poll returns the next deliveries, in offset order per partition,
	// blocking until there is one. It returns ctx.Err() once ctx is done,
	// and an error wrapping bus.ErrClosed once the consumer is closed.
	Poll(ctx context.Context) ([]bus.Delivery, error)
	// Commit records, per partition, the offset to read from after a
	// restart or a move.
	Commit(ctx context.Context, next map[int32]int64) error
	// DeadLetter copies d, with reason, to the dead-letter topic or stream.
	DeadLetter(ctx context.Context, d bus.Delivery, reason string) error
	// Close revokes the partitions held (the revoke callback may still
	// Commit) and releases the consumer.
	Close() error
}

// run creates a consumer with open, which sets the consumer's partition
// callbacks to d's, and runs the consumer loop (driver.loop) with it.
func run(ctx context.Context, a *Aggregator, open func(d *driver) (consumer, error)) error {
	d := &driver{a: a, ctx: ctx}
	c, err := open(d)
	if err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	d.c = c
	return d.loop()
}

// driver runs the consumer loop of RunKafka and RunNATS and implements the
// partition callbacks. Everything runs on the loop's goroutine: the
// consumer calls the callbacks only from inside Poll, Commit and Close.
type driver struct {
	a       *Aggregator
	c       consumer
	ctx     context.Context
	cbErr   error
	aborted bool
}

func (d *driver) onAssigned(ps []int32) {
	d.a.log.Info("partitions assigned", "partitions", ps)
	if err := d.a.Assign(ps...); err != nil && d.cbErr == nil {
		d.cbErr = err
	}
}

// onRevoked writes the revoked partitions' open windows and commits, so that
// their next owner starts exactly after them. After a crash-like stop it
// only drops them.
func (d *driver) onRevoked(ps []int32) {
	if d.aborted || d.cbErr != nil {
		d.a.Drop(ps...)
		return
	}
	d.a.log.Info("partitions revoked: writing open windows and committing", "partitions", ps)
	offs, err := d.a.Release(ps...)
	if err == nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), shutdownTimeout)
		err = d.c.Commit(cctx, offs)
		cancel()
	}
	if err != nil {
		d.a.log.Error("write and commit of revoked partitions failed; their next owner re-reads them", "partitions", ps, "err", err)
		d.cbErr = fmt.Errorf("revoke partitions %v: %w", ps, err)
	}
}

func (d *driver) onLost(ps []int32) {
	d.a.log.Warn("partitions lost; dropping their open windows", "partitions", ps)
	d.a.Drop(ps...)
}

// abort stops as a crash would, but closes what the process holds: the
// consumer, and the open raw flows files (removed: the partitions' next
// owner rewrites them).
func (d *driver) abort(err error) error {
	d.aborted = true
	d.c.Close()
	d.a.Drop(d.a.Assigned()...)
	return err
}

// loop is the consumer loop: poll, process, commit each partition's
// CommitOffset when it moved. When ctx is done it writes everything open,
// commits and returns nil. When Poll reports the consumer closed
// (bus.ErrClosed) it returns nil at once. On any other error it stops at
// once without writing or committing more, as a crash would.
func (d *driver) loop() error {
	d.a.SetDeadLetter(func(ctx context.Context, m bus.Delivery, reason string, _ error) error {
		return d.c.DeadLetter(ctx, m, reason)
	})
	committed := make(map[int32]int64)
	for {
		ms, err := d.c.Poll(d.ctx)
		if d.cbErr != nil {
			return d.abort(d.cbErr)
		}
		if d.ctx.Err() != nil {
			return d.shutdown()
		}
		if err != nil {
			if errors.Is(err, bus.ErrClosed) {
				return nil
			}
			return d.abort(fmt.Errorf("aggregator: %w", err))
		}
		for _, m := range ms {
			if err := d.a.Process(d.ctx, m); err != nil {
				return d.abort(err)
			}
		}
		next := make(map[int32]int64)
		for _, p := range d.a.Assigned() {
			if off, ok := d.a.CommitOffset(p); ok && off != committed[p] {
				next[p] = off
			}
		}
		if len(next) == 0 {
			continue
		}
		if err := d.c.Commit(d.ctx, next); err != nil {
			if d.ctx.Err() != nil {
				return d.shutdown()
			}
			// A partition may have moved meanwhile; its new owner re-reads
			// from the last commit and skips what is in files already.
			d.a.log.Warn("offset commit failed", "err", err)
			continue
		}
		for p, off := range next {
			committed[p] = off
		}
		if err := d.a.Committed(); err != nil {
			return d.abort(err)
		}
	}
}

// shutdown writes every open window, commits, and closes the consumer.
func (d *driver) shutdown() error {
	offs, err := d.a.Release(d.a.Assigned()...)
	if err != nil {
		d.aborted = true
		d.c.Close()
		return fmt.Errorf("aggregator shutdown: %w", err)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), shutdownTimeout)
	defer cancel()
	err = d.c.Commit(cctx, offs)
	d.c.Close()
	if err != nil {
		return fmt.Errorf("aggregator shutdown: %w", err)
	}
	return nil
}
