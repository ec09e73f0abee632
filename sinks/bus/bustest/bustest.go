// Package bustest holds what the tests of both transports, sinks/kafka and
// sinks/nats, share: the messages they publish, polling a consumer, and the
// checks that what comes back is what was published, once, in the
// partition its key hashes to and in order.
package bustest

import (
	"bytes"
	"context"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
)

// Keys are destination workloads as the agent keys them, plus the empty key
// of flows toward the world. Messages cycles through them.
var Keys = []string{
	"payments/ledger-svc", "payments/checkout-api", "payments/fraud-detector",
	"payments/sanctions-svc", "kube-system/kube-dns", "payments/postgres-primary",
	"istio-system/istio-gateway", "payments/rewards-cron", "",
}

// Messages returns n messages of node, with sequence numbers from first and
// values of varying size (100 + 977·seq bytes, not Arrow).
func Messages(node string, first, n int) []schemas.Message {
	msgs := make([]schemas.Message, n)
	for i := range msgs {
		seq := first + i
		msgs[i] = schemas.Message{
			Key:     Keys[seq%len(Keys)],
			Node:    node,
			Run:     "1764100000000000000",
			Seq:     uint64(seq),
			Rows:    seq*37 + 1,
			FirstTS: 1764100000_000000000 + int64(seq)*1e9,
			LastTS:  1764100000_999000000 + int64(seq)*1e9,
			Value:   bytes.Repeat([]byte{byte(seq)}, 100+seq*977),
		}
	}
	return msgs
}

// ArrowMessages encodes, per destination workload, a message of rows flows
// toward it with the real codec, as the agent's exporter does. It returns
// the messages and, by key, the flows each holds.
func ArrowMessages(t testing.TB, node string, rows int) ([]schemas.Message, map[string][]schemas.Flow) {
	t.Helper()
	dsts := []string{"ledger-svc", "checkout-api", "fraud-detector", "sanctions-svc", "postgres-primary", "rewards-cron"}
	enc := flowcodec.NewEncoder()
	byKey := map[string][]schemas.Flow{}
	var msgs []schemas.Message
	t0 := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC).UnixNano()
	for i, dst := range dsts {
		flows := make([]schemas.Flow, rows)
		for j := range flows {
			f := &flows[j]
			f.TimeNs = t0 + int64(i*rows+j)*int64(time.Millisecond)
			f.NodeName = node
			f.SrcIP = netip.AddrFrom4([4]byte{10, 0, 1, byte(j)})
			f.DstIP = netip.AddrFrom4([4]byte{10, 0, 2, byte(i)})
			f.SrcPort, f.DstPort, f.L4Protocol = uint16(30000+j), 8080, 6
			f.Src = schemas.Endpoint{Identity: 1000, Namespace: "payments", PodName: "checkout-api-7d9f", Workload: "checkout-api", WorkloadKind: "Deployment", Labels: []string{"k8s:app=checkout-api"}}
			f.Dst = schemas.Endpoint{Identity: uint32(2000 + i), Namespace: "payments", PodName: dst + "-0", Workload: dst, WorkloadKind: "Deployment", Labels: []string{"k8s:app=" + dst}}
		}
		v, err := enc.Encode(nil, flows)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		key := flows[0].PartitionKey()
		byKey[key] = flows
		msgs = append(msgs, schemas.Message{Key: key, Node: node, Run: "1", Seq: uint64(i + 1), Rows: rows,
			FirstTS: flows[0].TimeNs, LastTS: flows[rows-1].TimeNs, Value: v})
	}
	return msgs, byKey
}

// CheckFlows asserts that each delivery's value decodes to exactly the flows
// ArrowMessages encoded for its key.
func CheckFlows(t testing.TB, ds []bus.Delivery, byKey map[string][]schemas.Flow) {
	t.Helper()
	dec := flowcodec.NewDecoder()
	for _, d := range ds {
		got, err := dec.Decode(nil, d.Value)
		if err != nil {
			t.Fatalf("decode delivery %d@%d: %v", d.Partition, d.Offset, err)
		}
		if want := byKey[string(d.Key)]; !reflect.DeepEqual(got, want) {
			t.Errorf("key %s: decoded %d flows differ from the %d encoded", d.Key, len(got), len(want))
		}
	}
}

// Poller is the consumer PollN and PollQuiet read from.
type Poller interface {
	Poll(ctx context.Context) ([]bus.Delivery, error)
}

