package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/aggregate"
	"github.com/flowbus/flowbus/agent/export"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	flowbusnats "github.com/flowbus/flowbus/sinks/nats"
	"github.com/flowbus/flowbus/sinks/spool"
)

// seqSource sends flows toward a few workloads at a steady rate; each flow's
// UUID is "<workload>/<n>" with n counting from 0 per workload, so a reader
// can check that every flow arrived exactly once and in order.
type seqSource struct {
	workloads []string
	rate      int // flows per second
	count     int
}

func (s seqSource) Name() string { return "seq" }

func (s seqSource) Run(ctx context.Context, out chan<- []schemas.Flow, _ LostFunc) error {
	next := make([]int, len(s.workloads))
	start := time.Now()
	const batch = 50
	for sent := 0; sent < s.count; sent += batch {
		if d := time.Until(start.Add(time.Duration(sent) * time.Second / time.Duration(s.rate))); d > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
		}
		b := make([]schemas.Flow, batch)
		for i := range b {
			w := (sent + i) % len(s.workloads)
			b[i] = schemas.Flow{
				UUID:   s.workloads[w] + "/" + strconv.Itoa(next[w]),
				TimeNs: time.Now().UnixNano(),
				Dst:    schemas.Endpoint{Namespace: "payments", Workload: s.workloads[w]},
			}
			next[w]++
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// faultOutage is how long the outage tests keep the bus down: 60 s under
// make faults (FLOWBUS_FAULTS_FULL=1), 10.5 s otherwise.
func faultOutage() time.Duration {
	if os.Getenv("FLOWBUS_FAULTS_FULL") == "1" {
		return 60 * time.Second
	}
	return 10500 * time.Millisecond
}

// outageFlows is a count of flows at 2,000/s that lasts 2 s before the
// outage, through it, and 3 s after it (a multiple of 5 workloads × 50).
func outageFlows(outage time.Duration) int {
	return int((outage+5*time.Second)/time.Second) * 2000
}

// TestNATSOutage stops the embedded NATS server for faultOutage (more than
// 10 s; 60 s under make faults) while the source keeps producing, restarts it on the same store, and checks that
// every flow arrives exactly once, in order per partition, and that the
// spool is empty again.
func TestNATSOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("the outage lasts 10 s; skipped in -short mode")
	}
	outage := faultOutage()
	store := filepath.Join(t.TempDir(), "jetstream")
	srv, url, err := flowbusnats.StartEmbedded(store, -1)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(url[strings.LastIndex(url, ":")+1:])
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()

	pub, err := flowbusnats.NewPublisher(flowbusnats.PublisherConfig{Conn: flowbusnats.Conn{URL: url}, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	src := seqSource{workloads: []string{"ledger-svc", "fraud-detector", "sanctions-svc", "checkout-api", "coredns"}, rate: 2000, count: outageFlows(outage)}
	reg := prometheus.NewRegistry()
	a, err := New(Config{
		Node: "node-a", Source: src,
		Aggregate: aggregate.Config{Disabled: true},
		Export: export.Config{
			Linger: 100 * time.Millisecond, MaxRows: 500, QueueMessages: 8,
			PublishTimeout: time.Second, RetryMax: 500 * time.Millisecond,
			Spool: spool.Config{Dir: filepath.Join(t.TempDir(), "spool"), SegmentBytes: 1 << 20},
		},
	}, nil, reg, pub)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	time.Sleep(2 * time.Second)
	srv.Shutdown()
	srv.WaitForShutdown()
	t.Logf("bus stopped for %v", outage)
	time.Sleep(outage)
	if v := metric(t, reg, "flowbus_spool_bytes"); v == 0 {
		t.Errorf("nothing was spooled during a %v outage", outage)
	}
	srv, _, err = flowbusnats.StartEmbedded(store, port)
	if err != nil {
		t.Fatalf("restart the bus on the same store: %v", err)
	}
	t.Log("bus restarted")

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the agent did not finish 60 s after the bus came back")
	}
	if v := metric(t, reg, "flowbus_spool_bytes"); v != 0 {
		t.Errorf("flowbus_spool_bytes = %v after recovery, want 0", v)
	}

	checkSequences(t, readAll(t, url), src)
}

// checkSequences checks that every flow of src arrived exactly once, in
// order per partition key.
func checkSequences(t *testing.T, got map[string][]string, src seqSource) {
	t.Helper()
	for _, w := range src.workloads {
		ids := got["payments/"+w]
		if len(ids) != src.count/len(src.workloads) {
			t.Errorf("%s: %d flows arrived, want %d", w, len(ids), src.count/len(src.workloads))
		}
		for i, id := range ids {
			if want := fmt.Sprintf("%s/%d", w, i); id != want {
				t.Errorf("%s: flow %d is %s, want %s (lost, duplicated or out of order)", w, i, id, want)
				break
			}
		}
	}
}

// readAll reads the whole stream and returns the flows' UUIDs per partition key.
func readAll(t *testing.T, url string) map[string][]string {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, flowbusnats.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dec := flowcodec.NewDecoder()
	out := map[string][]string{}
	var flows []schemas.Flow
	for read := uint64(0); read < info.State.Msgs; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			read++
			if flows, err = dec.Decode(flows[:0], m.Data()); err != nil {
				t.Fatalf("message %d does not decode: %v", read, err)
			}
			for i := range flows {
				k := flows[i].PartitionKey()
				if h := m.Headers().Get(flowbusnats.HeaderKey); h != k {
					t.Fatalf("flow of %s in a message keyed %s", k, h)
				}
				out[k] = append(out[k], flows[i].UUID)
			}
		}
	}
	return out
}

func metric(t testing.TB, reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	if t != nil {
		t.Fatalf("metric %s not registered", name)
	}
	return 0
}
