package aggregator

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
)

// memLog is an in-memory partitioned log standing in for the bus in the
// tests that need no transport: message values are 8-byte indexes into
// msgs, decoded by fakeDecode without Arrow.
type memLog struct {
	msgs  []genMessage
	parts [][]int // per partition: indexes into msgs, in offset order
}

func newMemLog(msgs []genMessage, nparts int) *memLog {
	l := &memLog{msgs: msgs, parts: make([][]int, nparts)}
	for i, m := range msgs {
		l.parts[m.partition] = append(l.parts[m.partition], i)
	}
	return l
}

func (l *memLog) message(p int32, off int64) bus.Delivery {
	v := binary.LittleEndian.AppendUint64(nil, uint64(l.parts[p][off]))
	return bus.Delivery{Partition: p, Offset: off, Value: v, Time: time.Unix(0, genStart)}
}

func (l *memLog) fakeDecode(v []byte, fn func(*schemas.Flow)) (int, error) {
	fs := l.msgs[binary.LittleEndian.Uint64(v)].flows
	for i := range fs {
		fn(&fs[i])
	}
	return len(fs), nil
}

var errCrash = errors.New("injected crash")

// consume reads every partition of l from committed, interleaving the
// partitions poll by poll (batch messages each) and committing after each
// poll, as RunKafka does. It returns errCrash if the hook crashed it.
func (l *memLog) consume(a *Aggregator, committed map[int32]int64, batch int) error {
	ctx := context.Background()
	a.decode = l.fakeDecode
	var ps []int32
	for p := range l.parts {
		ps = append(ps, int32(p))
	}
	if err := a.Assign(ps...); err != nil {
		return err
	}
	pos := make(map[int32]int64)
	for p, off := range committed {
		pos[p] = off
	}
	for {
		progress := false
		for _, p := range ps {
			for i := 0; i < batch && pos[p] < int64(len(l.parts[p])); i++ {
				if err := a.Process(ctx, l.message(p, pos[p])); err != nil {
					return err
				}
				pos[p]++
				progress = true
			}
		}
		if !progress {
			break
		}
		for _, p := range ps {
			if off, ok := a.CommitOffset(p); ok {
				committed[p] = off
			}
		}
		if err := a.Committed(); err != nil {
			return err
		}
	}
	offs, err := a.Release(ps...)
	if err != nil {
		return err
	}
	for p, off := range offs {
		committed[p] = off
	}
	return nil
}

func TestExactTotalsWithoutTransport(t *testing.T) {
	g := generate(1, 200_000, 20*time.Minute, 1000)
	l := newMemLog(split(g.flows, 4, 500), 4)
	out := t.TempDir()
	a, reg := newTestAggregator(t, Config{Out: out})
	if err := l.consume(a, map[int32]int64{}, 3); err != nil {
		t.Fatal(err)
	}
	checkExact(t, out, g)
	checkQuantiles(t, out, g)
	if _, err := os.Stat(filepath.Join(out, FlowsTable)); !os.IsNotExist(err) {
		t.Errorf("without RawFlows, %s exists: %v", FlowsTable, err)
	}
	if got := counter(t, reg, "flowbus_aggregator_flow_rows_total"); got != float64(len(g.flows)) {
		t.Errorf("flow_rows_total = %v, want %d", got, len(g.flows))
	}
	if got := counter(t, reg, "flowbus_aggregator_late_rows_total"); got < 150 {
		t.Errorf("late_rows_total = %v, want about 200 of the generator's late records", got)
	}
}

// TestCrashAndRestartKeepTotalsExact kills the aggregator (no write, no
// commit) at random points — after a message, between a file's rename and
// the offset commit, between the route and the pair file — and restarts it
// from the committed offsets over the same output directory.
func TestCrashAndRestartKeepTotalsExact(t *testing.T) {
	g := generate(2, 120_000, 15*time.Minute, 500)
	out := t.TempDir()
	runWithCrashes(t, g, out, Config{Out: out}, []string{"message", "written", "route-written", "committed"})
	checkExact(t, out, g)
	checkQuantiles(t, out, g)
	if _, err := os.Stat(filepath.Join(out, FlowsTable)); !os.IsNotExist(err) {
		t.Errorf("without RawFlows, %s exists: %v", FlowsTable, err)
	}
}

// crashAt is how many times each crash point passes before a crash (at
// most): the points differ in frequency.
var crashAt = map[string]int{"message": 100, "written": 4, "route-written": 4, "flows-written": 4, "committed": 30}

