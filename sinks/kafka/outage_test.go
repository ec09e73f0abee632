package kafka

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestPublishBlocksThroughABrokerRestartAndDeliversEachMessageOnce stops the
// broker for 3 s while a Publish is in flight; the broker comes back with its
// log (kfake DataDir) on the same port, the Publish returns nil, and the
// topic holds every message exactly once.
func TestPublishBlocksThroughABrokerRestartAndDeliversEachMessageOnce(t *testing.T) {
	dir := t.TempDir()
	opts := func(port int) []kfake.Opt {
		return []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SeedTopics(testPartitions, DefaultTopic)}
	}
	c1, err := kfake.NewCluster(opts(0)...)
	if err != nil {
		t.Fatal(err)
	}
	addr := c1.ListenAddrs()[0]
	_, ps, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(ps)
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: []string{addr}}})
	msgs := bustest.Messages("node-o", 1, 40)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs[:20]); err != nil {
		t.Fatalf("publish before the outage: %v", err)
	}
	c1.Close()

	done := make(chan error, 1)
	go func() { done <- p.Publish(ctx, msgs[20:]) }()
	select {
	case err := <-done:
		t.Fatalf("publish returned %v while the broker was down", err)
	case <-time.After(3 * time.Second):
	}
	c2, err := kfake.NewCluster(opts(port)...)
	if err != nil {
		t.Fatalf("restart broker on port %d: %v", port, err)
	}
	defer c2.Close()
	if err := <-done; err != nil {
		t.Fatalf("publish across the outage: %v", err)
	}
	cons := newConsumer(t, ConsumerConfig{Conn: Conn{Brokers: []string{addr}}, Group: "g-outage"})
	defer cons.Close()
	ds := bustest.PollN(t, cons, len(msgs), 15*time.Second)
	ds = append(ds, bustest.PollQuiet(t, cons, 300*time.Millisecond)...)
	checkDeliveries(t, ds, msgs, testPartitions)
}
