package export

import (
	"context"
	"fmt"
	"time"

	"github.com/flowbus/flowbus/schemas"
)

// publishLoop publishes queued and spooled messages in order until Run has
// closed its input and everything is published, or the bus has not taken the
// rest within DrainTimeout after that (then the rest is spooled).
func (e *Exporter) publishLoop() error {
	var (
		backoff  time.Duration
		deadline time.Time // drain deadline, set once closing
		down     bool      // the last Publish failed
	)
	for {
		e.mu.Lock()
		var msgs []schemas.Message
		fromSpool := false
		if n := min(len(e.queue), e.cfg.PublishBatch); n > 0 {
			msgs = e.queue[:n:n]
		} else if e.spool != nil && e.spool.Len() > 0 {
			fromSpool = true
		}
		closing := e.closing
		e.mu.Unlock()

		if closing && deadline.IsZero() {
			deadline = time.Now().Add(e.cfg.DrainTimeout)
		}
		if fromSpool {
			var err error
			if msgs, err = e.spool.Peek(e.cfg.PublishBatch); err != nil {
				// The disk failed under the spool; retry rather than stop
				// the pipeline (the spool's own cap bounds what piles up).
				e.log.Error("export: cannot read the spool; retrying", "err", err)
				if closing && !time.Now().Before(deadline) {
					return fmt.Errorf("read export spool: %w", err)
				}
				time.Sleep(e.cfg.RetryMax)
				continue
			}
		}
		if len(msgs) == 0 {
			if closing {
				return nil
			}
			<-e.wake
			continue
		}

		err := e.publish(msgs)
		if err == nil {
			if down {
				e.log.Info("export: bus is back", "first_seq", msgs[0].Seq)
				down = false
			}
			backoff = 0
			e.ack(msgs, fromSpool)
			continue
		}
		e.m.publishErrors.Inc()
		if !down {
			e.log.Warn("export: publish failed; buffering and retrying", "err", err, "spool", e.spool != nil)
			down = true
		}
		e.mu.Lock()
		if e.spool != nil && len(e.queue) > 0 {
			// Keep what waits for the bus on disk while it is down.
			if serr := e.spoolQueueLocked(); serr != nil {
				e.log.Error("export: cannot spool the queue", "err", serr)
			}
		}
		e.mu.Unlock()
		if closing && !time.Now().Before(deadline) {
			return e.giveUp(err)
		}
		backoff = min(max(2*backoff, e.cfg.RetryMin), e.cfg.RetryMax)
		wait := backoff
		if closing {
			wait = min(wait, time.Until(deadline))
		}
		time.Sleep(wait)
	}
}

// publish sends msgs in one Publish call and times it.
func (e *Exporter) publish(msgs []schemas.Message) error {
	ctx := e.pubCtx
	if e.cfg.PublishTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.PublishTimeout)
		defer cancel()
	}
	start := time.Now()
	err := e.pub.Publish(ctx, msgs)
	e.m.publishSeconds.Observe(time.Since(start).Seconds())
	return err
}

// ack removes published msgs from the queue or, if the batcher moved them
// there meanwhile, from the spool, and counts them.
func (e *Exporter) ack(msgs []schemas.Message, fromSpool bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(msgs)
	switch {
	case !fromSpool && len(e.queue) >= n && e.queue[0].Run == msgs[0].Run && e.queue[0].Seq == msgs[0].Seq:
		e.queue = e.queue[n:]
		e.m.queue.Set(float64(len(e.queue)))
	case !fromSpool:
		// Moved to the spool while in flight: they are its head.
		head, err := e.spool.Peek(n)
		if err != nil || len(head) != n || head[0].Seq != msgs[0].Seq || head[0].Run != msgs[0].Run {
			e.log.Error("export: published messages are no longer at the spool head; they may be sent twice", "first_seq", msgs[0].Seq, "err", err)
			break
		}
		fallthrough
	default:
		if err := e.spool.Ack(n); err != nil {
			e.log.Error("export: cannot ack spooled messages; they may be sent twice", "err", err)
		}
	}
	var rows, bytes int
	for i := range msgs {
		rows += msgs[i].Rows
		bytes += len(msgs[i].Value)
		e.m.messageRows.Observe(float64(msgs[i].Rows))
	}
	e.m.messages.Add(float64(n))
	e.m.rows.Add(float64(rows))
	e.m.bytes.Add(float64(bytes))
	e.st.Emitted.Add(float64(rows))
}

// giveUp ends the drain with the bus still failing: the queue goes to the
// spool for the next run, or, without a spool, is dropped and counted.
func (e *Exporter) giveUp(cause error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.spool != nil {
		if err := e.spoolQueueLocked(); err != nil {
			return fmt.Errorf("spool unpublished messages at shutdown: %w", err)
		}
		e.log.Warn("export: bus unavailable at shutdown; messages kept in the spool for the next run",
			"messages", e.spool.Len(), "bytes", e.spool.Bytes(), "err", cause)
		return nil
	}
	var rows int
	for i := range e.queue {
		rows += e.queue[i].Rows
	}
	e.dropShutdown.Add(float64(rows))
	n := len(e.queue)
	e.queue = nil
	e.m.queue.Set(0)
	if n == 0 {
		return nil
	}
	return fmt.Errorf("bus unavailable at shutdown and no spool configured: dropped %d messages (%d flows): %w", n, rows, cause)
}
