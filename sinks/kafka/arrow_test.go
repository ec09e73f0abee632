package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/twmb/franz-go/pkg/kfake"
)

func TestArrowMessagesDecodeToTheSameFlowsAfterKafka(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(testPartitions, DefaultTopic))
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}})
	msgs, byKey := bustest.ArrowMessages(t, "node-arrow", 500)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	cons := newConsumer(t, ConsumerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Group: "g-arrow"})
	defer cons.Close()
	ds := bustest.PollN(t, cons, len(msgs), 15*time.Second)
	checkDeliveries(t, ds, msgs, testPartitions)
	bustest.CheckFlows(t, ds, byKey)
}
