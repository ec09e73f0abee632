package aggregator

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/parquet"
)

// withUUIDs names every generated record ("f-<index>") so that tests can
// find a record in flows/ and count distinct ones; labels, a cluster and
// first/last seen times on some make the comparison of columns wider.
func withUUIDs(g genResult) genResult {
	for i := range g.flows {
		f := &g.flows[i]
		f.UUID = fmt.Sprintf("f-%d", i)
		if i%3 == 0 {
			f.Src.Labels = []string{"k8s:app=" + f.Src.Workload, fmt.Sprintf("k8s:shard=%d", i%5)}
			f.Src.ClusterName = "prod"
			f.FirstSeenNs, f.LastSeenNs = f.TimeNs-1_234_567, f.TimeNs
		}
	}
	return g
}

func flowsGlob(out string) string {
	return "'" + filepath.Join(out, FlowsTable, "*", "*", "*.parquet") + "'"
}

// checkRawFlows checks flows/ against the generator: one row per record
// (count and distinct uuid), per-pair sums of flows, bytes and packets
// exactly the generator's, the same file names as pair_rollup, and every
// row in the window its file is named after.
func checkRawFlows(t *testing.T, out string, g genResult) {
	t.Helper()
	db := ducktest.Open(t)
	var rows, distinct int64
	if err := db.QueryRow(`SELECT count(*), count(DISTINCT uuid) FROM read_parquet(`+flowsGlob(out)+`)`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != int64(len(g.flows)) || distinct != rows {
		t.Errorf("flows/ has %d rows, %d distinct records; generator %d records", rows, distinct, len(g.flows))
	}
	q, err := db.Query(`SELECT src_namespace, src_workload, dst_namespace, dst_workload, dst_port, verdict,
		coalesce(sum(count) FILTER (WHERE count_as = 'flow'), 0)::BIGINT,
		coalesce(sum(bytes_fwd + bytes_rev) FILTER (WHERE count_as <> 'none'), 0)::BIGINT,
		coalesce(sum(packets_fwd + packets_rev) FILTER (WHERE count_as <> 'none'), 0)::BIGINT
		FROM read_parquet(` + flowsGlob(out) + `, hive_partitioning = true) GROUP BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]pairTotal{}
	for q.Next() {
		var sns, swl, dns, dwl, verdict string
		var port int32
		var p pairTotal
		if err := q.Scan(&sns, &swl, &dns, &dwl, &port, &verdict, &p.flows, &p.bytes, &p.packets); err != nil {
			t.Fatal(err)
		}
		got[pairName(sns, swl, dns, dwl, port, verdict)] = p
	}
	q.Close()
	if len(got) != len(g.pairs) {
		t.Errorf("flows/ has %d pairs, generator %d", len(got), len(g.pairs))
	}
	for k, want := range g.pairs {
		if got[k] != *want {
			t.Errorf("pair %s: flows/ %+v, generator %+v", k, got[k], *want)
		}
	}
	// Same bucket, same name and partition directory as the pair file.
	rel := func(table string) []string {
		var names []string
		root := filepath.Join(out, table)
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				r, _ := filepath.Rel(root, p)
				names = append(names, r)
			}
			return nil
		})
		slices.Sort(names)
		return names
	}
	if f, p := rel(FlowsTable), rel(PairTable); !slices.Equal(f, p) {
		t.Errorf("flows/ files differ from pair_rollup/ files:\n%v\n%v", f, p)
	}
	// Every row lies in its file's window (late ones too: a late bucket is
	// its window's).
	q, err = db.Query(`SELECT filename, epoch_us(min(time)), epoch_us(max(time)) FROM read_parquet(` + flowsGlob(out) + `, filename = true) GROUP BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	files := 0
	for q.Next() {
		var name string
		var lo, hi int64
		if err := q.Scan(&name, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		id, ok := parseName(filepath.Base(name))
		w := id.start / 1000
		if !ok || lo < w || hi >= w+int64(DefaultWindow/time.Microsecond) {
			t.Errorf("%s holds times %d..%d µs outside its window", name, lo, hi)
		}
		files++
	}
	if files == 0 {
		t.Error("no flows files")
	}
}

// TestRawFlowsHoldEveryRecordOnceWithItsColumns runs Arrow messages
// through the real decoder with RawFlows: flows/ has one row per record,
// exact per-pair sums, and the columns of a sample of records read back
// by DuckDB equal the input.
func TestRawFlowsHoldEveryRecordOnceWithItsColumns(t *testing.T) {
	g := withUUIDs(generate(41, 30_000, 6*time.Minute, 300))
	gms := split(g.flows, 3, 500)
	msgs := encodeAll(t, gms)
	out := t.TempDir()
	a, reg := newTestAggregator(t, Config{Out: out, RawFlows: true, RowGroupRows: 1000})
	if err := a.Assign(0, 1, 2); err != nil {
		t.Fatal(err)
	}
	next := map[int32]int64{}
	for i, m := range msgs {
		p := gms[i].partition
		err := a.Process(context.Background(), bus.Delivery{Partition: p, Offset: next[p], Value: m.Value,
			Headers: map[string]string{schemas.HeaderSchema: schemas.SchemaVersion}, Time: time.Unix(0, genStart)})
		if err != nil {
			t.Fatal(err)
		}
		next[p]++
	}
	if _, err := a.Release(a.Assigned()...); err != nil {
		t.Fatal(err)
	}
	checkExact(t, out, g)
	checkRawFlows(t, out, g)
	if got := counter(t, reg, "flowbus_aggregator_rows_written_total", "table", FlowsTable); got != float64(len(g.flows)) {
		t.Errorf("rows_written_total{table=flows} = %v, want %d", got, len(g.flows))
	}
	if got := counter(t, reg, "flowbus_aggregator_files_written_total", "table", FlowsTable); got != counter(t, reg, "flowbus_aggregator_files_written_total", "table", PairTable) || got == 0 {
		t.Errorf("files_written_total{table=flows} = %v, want the pair table's", got)
	}

	db := ducktest.Open(t)
	var maxGroup int64
	if err := db.QueryRow(`SELECT max(row_group_num_rows) FROM parquet_metadata(` + flowsGlob(out) + `)`).Scan(&maxGroup); err != nil {
		t.Fatal(err)
	}
	if maxGroup != 1000 {
		t.Errorf("largest raw row group has %d rows, want RowGroupRows = 1000", maxGroup)
	}
	// The README's query: dropped flows of one hour, by Hive partition.
	wantDrops := 0
	for i := range g.flows {
		if t := time.Unix(0, g.flows[i].TimeNs-mod(g.flows[i].TimeNs, int64(time.Minute))).UTC(); g.flows[i].Verdict.String() == "DROPPED" && t.Hour() == 10 {
			wantDrops++
		}
	}
	var drops int64
	if err := db.QueryRow(`SELECT count(*) FROM read_parquet(` + flowsGlob(out) + `, hive_partitioning = true)
		WHERE date = '2026-11-25' AND hour = 10 AND verdict = 'DROPPED'`).Scan(&drops); err != nil {
		t.Fatal(err)
	}
	if drops != int64(wantDrops) || drops == 0 {
		t.Errorf("%d dropped flows in hour 10, generator %d", drops, wantDrops)
	}

	sample := []int{0, 1, 2, 3, 299, 4567, 12345, 29999}
	for i := 100; i < len(g.flows); i++ {
		if len(g.flows[i].LatencyHist) > 0 && len(sample) < 12 {
			sample = append(sample, i)
		}
	}
	for _, i := range sample {
		f := &g.flows[i]
		var (
			us, firstUs                          sql.NullInt64
			node, verdict, drop, srcIP, dstIP    string
			srcPod, dstWl, cluster, url, l7, dns string
			labels, hist                         string
			port, proto, flags                   int64
			bytesFwd, packetsRev, count, latency int64
		)
		err := db.QueryRow(`SELECT epoch_us(time), epoch_us(first_seen), node_name, verdict, drop_reason, src_ip, dst_ip,
			src_pod_name, dst_workload, src_cluster_name, l7_http_url, l7_protocol, l7_dns_query,
			array_to_string(src_labels, ','), array_to_string(list_transform(latency_hist, h -> h.bucket || ':' || h.count), ','),
			dst_port, l4_protocol, tcp_flags, bytes_fwd::BIGINT, packets_rev::BIGINT, count::BIGINT, latency_ns::BIGINT
			FROM read_parquet(`+flowsGlob(out)+`) WHERE uuid = ?`, f.UUID).Scan(
			&us, &firstUs, &node, &verdict, &drop, &srcIP, &dstIP, &srcPod, &dstWl, &cluster, &url, &l7, &dns,
			&labels, &hist, &port, &proto, &flags, &bytesFwd, &packetsRev, &count, &latency)
		if err != nil {
			t.Fatalf("record %s: %v", f.UUID, err)
		}
		var wantHist []string
		for _, b := range f.LatencyHist {
			wantHist = append(wantHist, fmt.Sprintf("%d:%d", b.Index, b.Count))
		}
		wantFirst := sql.NullInt64{Int64: f.FirstSeenNs / 1000, Valid: f.FirstSeenNs != 0}
		got := fmt.Sprint(us.Int64, firstUs, node, verdict, drop, srcIP, dstIP, srcPod, dstWl, cluster, url, l7, dns,
			labels, hist, port, proto, flags, bytesFwd, packetsRev, count, latency)
		want := fmt.Sprint(f.TimeNs/1000, wantFirst, f.NodeName, f.Verdict.String(), f.DropReason.String(), f.SrcIP.String(), f.DstIP.String(),
			f.Src.PodName, f.Dst.Workload, f.Src.ClusterName, f.L7.HTTPURL, f.L7.Protocol.String(), f.L7.DNSQuery,
			strings.Join(f.Src.Labels, ","), strings.Join(wantHist, ","), f.DstPort, f.L4Protocol, uint16(f.TCPFlags),
			f.BytesFwd, f.PacketsRev, f.Count, f.LatencyNs)
		if got != want {
			t.Errorf("record %s:\n got %s\nwant %s", f.UUID, got, want)
		}
	}
}

// TestRawFlowsSurviveCrashesExactlyOnce is the crash test with RawFlows:
// after kills at 12 points (including between the flows file and the
// rollup files) flows/ holds every record exactly once.
func TestRawFlowsSurviveCrashesExactlyOnce(t *testing.T) {
	g := withUUIDs(generate(43, 120_000, 15*time.Minute, 500))
	out := t.TempDir()
	runWithCrashes(t, g, out, Config{Out: out, RawFlows: true},
		[]string{"message", "flows-written", "written", "route-written", "committed", "flows-written"})
	checkExact(t, out, g)
	checkRawFlows(t, out, g)
}

// openFilesUnder counts this process's file descriptors open on files
// under dir.
func openFilesUnder(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd: cannot count open files")
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n
}

// TestRawFlowsDropAndErrorsLeakNothing: open raw files are temporary files
// until committed; Drop and a failed write remove them and close them.
func TestRawFlowsDropAndErrorsLeakNothing(t *testing.T) {
	g := generate(44, 3_000, 3*time.Minute, 0)
	gms := split(g.flows, 1, 200)
	l := newMemLog(gms, 1)

	t.Run("Drop removes and closes the open files", func(t *testing.T) {
		out := t.TempDir()
		a, _ := newTestAggregator(t, Config{Out: out, RawFlows: true})
		a.decode = l.fakeDecode
		if err := a.Assign(0); err != nil {
			t.Fatal(err)
		}
		for off := range int64(len(gms)) {
			if err := a.Process(context.Background(), l.message(0, off)); err != nil {
				t.Fatal(err)
			}
		}
		temps := 0
		filepath.WalkDir(filepath.Join(out, FlowsTable), func(p string, d os.DirEntry, err error) error {
			if err == nil && parquet.IsTemp(d.Name()) {
				temps++
			}
			return nil
		})
		if temps == 0 || openFilesUnder(t, out) != temps {
			t.Fatalf("%d temporary files, %d open files: want the open windows' files open", temps, openFilesUnder(t, out))
		}
		committed := listNames(t, filepath.Join(out, FlowsTable))
		a.Drop(0)
		if n := openFilesUnder(t, out); n != 0 {
			t.Errorf("%d files still open after Drop", n)
		}
		left := listNames(t, filepath.Join(out, FlowsTable))
		if len(left) != len(committed)-temps {
			t.Errorf("after Drop: %v, want the committed files of %v only", left, committed)
		}
		for _, n := range left {
			if parquet.IsTemp(n) {
				t.Errorf("temporary file %s left after Drop", n)
			}
		}
	})

	t.Run("a raw flows directory that cannot be created stops the aggregator and leaves nothing open", func(t *testing.T) {
		out := t.TempDir()
		os.WriteFile(filepath.Join(out, FlowsTable), []byte("not a directory"), 0o644)
		a, _ := newTestAggregator(t, Config{Out: out, RawFlows: true})
		err := l.consume(a, map[int32]int64{}, 1)
		if err == nil || !strings.Contains(err.Error(), "write raw flows") {
			t.Fatalf("err = %v, want a raw flows write error", err)
		}
		a.Drop(a.Assigned()...)
		if n := openFilesUnder(t, out); n != 0 {
			t.Errorf("%d files open after the error", n)
		}
	})

	t.Run("Release writes and closes every open file", func(t *testing.T) {
		out := t.TempDir()
		a, _ := newTestAggregator(t, Config{Out: out, RawFlows: true})
		if err := l.consume(a, map[int32]int64{}, 3); err != nil {
			t.Fatal(err)
		}
		if n := openFilesUnder(t, out); n != 0 {
			t.Errorf("%d files open after Release", n)
		}
		if f, p := listNames(t, filepath.Join(out, FlowsTable)), listNames(t, filepath.Join(out, PairTable)); !slices.Equal(f, p) || len(f) < 3 {
			t.Errorf("flows files %v, pair files %v: want the same names", f, p)
		}
	})
}

// TestAssignRemovesFlowsFilesWithoutTheirPairFile: a crash between the
// flows file and the pair file leaves a flows file that is not committed;
// Assign deletes it (the bucket is rebuilt, possibly under another name
// since the watermark restarts), keeps committed ones and leaves other
// partitions' files alone.
func TestAssignRemovesFlowsFilesWithoutTheirPairFile(t *testing.T) {
	out := t.TempDir()
	mk := func(table string, id fileID) string {
		p := id.path(out, table)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	committed := fileID{partition: 0, start: genStart, first: 0, last: 4}
	orphan := fileID{partition: 0, start: genStart + int64(time.Minute), first: 5, last: 9, late: true}
	other := fileID{partition: 1, start: genStart, first: 0, last: 3}
	mk(PairTable, committed)
	keep := mk(FlowsTable, committed)
	gone := mk(FlowsTable, orphan)
	otherP := mk(FlowsTable, other)
	a, _ := newTestAggregator(t, Config{Out: out, RawFlows: true})
	if err := a.Assign(0); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{keep: true, gone: false, otherP: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists = %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

// BenchmarkProcessRawFlows runs Process (decode, rollup, files written
// without fsync) over 1000-flow messages with raw flows off — the baseline —
// and on, in the same run.
func BenchmarkProcessRawFlows(b *testing.B) {
	msgs, _ := benchMessages(b, 1000, benchShapes[1])
	for _, raw := range []bool{false, true} {
		name := "off"
		if raw {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			var a *Aggregator
			var off int64
			restart := func() {
				if a != nil {
					if _, err := a.Release(0); err != nil {
						b.Fatal(err)
					}
				}
				a, _ = newTestAggregator(b, Config{Out: b.TempDir(), RawFlows: raw, NoSync: true})
				if err := a.Assign(0); err != nil {
					b.Fatal(err)
				}
				off = 0
			}
			restart()
			rows := 0
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				k := i % len(msgs)
				if k == 0 && i > 0 {
					restart() // a new pass over the same event times
				}
				if err := a.Process(context.Background(), bus.Delivery{Partition: 0, Offset: off, Value: msgs[k].Value}); err != nil {
					b.Fatal(err)
				}
				off++
				rows += msgs[k].Rows
			}
			if _, err := a.Release(0); err != nil {
				b.Fatal(err)
			}
			reportRows(b, rows, cpu0)
		})
	}
}
