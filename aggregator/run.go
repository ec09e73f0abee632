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

// transport is what the consumer loop needs of a bus consumer (the Kafka
// group consumer or the NATS durable consumers, adapted).
type transport struct {
	poll       func(ctx context.Context) ([]bus.Delivery, error)
	commit     func(ctx context.Context, next map[int32]int64) error
	deadLetter func(ctx context.Context, m bus.Delivery, reason string) error
	close      func()
	errClosed  error // returned by poll once closed
}

// driver runs the consumer loop of RunKafka and RunNATS and implements the
// partition callbacks. Everything runs on the loop's goroutine: the
// transports call the callbacks only from inside poll, commit and close.
type driver struct {
	a       *Aggregator
	t       transport
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
		err = d.t.commit(cctx, offs)
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
// transport, and the open raw flows files (removed: the partitions' next
// owner rewrites them).
func (d *driver) abort(err error) error {
	d.aborted = true
	d.t.close()
	d.a.Drop(d.a.Assigned()...)
	return err
}

// run is the consumer loop: poll, process, commit each partition's
// CommitOffset when it moved. When ctx is done it writes everything open,
// commits and returns nil; on any other error it stops at once without
// writing or committing more, as a crash would.
func (d *driver) run() error {
	d.a.SetDeadLetter(func(ctx context.Context, m bus.Delivery, reason string, _ error) error {
		return d.t.deadLetter(ctx, m, reason)
	})
	committed := make(map[int32]int64)
	for {
		ms, err := d.t.poll(d.ctx)
		if d.cbErr != nil {
			return d.abort(d.cbErr)
		}
		if d.ctx.Err() != nil {
			return d.shutdown()
		}
		if err != nil {
			if errors.Is(err, d.t.errClosed) {
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
		if err := d.t.commit(d.ctx, next); err != nil {
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

// shutdown writes every open window, commits, and closes the transport.
func (d *driver) shutdown() error {
	offs, err := d.a.Release(d.a.Assigned()...)
	if err != nil {
		d.aborted = true
		d.t.close()
		return fmt.Errorf("aggregator shutdown: %w", err)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), shutdownTimeout)
	defer cancel()
	err = d.t.commit(cctx, offs)
	d.t.close()
	if err != nil {
		return fmt.Errorf("aggregator shutdown: %w", err)
	}
	return nil
}
