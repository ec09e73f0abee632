package kafka

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestKcatReadsTheKeysAndHeadersTheProducerWrote checks the records with an
// independent client (librdkafka's kcat) rather than franz-go reading its own
// output.
func TestKcatReadsTheKeysAndHeadersTheProducerWrote(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed: independent-client check skipped")
	}
	c := newCluster(t, kfake.SeedTopics(testPartitions, DefaultTopic))
	p := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}})
	msgs := bustest.Messages("node-k", 1, 12) // seq 8's key is empty: it must hash like any key, not go to a random partition
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
	cmd := exec.CommandContext(ctx, kcat, "-b", strings.Join(c.ListenAddrs(), ","), "-C", "-t", DefaultTopic,
		"-e", "-q", "-f", "%k|%p|%h\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	// kcat prints partitions one after the other; index by flowbus-seq.
	got := map[string]string{}
	for _, l := range lines {
		parts := strings.SplitN(l, "|", 3)
		if len(parts) != 3 {
			t.Fatalf("kcat line %q: want key|partition|headers", l)
		}
		seq := ""
		for _, h := range strings.Split(parts[2], ",") {
			if v, ok := strings.CutPrefix(h, schemas.HeaderSeq+"="); ok {
				seq = v
			}
		}
		got[seq] = l
	}
	if len(lines) != len(msgs) || len(got) != len(msgs) {
		t.Fatalf("kcat read %d records (%d distinct), want %d:\n%s", len(lines), len(got), len(msgs), out)
	}
	for i := range msgs {
		m := &msgs[i]
		var hs []string
		for _, h := range m.Headers() {
			hs = append(hs, h[0]+"="+h[1])
		}
		want := m.Key + "|" + itoa(schemas.PartitionOf(m.Key, testPartitions)) + "|" + strings.Join(hs, ",")
		seq := m.Run + "/" + itoa(int(m.Seq))
		if got[seq] != want {
			t.Errorf("kcat record %s:\n got %q\nwant %q", seq, got[seq], want)
		}
	}
}
