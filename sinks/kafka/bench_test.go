package kafka

import (
	"context"
	"fmt"
	"testing"

	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// BenchmarkPublish publishes batches to an in-process kfake broker with 8
// partitions: one Publish per batch (records pipelined per partition, one
// wait) beside the baseline of one Publish per message (wait for each ack).
func BenchmarkPublish(b *testing.B) {
	for _, sh := range []struct{ batch, size int }{{64, 4 << 10}, {16, 64 << 10}} {
		msgs := bustest.Messages("node-bench", 1, sh.batch)
		for i := range msgs {
			msgs[i].Value = make([]byte, sh.size)
		}
		setup := func(b *testing.B) *Producer {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(testPartitions, DefaultTopic))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(c.Close)
			p, err := NewProducer(ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			return p
		}
		ctx := context.Background()
		name := fmt.Sprintf("%d×%dKiB", sh.batch, sh.size>>10)
		b.Run(name+"/publish per batch", func(b *testing.B) {
			p := setup(b)
			b.SetBytes(int64(sh.batch * sh.size))
			for i := 0; i < b.N; i++ {
				if err := p.Publish(ctx, msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/baseline publish per message", func(b *testing.B) {
			p := setup(b)
			b.SetBytes(int64(sh.batch * sh.size))
			for i := 0; i < b.N; i++ {
				for j := range msgs {
					if err := p.Publish(ctx, msgs[j:j+1]); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
