package aggregator

import (
	"context"

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
	return run(ctx, a, func(d *driver) (consumer, error) {
		cc.Logger = a.log
		cc.OnAssigned, cc.OnRevoked = d.onAssigned, d.onRevoked
		return nats.NewConsumer(cc)
	})
}