// runWithCrashes consumes g's flows (3 partitions, in-memory log) with
// aggregators configured by cfg, crashing each of the first 12 at one of
// points in turn and restarting the next from the committed offsets, until
// a run finishes. A crash leaves what a kill would: half the time the
// crashed aggregator's open raw flows files stay as they are (a kill
// closes no file), the other half it is dropped; a torn temporary file of
// an assigned partition and one of another aggregator's partition are
// planted in every table (flows/ only with RawFlows). It checks that the restarts removed the first
// and kept the second.
func runWithCrashes(t *testing.T, g genResult, out string, cfg Config, points []string) {
	t.Helper()
	l := newMemLog(split(g.flows, 3, 400), 3)
	rng := rand.New(rand.NewPCG(7, 7))
	committed := map[int32]int64{}
	crashes := 0
	tmpDir := func(table string) string { return filepath.Join(out, table, "date=2026-11-25", "hour=10") }
	tables := []string{PairTable, RouteTable}
	if cfg.RawFlows {
		tables = append(tables, FlowsTable)
	}
	for run := 0; ; run++ {
		if run > 40 {
			t.Fatal("no run finished")
		}
		a, _ := newTestAggregator(t, cfg)
		if crashes < 12 {
			point := points[crashes%len(points)]
			n := 1 + rng.IntN(crashAt[point])
			a.hook = func(p string, _ *bus.Delivery) error {
				if p == point {
					if n--; n == 0 {
						return errCrash
					}
				}
				return nil
			}
		}
		err := l.consume(a, committed, 2)
		if errors.Is(err, errCrash) {
			crashes++
			if crashes%2 == 0 {
				a.Drop(a.Assigned()...)
			}
			for _, table := range tables {
				os.MkdirAll(tmpDir(table), 0o755)
				os.WriteFile(filepath.Join(tmpDir(table), ".p0-w0-o0-0.parquet.tmp"), []byte("torn"), 0o644)
				os.WriteFile(filepath.Join(tmpDir(table), ".p99-w0-o0-0.parquet.123.tmp"), []byte("busy"), 0o644)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	if crashes < 10 {
		t.Fatalf("only %d crashes injected", crashes)
	}
	for _, table := range tables {
		if _, err := os.Stat(filepath.Join(tmpDir(table), ".p0-w0-o0-0.parquet.tmp")); !os.IsNotExist(err) {
			t.Errorf("%s: temp file of an assigned partition survived the restart: %v", table, err)
		}
		if err := os.Remove(filepath.Join(tmpDir(table), ".p99-w0-o0-0.parquet.123.tmp")); err != nil {
			t.Errorf("%s: temp file of another aggregator's partition was touched: %v", table, err)
		}
	}
}

// TestLateRecordsGoToALaterFile follows one partition through the
// watermark: a record for a written window lands in a "-late" file.
func TestLateRecordsGoToALaterFile(t *testing.T) {
	at := func(sec int64, bytes uint64) schemas.Flow {
		return schemas.Flow{TimeNs: genStart + sec*int64(time.Second), Src: ep("a", "x"), Dst: ep("b", "y"),
			L4Protocol: 17, DstPort: 53, BytesFwd: bytes, PacketsFwd: 1, Count: 1}
	}
	msgs := []genMessage{
		{0, []schemas.Flow{at(5, 1), at(20, 2)}}, // window 0
		{0, []schemas.Flow{at(75, 4)}},           // window 1; watermark 65 s closes window 0
		{0, []schemas.Flow{at(30, 8)}},           // late for window 0
		{0, []schemas.Flow{at(140, 16)}},         // window 2; watermark 130 s closes window 1, flushes the late one
	}
	l := newMemLog(msgs, 1)
	out := t.TempDir()
	a, reg := newTestAggregator(t, Config{Out: out})
	committed := map[int32]int64{}
	if err := l.consume(a, committed, 1); err != nil {
		t.Fatal(err)
	}
	w := genStart / int64(time.Second)
	want := []string{
		"p0-w" + itoa(w) + "-o0-0.parquet",
		"p0-w" + itoa(w) + "-o2-2-late.parquet",
		"p0-w" + itoa(w+60) + "-o1-1.parquet",
		"p0-w" + itoa(w+120) + "-o3-3.parquet",
	}
	if got := listNames(t, filepath.Join(out, PairTable)); !slices.Equal(got, want) {
		t.Errorf("files = %v, want %v", got, want)
	}
	if got := counter(t, reg, "flowbus_aggregator_late_rows_total"); got != 1 {
		t.Errorf("late_rows_total = %v, want 1", got)
	}
	if committed[0] != 4 {
		t.Errorf("committed offset = %d, want 4", committed[0])
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func listNames(t *testing.T, root string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, d.Name())
		}
		return nil
	})
	sort.Strings(names)
	return names
}

// TestCommitOffsetNeverPassesOpenWindows checks the commit rule: the
// committed offset is the first offset of the oldest unwritten window.
func TestCommitOffsetNeverPassesOpenWindows(t *testing.T) {
	at := func(sec int64) schemas.Flow {
		return schemas.Flow{TimeNs: genStart + sec*int64(time.Second), Src: ep("a", "x"), Dst: ep("b", "y"), Count: 1}
	}
	msgs := []genMessage{{0, []schemas.Flow{at(1)}}, {0, []schemas.Flow{at(2)}}, {0, []schemas.Flow{at(61)}}, {0, []schemas.Flow{at(62)}}, {0, []schemas.Flow{at(80)}}}
	l := newMemLog(msgs, 1)
	a, _ := newTestAggregator(t, Config{Out: t.TempDir()})
	a.decode = l.fakeDecode
	if err := a.Assign(0); err != nil {
		t.Fatal(err)
	}
	want := []int64{0, 0, 0, 0, 2} // window 0 open until the watermark passes 60 s (record at 80 s)
	for i := range msgs {
		if err := a.Process(context.Background(), l.message(0, int64(i))); err != nil {
			t.Fatal(err)
		}
		if got, _ := a.CommitOffset(0); got != want[i] {
			t.Errorf("after offset %d: commit offset %d, want %d", i, got, want[i])
		}
	}
}
