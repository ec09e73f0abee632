package aggregator

import (
	"context"
	"fmt"

	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/nats"
)

// RunNATS consumes the JetStream partitions cc.Assigned (default all) with
// one durable pull consumer per partition until ctx is done, feeding a. The
// offset of a message is its stream sequence; Commit acknowledges (ack-all)
// every message below the committed offset, so JetStream redelivers from
// there after a crash, and the commit protocol is the same as RunKafka's.
// NATS has no group rebalancing: each partition must be read by one
// aggregator at a time (cc.Assigned splits them). Callbacks in cc are
// replaced.
func RunNATS(ctx context.Context, a *Aggregator, cc nats.ConsumerConfig) error {
	d := &driver{a: a, ctx: ctx}
	cc.Logger = a.log
	cc.OnAssigned, cc.OnRevoked = d.onAssigned, d.onRevoked
	c, err := nats.NewConsumer(cc)
	if err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	d.t = transport{
		poll:       c.Poll,
		commit:     c.Commit,
		deadLetter: c.DeadLetter,
		close:      func() { c.Close() },
		errClosed:  bus.ErrClosed,
	}
	return d.run()
}
