package aggregator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/nats"
)

func startNATS(t testing.TB) string {
	t.Helper()
	s, url, err := nats.StartEmbedded(t.TempDir(), -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return url
}

// TestNATSExactTotalsOfAMillionFlows is the Kafka acceptance run on an
// embedded JetStream server, with three crashes and restarts on the way so
// that the ack-all commit and redelivery path is exercised too.
func TestNATSExactTotalsOfAMillionFlows(t *testing.T) {
	fd := fleetRun(t)
	msgs := fd.msgs
	url := startNATS(t)
	pub, err := nats.NewPublisher(nats.PublisherConfig{Conn: nats.Conn{URL: url}, Partitions: fleetPartitions})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(msgs); i += 100 {
		if err := pub.Publish(context.Background(), msgs[i:min(i+100, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
	pub.Close()
	out := t.TempDir()
	p := newProgress(len(msgs))
	cc := nats.ConsumerConfig{Conn: nats.Conn{URL: url}, Partitions: fleetPartitions}
	start := time.Now()
	crashes := 0
	for run := 0; ; run++ {
		if run > 10 {
			t.Fatal("no run finished")
		}
		a, _ := newTestAggregator(t, Config{Out: out})
		var crash func(string, *bus.Delivery) error
		if crashes < 3 {
			left := 50 + 100*run
			crash = func(pt string, _ *bus.Delivery) error {
				if pt == "message" {
					if left--; left == 0 {
						return errCrash
					}
				}
				return nil
			}
		}
		a.hook = p.hook(crash)
		err := p.run(func(ctx context.Context) error { return RunNATS(ctx, a, cc) })
		if errors.Is(err, errCrash) {
			crashes++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	t.Logf("%d flows in %d messages aggregated in %v with %d crashes", fd.n, len(msgs), time.Since(start), crashes)
	checkFleet(t, out, fd)
}