// PollN polls until n deliveries arrived, failing the test on a poll error
// or when wait passes first.
func PollN(t testing.TB, c Poller, n int, wait time.Duration) []bus.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var out []bus.Delivery
	for len(out) < n {
		ds, err := c.Poll(ctx)
		if err != nil {
			t.Fatalf("poll after %d of %d deliveries: %v", len(out), n, err)
		}
		out = append(out, ds...)
	}
	return out
}

// PollQuiet polls for d and returns what arrived (the caller expects
// nothing more).
func PollQuiet(t testing.TB, c Poller, d time.Duration) []bus.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []bus.Delivery
	for {
		ds, err := c.Poll(ctx)
		out = append(out, ds...)
		if err != nil {
			return out
		}
	}
}

// Committer is the consumer CommitFirst polls and commits.
type Committer interface {
	Poller
	Commit(ctx context.Context, next map[int32]int64) error
}

// CommitFirst processes the first n or more deliveries of c as a consumer
// that then stops would: it polls until at least n came (failing the test
// if one Poll returns more than maxPoll), commits the offset after the last
// of them per partition, and returns them and the offsets committed.
func CommitFirst(ctx context.Context, t testing.TB, c Committer, n, maxPoll int) ([]bus.Delivery, map[int32]int64) {
	t.Helper()
	var processed []bus.Delivery
	next := map[int32]int64{}
	for len(processed) < n {
		ds, err := c.Poll(ctx)
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		if len(ds) > maxPoll {
			t.Fatalf("poll returned %d deliveries, max poll records is %d", len(ds), maxPoll)
		}
		for _, d := range ds {
			processed = append(processed, d)
			next[d.Partition] = d.Offset + 1
		}
	}
	if err := c.Commit(ctx, next); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return processed, next
}

// CheckNotBefore asserts that no delivery of ds lies below the offset
// committed for its partition in next.
func CheckNotBefore(t testing.TB, ds []bus.Delivery, next map[int32]int64) {
	t.Helper()
	for _, d := range ds {
		if d.Offset < next[d.Partition] {
			t.Errorf("partition %d offset %d delivered again after commit of %d", d.Partition, d.Offset, next[d.Partition])
		}
	}
}

// CheckDeliveries asserts that ds is exactly msgs: each message once (known
// by its flowbus-node and flowbus-seq headers, which make its ID), in the
// partition its key hashes to (schemas.PartitionOf over partitions), with
// its key and value, and in publish order, at increasing offsets, within
// each partition. check asserts, for each delivery and the message it
// carries, what depends on the transport: headers, topic or subject, time.
func CheckDeliveries(t testing.TB, ds []bus.Delivery, msgs []schemas.Message, partitions int, check func(d *bus.Delivery, m *schemas.Message)) {
	t.Helper()
	if len(ds) != len(msgs) {
		t.Fatalf("got %d deliveries, want %d", len(ds), len(msgs))
	}
	byID := map[string]*schemas.Message{}
	for i := range msgs {
		byID[msgs[i].ID()] = &msgs[i]
	}
	seen := map[string]bool{}
	lastSeq := map[int32]uint64{}
	lastOff := map[int32]int64{}
	for i := range ds {
		d := &ds[i]
		id := d.Headers[schemas.HeaderNode] + "/" + d.Headers[schemas.HeaderSeq]
		m, ok := byID[id]
		if !ok {
			t.Fatalf("delivery %d@%d has unknown ID %q (%s/%s)", d.Partition, d.Offset, id, schemas.HeaderNode, schemas.HeaderSeq)
		}
		if seen[id] {
			t.Fatalf("message %s delivered twice", id)
		}
		seen[id] = true
		if string(d.Key) != m.Key {
			t.Errorf("message %s: key %q, want %q", id, d.Key, m.Key)
		}
		if want := schemas.PartitionOf(m.Key, partitions); int(d.Partition) != want {
			t.Errorf("message %s key %q: partition %d, want PartitionOf = %d", id, m.Key, d.Partition, want)
		}
		if !bytes.Equal(d.Value, m.Value) {
			t.Errorf("message %s: value of %d bytes differs from the %d published", id, len(d.Value), len(m.Value))
		}
		check(d, m)
		if prev, ok := lastSeq[d.Partition]; ok && m.Seq <= prev {
			t.Errorf("partition %d: seq %d after %d: out of publish order", d.Partition, m.Seq, prev)
		}
		if prev, ok := lastOff[d.Partition]; ok && d.Offset <= prev {
			t.Errorf("partition %d: offset %d after %d", d.Partition, d.Offset, prev)
		}
		lastSeq[d.Partition], lastOff[d.Partition] = m.Seq, d.Offset
	}
}
