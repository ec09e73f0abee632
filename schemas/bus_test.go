package schemas

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMurmur2MatchesKafka checks murmur2 against the values of Kafka's own
// tests (org.apache.kafka.common.utils.UtilsTest#testMurmur2).
func TestMurmur2MatchesKafka(t *testing.T) {
	for _, c := range []struct {
		key  string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	} {
		if got := int32(murmur2([]byte(c.key))); got != c.want {
			t.Errorf("murmur2(%q) = %d, want %d", c.key, got, c.want)
		}
	}
}

// TestPartitionOfMatchesFranzGo: PartitionOf places a key where franz-go's
// Kafka-compatible key partitioner does, so Kafka and NATS agree.
func TestPartitionOfMatchesFranzGo(t *testing.T) {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("flowbus.flows.v1")
	for _, n := range []int{1, 2, 3, 12, 64} {
		for i := range 500 {
			key := fmt.Sprintf("payments/workload-%d", i)
			want := p.Partition(&kgo.Record{Key: []byte(key)}, n)
			if got := PartitionOf(key, n); got != want {
				t.Fatalf("PartitionOf(%q, %d) = %d, franz-go says %d", key, n, got, want)
			}
		}
	}
	if got := PartitionOf("payments/ledger-svc", 0); got != 0 {
		t.Fatalf("PartitionOf with no partitions = %d, want 0", got)
	}
}

func TestMessageIDAndHeaders(t *testing.T) {
	m := Message{Key: "payments/ledger-svc", Node: "node-1", Run: "20261125T2000Z", Seq: 42, Rows: 7, FirstTS: 10, LastTS: 20}
	if got, want := m.ID(), "node-1/20261125T2000Z/42"; got != want {
		t.Fatalf("ID = %q, want %q", got, want)
	}
	want := [][2]string{
		{"content-type", "application/vnd.apache.arrow.stream"},
		{"flowbus-schema", "flow.v1"},
		{"flowbus-node", "node-1"},
		{"flowbus-rows", "7"},
		{"flowbus-first-ts", "10"},
		{"flowbus-last-ts", "20"},
		{"flowbus-seq", "20261125T2000Z/42"},
	}
	got := m.Headers()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Headers = %v, want %v", got, want)
	}
}

func TestPartitionKey(t *testing.T) {
	for _, c := range []struct {
		name string
		f    Flow
		want string
	}{
		{"a flow toward a workload is keyed by namespace/workload", Flow{Dst: Endpoint{Namespace: "payments", Workload: "ledger-svc", PodName: "ledger-svc-1"}}, "payments/ledger-svc"},
		{"a flow toward a bare pod is keyed by namespace/pod", Flow{Dst: Endpoint{Namespace: "default", PodName: "debug"}}, "default/debug"},
		{"a flow toward an IP is keyed by the IP", Flow{DstIP: mustAddr("10.0.0.9")}, "ip/10.0.0.9"},
		{"a flow with no destination is unknown", Flow{}, "unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.f.PartitionKey(); got != c.want {
				t.Fatalf("PartitionKey = %q, want %q", got, c.want)
			}
		})
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
