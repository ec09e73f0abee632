package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowbus/flowbus/agent/stage"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/spool"
)

// lineEncoder encodes each flow as "<uuid>;<pad x's>\n", so tests control
// message sizes exactly and can read the rows back.
type lineEncoder struct{ pad int }

func (l lineEncoder) Encode(dst []byte, flows []schemas.Flow) ([]byte, error) {
	for i := range flows {
		dst = append(dst, flows[i].UUID...)
		dst = append(dst, ';')
		dst = append(dst, bytes.Repeat([]byte{'x'}, l.pad)...)
		dst = append(dst, '\n')
	}
	return dst, nil
}

func decodeLines(v []byte) []string {
	var ids []string
	for _, line := range bytes.Split(bytes.TrimSuffix(v, []byte{'\n'}), []byte{'\n'}) {
		ids = append(ids, string(bytes.SplitN(line, []byte{';'}, 2)[0]))
	}
	return ids
}

// fakeBus is a Publisher that records messages and can be switched down.
type fakeBus struct {
	mu    sync.Mutex
	down  bool
	calls int
	msgs  []schemas.Message
}

var errBusDown = errors.New("bus down")

func (b *fakeBus) Publish(_ context.Context, msgs []schemas.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.down {
		return errBusDown
	}
	b.msgs = append(b.msgs, msgs...)
	return nil
}

func (b *fakeBus) Close() error { return nil }

func (b *fakeBus) setDown(d bool) {
	b.mu.Lock()
	b.down = d
	b.mu.Unlock()
}

func (b *fakeBus) messages() []schemas.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]schemas.Message(nil), b.msgs...)
}

func flow(key string, id int) schemas.Flow {
	return schemas.Flow{
		UUID:   fmt.Sprintf("%s#%d", key, id),
		TimeNs: int64(1000 + id),
		Dst:    schemas.Endpoint{Namespace: "payments", Workload: key},
	}
}

type harness struct {
	e   *Exporter
	bus *fakeBus
	reg *prometheus.Registry
	in  chan []schemas.Flow
	out chan error
}

func start(t *testing.T, cfg Config, bus *fakeBus, pad int) *harness {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = "node-a"
	}
	cfg.Run = "run-1"
	reg := prometheus.NewRegistry()
	sm, _ := stage.NewMetrics(reg)
	e, err := New(cfg, nil, reg, bus, sm.Stage("export"))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.enc = lineEncoder{pad: pad}
	h := &harness{e: e, bus: bus, reg: reg, in: make(chan []schemas.Flow, 16), out: make(chan error, 1)}
	go func() { h.out <- e.Run(h.in) }()
	return h
}

