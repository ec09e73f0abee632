package nats

import (
	"context"
	"fmt"
	"testing"

	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkPublish publishes batches to an embedded server:
// Publisher.Publish (pipelined async publish, one wait for all acks) beside
// the baseline of a synchronous JetStream publish per message. In process
// the round trip is tiny, so this is the floor of what pipelining saves; over
// a network each message of the baseline pays a full round trip.
func BenchmarkPublish(b *testing.B) {
	for _, sh := range []struct{ batch, size int }{{64, 4 << 10}, {16, 64 << 10}} {
		msgs := bustest.Messages("node-bench", 1, sh.batch)
		for i := range msgs {
			msgs[i].Value = make([]byte, sh.size)
		}
		setup := func(b *testing.B) *Publisher {
			_, u := startServer(b, b.TempDir(), -1)
			p, err := NewPublisher(PublisherConfig{Conn: Conn{URL: u}, Stream: StreamConfig{MaxBytes: 1 << 30}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			if err := p.Publish(context.Background(), msgs[:1]); err != nil { // creates the stream
				b.Fatal(err)
			}
			return p
		}
		ctx := context.Background()
		name := fmt.Sprintf("%d×%dKiB", sh.batch, sh.size>>10)
		b.Run(name+"/publisher pipelined", func(b *testing.B) {
			p := setup(b)
			b.SetBytes(int64(sh.batch * sh.size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range msgs {
					msgs[j].Seq = uint64(1e6 + i*sh.batch + j)
				}
				if err := p.Publish(ctx, msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/baseline sync publish per message", func(b *testing.B) {
			p := setup(b)
			b.SetBytes(int64(sh.batch * sh.size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range msgs {
					msgs[j].Seq = uint64(1e6 + i*sh.batch + j)
					if _, err := p.js.PublishMsg(ctx, p.message(&msgs[j]), jetstream.WithMsgID(msgs[j].ID())); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
