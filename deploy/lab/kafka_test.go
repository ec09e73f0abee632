package lab

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaWrites counts, by api key name, the requests a kgo client wrote
// (HookBrokerWrite): what the client did, independently of the lab's
// wire recorder.
type kafkaWrites struct {
	mu sync.Mutex
	n  map[string]int
}

func (k *kafkaWrites) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, _ error) {
	k.mu.Lock()
	k.n[kmsg.NameForKey(key)]++
	k.mu.Unlock()
}

func TestKafkaClientsAgainstKfakeWriteEveryRequestToTheTruth(t *testing.T) {
	port := freePort(t)
	yaml := fmt.Sprintf(`
pods:
  - name: ledger-events-0
    namespace: payments
    workload: ledger-events
    kind: StatefulSet
    servers: [{kind: kafka, port: %d, topics: [ledger.entries, ledger.audit]}]
  - name: ledger-svc
    namespace: payments
    clients: [{to: ledger-events-0, kind: kafka, port: %[1]d, topics: [ledger.entries, ledger.audit], kafka_version: "3.0"}]
  - name: rewards
    namespace: payments
    clients: [{to: ledger-events-0, kind: kafka, port: %[1]d, role: consume, topics: [ledger.entries, ledger.audit]}]
`, port)
	// The server as a pod runs it, on loopback, counting what it served.
	var served [2]atomic.Int64 // Produce, Fetch
	clusters, err := startKafka([]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}, port, []string{"ledger.entries", "ledger.audit"},
		nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clusters {
		defer c.Close()
		for i, key := range []kmsg.Key{kmsg.Produce, kmsg.Fetch} {
			c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				served[i].Add(1)
				return nil, nil, false
			})
		}
	}
	_ = kfake.NumBrokers

	prod, prodDir := loopbackEdge(t, yaml, "ledger-svc", 0)
	cons, consDir := loopbackEdge(t, yaml, "rewards", 0)
	writes := map[*edge]*kafkaWrites{}
	for _, e := range []*edge{prod, cons} {
		w := &kafkaWrites{n: map[string]int{}}
		writes[e] = w
		if err := e.setupKafka(kgo.WithHooks(w)); err != nil {
			t.Fatal(err)
		}
	}
	const produced = 20 // both families, both topics
	for range produced {
		prod.sent.Add(1)
		prod.do()
	}
	deadline := time.Now().Add(10 * time.Second)
	for cons.sent.Load() < 6 || served[1].Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("consumer: %+v, fetches served %d", cons.stats(), served[1].Load())
		}
		cons.sent.Add(1)
		cons.do()
	}
	for _, e := range []*edge{prod, cons} {
		for _, c := range e.closers {
			c()
		}
		if err := e.truth.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if st := prod.stats(); st.OK != produced || st.Errors != 0 {
		t.Fatalf("producer %+v (%s); want %d OK", st, st.LastError, produced)
	}
	if st := cons.stats(); st.OK != st.Sent || st.Errors != 0 {
		t.Fatalf("consumer %+v (%s); want every poll OK", st, st.LastError)
	}

	for _, tc := range []struct {
		e   *edge
		dir string
	}{{prod, prodDir}, {cons, consDir}} {
		recs, err := ReadTruth(tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		ports := map[uint16]bool{}
		for _, r := range recs {
			got[r.Method]++
			ports[r.LocalPort] = true
			if r.Proto != "kafka" || r.Transport != "tcp" || r.ServerPort != port || r.LocalPort == 0 || r.ToWorkload != "ledger-events" || r.Time == 0 {
				t.Errorf("%s: %+v", tc.e.from, r)
			}
			if r.Error == "" && (r.Status != 0 || r.LatencyNs <= 0) {
				t.Errorf("%s: %+v; want error code 0 and a latency", tc.e.from, r)
			}
			// The producer is capped at Kafka 3.0: Produce v9, topics by name.
			if r.Method == "Produce" && (r.Error != "" || r.APIVersion != 9 || len(r.Topics) != 1 || r.Path != r.Topics[0]) {
				t.Errorf("%s: %+v; want an answered Produce v9 naming its topic", tc.e.from, r)
			}
			// Fetch v13+ names topics by ID, and an incremental fetch
			// session lists only the partitions that changed: the names
			// are those Metadata gave for the IDs, of the edge's topics.
			for _, tp := range r.Topics {
				if r.Method == "Fetch" && tp != "ledger.entries" && tp != "ledger.audit" {
					t.Errorf("%s: %+v; want a Fetch of the edge's topics", tc.e.from, r)
				}
			}
			if r.Method == "Fetch" && r.APIVersion >= 13 && r.Path != "" {
				t.Errorf("%s: %+v; want no topic name on the wire of a Fetch v13+", tc.e.from, r)
			}
		}
		w := writes[tc.e]
		w.mu.Lock()
		if fmt.Sprint(got) != fmt.Sprint(w.n) {
			t.Errorf("%s: truth %v; the client wrote %v", tc.e.from, got, w.n)
		}
		w.mu.Unlock()
		if st := tc.e.stats(); int(st.Connections) != len(ports) {
			t.Errorf("%s: %d connections counted, %d local ports in the truth", tc.e.from, st.Connections, len(ports))
		}
		t.Logf("%s: %v on %d connections", tc.e.from, got, len(ports))
	}
	recs, _ := ReadTruth(prodDir)
	produces := 0
	for _, r := range recs {
		if r.Method == "Produce" {
			if produces == 0 {
				t.Logf("first Produce: v%d path %q topics %v", r.APIVersion, r.Path, r.Topics)
			}
			produces++
		}
	}
	if produces != produced || int64(produces) != served[0].Load() {
		t.Errorf("%d Produce in the truth, %d produced, %d served", produces, produced, served[0].Load())
	}
	recs, _ = ReadTruth(consDir)
	var fetches, unanswered int64
	for _, r := range recs {
		if r.Method == "Fetch" {
			fetches++
			if r.Status == -1 {
				unanswered++
			}
		}
	}
	// The fetches in flight at close (one per family at most) may not
	// have reached the server's handler.
	if s := served[1].Load(); fetches < s || fetches > s+2 || fetches-unanswered > s {
		t.Errorf("%d Fetch in the truth (%d unanswered), %d served", fetches, unanswered, s)
	}
}
