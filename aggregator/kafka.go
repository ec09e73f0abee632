package aggregator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flowbus/flowbus/sinks/kafka"
)

// shutdownTimeout bounds the final write and commit after ctx is cancelled.
const shutdownTimeout = 30 * time.Second

// RunKafka consumes cc.Topic as a member of consumer group cc.Group until
// ctx is done, feeding a. The consumer's callbacks are set here (any in cc
// are replaced): an assigned partition is scanned for committed files
// (Assign); a revoked one has its open windows written and its offsets
// committed before it moves (Release, then Commit), so a rebalance loses
// and duplicates nothing; a lost one is dropped (its next owner re-reads).
// After each poll, every partition's CommitOffset is committed. Bad
// messages go to cc.DLQTopic. When ctx is done, every open window is
// written and committed, and RunKafka returns nil. Any other error returns
// at once without writing or committing anything more (as a crash would;
// the files already committed and the committed offsets stay consistent).
func RunKafka(ctx context.Context, a *Aggregator, cc kafka.ConsumerConfig) error {
	var (
		c       *kafka.Consumer
		cbErr   error
		aborted bool
	)
	cc.Logger = a.log
	cc.OnAssigned = func(ps []int32) {
		a.log.Info("partitions assigned", "partitions", ps)
		if err := a.Assign(ps...); err != nil && cbErr == nil {
			cbErr = err
		}
	}
	cc.OnRevoked = func(ps []int32) {
		if aborted || cbErr != nil {
			a.Drop(ps...)
			return
		}
		a.log.Info("partitions revoked: writing open windows and committing", "partitions", ps)
		offs, err := a.Release(ps...)
		if err == nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			err = c.Commit(cctx, offs)
			cancel()
		}
		if err != nil {
			a.log.Error("write and commit of revoked partitions failed; their next owner re-reads them", "partitions", ps, "err", err)
			if cbErr == nil {
				cbErr = fmt.Errorf("revoke partitions %v: %w", ps, err)
			}
		}
	}
	cc.OnLost = func(ps []int32) {
		a.log.Warn("partitions lost; dropping their open windows", "partitions", ps)
		a.Drop(ps...)
	}
	var err error
	c, err = kafka.NewConsumer(cc)
	if err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	a.SetDeadLetter(func(ctx context.Context, m Message, reason string, _ error) error {
		return c.DeadLetter(ctx, kafka.Delivery{Topic: cc.Topic, Partition: m.Partition, Offset: m.Offset,
			Key: m.Key, Value: m.Value, Headers: m.Headers, Time: m.Time}, reason)
	})
	abort := func(err error) error {
		aborted = true
		c.Close()
		return err
	}
	committed := make(map[int32]int64)
	for {
		ds, err := c.Poll(ctx)
		if cbErr != nil {
			return abort(cbErr)
		}
		if ctx.Err() != nil {
			return shutdownKafka(ctx, a, c)
		}
		if err != nil {
			if errors.Is(err, kafka.ErrClosed) {
				return nil
			}
			return abort(fmt.Errorf("aggregator: %w", err))
		}
		for _, d := range ds {
			m := Message{Partition: d.Partition, Offset: d.Offset, Key: d.Key, Value: d.Value, Headers: d.Headers, Time: d.Time}
			if err := a.Process(ctx, m); err != nil {
				return abort(err)
			}
		}
		next := make(map[int32]int64)
		for _, p := range a.Assigned() {
			if off, ok := a.CommitOffset(p); ok && off != committed[p] {
				next[p] = off
			}
		}
		if len(next) == 0 {
			continue
		}
		if err := c.Commit(ctx, next); err != nil {
			if ctx.Err() != nil {
				return shutdownKafka(ctx, a, c)
			}
			// A partition may have moved meanwhile; its new owner re-reads
			// from the last commit and skips what is in files already.
			a.log.Warn("offset commit failed", "err", err)
			continue
		}
		for p, off := range next {
			committed[p] = off
		}
		if err := a.Committed(); err != nil {
			return abort(err)
		}
	}
}

// shutdownKafka writes every open window, commits, and leaves the group.
func shutdownKafka(ctx context.Context, a *Aggregator, c *kafka.Consumer) error {
	offs, err := a.Release(a.Assigned()...)
	if err != nil {
		c.Close()
		return fmt.Errorf("aggregator shutdown: %w", err)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err = c.Commit(cctx, offs)
	c.Close()
	if err != nil {
		return fmt.Errorf("aggregator shutdown: %w", err)
	}
	return nil
}