func (h *harness) stop(t *testing.T) {
	t.Helper()
	close(h.in)
	select {
	case err := <-h.out:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return 30 s after its input closed")
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

type summary struct {
	Key  string
	Seq  uint64
	Rows int
	IDs  []string
}

func summarize(msgs []schemas.Message) []summary {
	var s []summary
	for _, m := range msgs {
		s = append(s, summary{m.Key, m.Seq, m.Rows, decodeLines(m.Value)})
	}
	return s
}

func TestBatchesByRowsPerPartition(t *testing.T) {
	bus := &fakeBus{}
	h := start(t, Config{MaxRows: 3, Linger: time.Hour}, bus, 0)
	var in []schemas.Flow
	for i := range 4 {
		in = append(in, flow("ledger-svc", i), flow("fraud-detector", i))
	}
	h.in <- in
	h.stop(t)
	got := summarize(bus.messages())
	// Full batches go in the order they fill; the partial ones at shutdown
	// follow in map order, so compare those as a set.
	want := []summary{
		{"payments/ledger-svc", 1, 3, []string{"ledger-svc#0", "ledger-svc#1", "ledger-svc#2"}},
		{"payments/fraud-detector", 2, 3, []string{"fraud-detector#0", "fraud-detector#1", "fraud-detector#2"}},
	}
	if len(got) != 4 || !reflect.DeepEqual(got[:2], want) {
		t.Fatalf("messages %+v, want first %+v and two more", got, want)
	}
	tail := map[string][]string{got[2].Key: got[2].IDs, got[3].Key: got[3].IDs}
	wantTail := map[string][]string{"payments/ledger-svc": {"ledger-svc#3"}, "payments/fraud-detector": {"fraud-detector#3"}}
	if !reflect.DeepEqual(tail, wantTail) || got[2].Seq != 3 || got[3].Seq != 4 {
		t.Errorf("shutdown flush %+v, want %v with seq 3 and 4", got[2:], wantTail)
	}
	m := bus.messages()[0]
	if m.Node != "node-a" || m.Run != "run-1" || m.FirstTS != 1000 || m.LastTS != 1002 {
		t.Errorf("message metadata %+v, want node-a, run-1, ts 1000..1002", m)
	}
	if v := testutil.ToFloat64(h.e.m.rows); v != 8 {
		t.Errorf("flowbus_export_rows_total = %v, want 8", v)
	}
	if v := testutil.ToFloat64(h.e.st.Emitted); v != 8 {
		t.Errorf("export stage emitted = %v, want 8", v)
	}
}

func TestBatchesByBytes(t *testing.T) {
	bus := &fakeBus{}
	f := flow("ledger-svc", 0)
	per := estimate(&f)
	h := start(t, Config{MaxBytes: 5*per - 1, Linger: time.Hour}, bus, 0)
	var in []schemas.Flow
	for i := range 12 {
		in = append(in, flow("ledger-svc", i))
	}
	h.in <- in
	h.stop(t)
	var rows []int
	for _, m := range bus.messages() {
		rows = append(rows, m.Rows)
	}
	if !reflect.DeepEqual(rows, []int{5, 5, 2}) {
		t.Errorf("rows per message %v, want [5 5 2]", rows)
	}
}

func TestLingerSendsAQuietPartition(t *testing.T) {
	bus := &fakeBus{}
	h := start(t, Config{Linger: 50 * time.Millisecond}, bus, 0)
	h.in <- []schemas.Flow{flow("ledger-svc", 1), flow("ledger-svc", 2)}
	eventually(t, "the lingering batch to be published", func() bool { return len(bus.messages()) == 1 })
	if got := summarize(bus.messages()); got[0].Rows != 2 {
		t.Errorf("lingered message has %d rows, want 2", got[0].Rows)
	}
	h.stop(t)
}

// Once every partition has been quiet for idleLingers × Linger the
// batcher forgets them and its ticker stops; a flow after that starts it
// again and leaves within Linger, as the first did.
func TestLingerAfterTheBatcherWentIdle(t *testing.T) {
	bus := &fakeBus{}
	const linger = 20 * time.Millisecond
	h := start(t, Config{Linger: linger}, bus, 0)
	h.in <- []schemas.Flow{flow("ledger-svc", 1)}
	eventually(t, "the first batch to be published", func() bool { return len(bus.messages()) == 1 })
	time.Sleep(idleLingers*linger + 10*linger) // the partition forgotten, the ticker stopped
	sent := time.Now()
	h.in <- []schemas.Flow{flow("ledger-svc", 2)}
	eventually(t, "the batch after the idle time to be published", func() bool { return len(bus.messages()) == 2 })
	if took := time.Since(sent); took > 25*linger {
		t.Errorf("a flow after the idle time took %v to leave; Linger is %v", took, linger)
	}
	h.stop(t)
}

func TestSplitsMessagesOverTheBusLimit(t *testing.T) {
	bus := &fakeBus{}
	// Each flow encodes to 1000+len(uuid)+2 bytes; 10 of them are ~10 KB.
	h := start(t, Config{MaxMessageBytes: 4096, Linger: time.Hour}, bus, 1000)
	var in []schemas.Flow
	for i := range 10 {
		in = append(in, flow("ledger-svc", i))
	}
	h.in <- in
	h.stop(t)
	var ids []string
	var rows []int
	for i, m := range bus.messages() {
		if len(m.Value) > 4096 {
			t.Errorf("message %d is %d bytes, over the 4096 limit", i, len(m.Value))
		}
		if m.Seq != uint64(i+1) {
			t.Errorf("message %d has seq %d, want %d", i, m.Seq, i+1)
		}
		rows = append(rows, m.Rows)
		ids = append(ids, decodeLines(m.Value)...)
	}
	if !reflect.DeepEqual(rows, []int{2, 3, 2, 3}) {
		t.Errorf("rows per message %v, want [2 3 2 3] (halving 10 until under the limit)", rows)
	}
	if len(ids) != 10 || ids[0] != "ledger-svc#0" || ids[9] != "ledger-svc#9" {
		t.Errorf("rows %v, want ledger-svc#0..9 in order", ids)
	}
}

func TestQueueFullWithoutSpoolDropsAndCounts(t *testing.T) {
	bus := &fakeBus{down: true}
	h := start(t, Config{MaxRows: 1, QueueMessages: 2, DrainTimeout: 50 * time.Millisecond, RetryMin: time.Millisecond}, bus, 0)
	h.in <- []schemas.Flow{flow("a", 1), flow("a", 2), flow("a", 3), flow("a", 4), flow("a", 5)}
	close(h.in)
	err := <-h.out
	if err == nil {
		t.Fatal("Run returned nil, want an error naming the messages dropped at shutdown")
	}
	if v := testutil.ToFloat64(h.e.dropQueueFull); v != 3 {
		t.Errorf("dropped queue_full = %v, want 3", v)
	}
	if v := testutil.ToFloat64(h.e.dropShutdown); v != 2 {
		t.Errorf("dropped shutdown = %v, want 2", v)
	}
}

// checkExactlyOnceInOrder verifies that every id in want[key] arrived exactly
// once, in order per key.
func checkExactlyOnceInOrder(t *testing.T, msgs []schemas.Message, want map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	lastSeq := map[string]uint64{}
	for _, m := range msgs {
		if m.Seq <= lastSeq[m.Run] {
			t.Errorf("seq %d of run %s after seq %d: out of order or duplicate", m.Seq, m.Run, lastSeq[m.Run])
		}
		lastSeq[m.Run] = m.Seq
		got[m.Key] = append(got[m.Key], decodeLines(m.Value)...)
	}
	for k, ids := range want {
		if !reflect.DeepEqual(got[k], ids) {
			t.Errorf("partition %s: got %d rows, want %d in order (first diff at %d)", k, len(got[k]), len(ids), firstDiff(got[k], ids))
		}
	}
	if len(got) != len(want) {
		t.Errorf("got partitions %d, want %d", len(got), len(want))
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestOutageSpoolsAndReplaysInOrder(t *testing.T) {
	bus := &fakeBus{}
	dir := t.TempDir()
	h := start(t, Config{
		MaxRows: 10, Linger: 20 * time.Millisecond, QueueMessages: 4,
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		Spool: spool.Config{Dir: dir, SegmentBytes: 64 << 10},
	}, bus, 100)
	keys := []string{"ledger-svc", "fraud-detector", "sanctions-svc"}
	want := map[string][]string{}
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			var b []schemas.Flow
			for _, k := range keys {
				f := flow(k, i)
				b = append(b, f)
				want["payments/"+k] = append(want["payments/"+k], f.UUID)
			}
			h.in <- b
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	produce(0, 500)
	bus.setDown(true)
	produce(500, 3000) // the source keeps going while the bus is down
	eventually(t, "messages to reach the spool", func() bool { return h.e.spool.Len() > 10 })
	if v := testutil.ToFloat64(h.e.m.spooled); v == 0 {
		t.Error("nothing counted as spooled during the outage")
	}
	bus.setDown(false)
	produce(3000, 3500)
	eventually(t, "the spool to drain", func() bool { return h.e.spool.Len() == 0 })
	h.stop(t)
	checkExactlyOnceInOrder(t, bus.messages(), want)
	if n, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(n) != 0 {
		t.Errorf("segment files left after the outage: %v", n)
	}
	if v := gauge(t, h.reg, "flowbus_spool_bytes"); v != 0 {
		t.Errorf("flowbus_spool_bytes = %v after recovery, want 0", v)
	}
	if v := testutil.ToFloat64(h.e.m.rows); v != 3*3500 {
		t.Errorf("flowbus_export_rows_total = %v, want %d", v, 3*3500)
	}
}

func TestShutdownDuringOutageKeepsMessagesForTheNextRun(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{
		MaxRows: 5, Linger: time.Hour, QueueMessages: 100, DrainTimeout: 100 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, Spool: spool.Config{Dir: dir},
	}
	down := &fakeBus{down: true}
	h := start(t, cfg, down, 0)
	var in []schemas.Flow
	var want []string
	for i := range 23 {
		in = append(in, flow("ledger-svc", i))
		want = append(want, fmt.Sprintf("ledger-svc#%d", i))
	}
	h.in <- in
	h.stop(t)
	if len(down.messages()) != 0 {
		t.Fatal("a down bus accepted messages")
	}

	up := &fakeBus{}
	h2 := start(t, cfg, up, 0)
	h2.in <- []schemas.Flow{flow("ledger-svc", 23)}
	want = append(want, "ledger-svc#23")
	h2.stop(t)
	var got []string
	for _, m := range up.messages() {
		got = append(got, decodeLines(m.Value)...)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after restart got %v, want %v: spooled rows first, then new ones", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := map[string]Config{
		"a config without a node name is refused":     {},
		"a negative linger is refused":                {Node: "n", Linger: -1},
		"a message limit under 4 KiB is refused":      {Node: "n", MaxMessageBytes: 100},
		"a spool with a tiny segment size is refused": {Node: "n", Spool: spool.Config{Dir: "x", SegmentBytes: 1}},
	}
	for name, c := range tests {
		t.Run(name, func(t *testing.T) {
			if err := c.Validate(); err == nil {
				t.Errorf("Validate(%+v) = nil, want error", c)
			}
		})
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestLingerAndIdlePartitionsInTheBatcher(t *testing.T) {
	e, err := New(Config{Node: "n", Linger: time.Second}, nil, nil, &fakeBus{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.enc = lineEncoder{}
	b := newBatcher(e)
	b.add([]schemas.Flow{flow("a", 1), flow("b", 1)})
	t0 := b.parts[partKey{"payments", "a"}].since
	b.expire(t0.Add(999 * time.Millisecond))
	if len(e.queue) != 0 {
		t.Fatalf("%d messages sent before the linger passed, want 0", len(e.queue))
	}
	b.expire(t0.Add(time.Second))
	if len(e.queue) != 2 || len(b.parts) != 2 {
		t.Fatalf("after the linger: %d messages, %d partitions; want 2 and 2", len(e.queue), len(b.parts))
	}
	b.add([]schemas.Flow{flow("a", 2)})
	b.expire(t0.Add(2 * time.Second)) // a: sent again; b: idle for 1 s
	b.expire(t0.Add(11 * time.Second))
	if _, ok := b.parts[partKey{"payments", "b"}]; ok || len(b.parts) != 1 {
		t.Errorf("partitions after 10 idle lingers: %v, want only a", b.parts)
	}
	b.expire(t0.Add(13 * time.Second))
	if len(b.parts) != 0 || len(e.queue) != 3 {
		t.Errorf("after a went idle too: %d partitions, %d messages; want 0 and 3", len(b.parts), len(e.queue))
	}
}

func TestRealArrowMessagesStayUnderTheLimitAndDecodeInOrder(t *testing.T) {
	bus := &fakeBus{}
	reg := prometheus.NewRegistry()
	e, err := New(Config{Node: "node-a", MaxMessageBytes: 64 << 10, Linger: time.Hour}, nil, reg, bus, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan []schemas.Flow, 1)
	var want []string
	var flows []schemas.Flow
	for i := range 5000 {
		f := flow("ledger-svc", i)
		f.L7 = schemas.L7{Protocol: schemas.L7HTTP, HTTPMethod: "GET", HTTPURL: fmt.Sprintf("/api/v1/orders/%d/items/%x", i, i*7919)}
		f.Src.Labels = []string{"k8s:app=checkout-api", fmt.Sprintf("k8s:pod-template-hash=%x", i*104729)}
		flows = append(flows, f)
		want = append(want, f.UUID)
	}
	in <- flows
	close(in)
	if err := e.Run(in); err != nil {
		t.Fatal(err)
	}
	dec := flowcodec.NewDecoder()
	var got []string
	msgs := bus.messages()
	for _, m := range msgs {
		if len(m.Value) > 64<<10 {
			t.Errorf("message seq %d is %d bytes, over 64 KiB", m.Seq, len(m.Value))
		}
		out, err := dec.Decode(nil, m.Value)
		if err != nil {
			t.Fatalf("message seq %d: %v", m.Seq, err)
		}
		if len(out) != m.Rows {
			t.Errorf("message seq %d says %d rows, holds %d", m.Seq, m.Rows, len(out))
		}
		for _, f := range out {
			got = append(got, f.UUID)
		}
	}
	if len(msgs) < 2 {
		t.Errorf("%d messages, want the 5000 flows split over several", len(msgs))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %d flows, want the 5000 sent, in order", len(got))
	}
}
