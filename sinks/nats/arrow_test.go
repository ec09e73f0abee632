package nats

import (
	"context"
	"testing"
	"time"

	"github.com/flowbus/flowbus/sinks/bus/bustest"
)

func TestArrowMessagesDecodeToTheSameFlowsAfterJetStream(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	msgs, byKey := bustest.ArrowMessages(t, "node-arrow", 500)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	ds := bustest.PollN(t, c, len(msgs), 10*time.Second)
	checkDeliveries(t, ds, msgs, testPartitions)
	bustest.CheckFlows(t, ds, byKey)
}
