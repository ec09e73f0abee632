package aggregator

import (
	"context"

	"github.com/flowbus/flowbus/sinks/kafka"
)

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
//
// A member must not stall past the group's rebalance timeout in the middle
// of a poll: franz-go then hands its partitions to another member, and a
// file the stalled member writes after that member's Assign scan would
// duplicate rows (see doc.go, "Limits").
func RunKafka(ctx context.Context, a *Aggregator, cc kafka.ConsumerConfig) error {
	return run(ctx, a, func(d *driver) (consumer, error) {
		cc.Logger = a.log
		cc.OnAssigned, cc.OnRevoked, cc.OnLost = d.onAssigned, d.onRevoked, d.onLost
		return kafka.NewConsumer(cc)
	})
}
