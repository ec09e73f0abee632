package parquet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/schemas"
)

func pairRows(n int) []schemas.PairRollup {
	rows := make([]schemas.PairRollup, n)
	start := time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC).UnixMicro()
	for i := range rows {
		rows[i] = schemas.PairRollup{
			WindowStartUs: start, SrcNamespace: "shop", SrcWorkload: "frontend",
			DstNamespace: "payments", DstWorkload: []string{"checkout-api", "ledger"}[i%2],
			DstPort: 8080, Protocol: "TCP", Verdict: "FORWARDED",
			Flows: int64(i), BytesFwd: 10 * int64(i),
			LatencyHist: []schemas.HistBucketRow{{Bucket: 1, Count: 2}, {Bucket: 833, Count: int64(i)}},
		}
	}
	return rows
}

// TestWriteFileIsReadByDuckDBWithTheContractTypes checks what the rollup
// contract promises readers: zstd, dictionary strings, UTC microsecond timestamps,
// list<struct<bucket int16, count int64>>, and row groups capped.
func TestWriteFileIsReadByDuckDBWithTheContractTypes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "x.parquet")
	st, err := WriteFile(path, pairRows(1000), Options{RowGroupRows: 300})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if st.Rows != 1000 || st.Bytes != fi.Size() {
		t.Errorf("stats = %+v, file size %d", st, fi.Size())
	}
	db := ducktest.Open(t)
	var n, flows int64
	var ts time.Time
	var hist int64
	if err := db.QueryRow(`SELECT count(*), sum(flows), min(window_start), sum(list_sum(list_transform(latency_hist, h -> h.count)))
		FROM read_parquet(?)`, path).Scan(&n, &flows, &ts, &hist); err != nil {
		t.Fatal(err)
	}
	if n != 1000 || flows != 999*1000/2 || hist != 2*1000+999*1000/2 {
		t.Errorf("count %d, sum(flows) %d, histogram total %d", n, flows, hist)
	}
	if want := time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC); !ts.Equal(want) {
		t.Errorf("window_start = %v, want %v", ts, want)
	}
	types := ducktest.ColumnTypes(t, db, path)
	for col, want := range map[string]string{
		"window_start": "TIMESTAMP WITH TIME ZONE",
		"latency_hist": "STRUCT(bucket SMALLINT, count BIGINT)[]",
		"dst_workload": "VARCHAR",
		"flows":        "BIGINT",
		"late":         "BOOLEAN",
	} {
		if types[col] != want {
			t.Errorf("column %s is %q, want %q", col, types[col], want)
		}
	}
	var groups, maxRows int64
	var codecs, encodings string
	if err := db.QueryRow(`SELECT count(DISTINCT row_group_id), max(row_group_num_rows),
		string_agg(DISTINCT compression, ','), string_agg(DISTINCT encodings, ',') FILTER (WHERE path_in_schema = 'dst_workload')
		FROM parquet_metadata(?)`, path).Scan(&groups, &maxRows, &codecs, &encodings); err != nil {
		t.Fatal(err)
	}
	if groups != 4 || maxRows != 300 {
		t.Errorf("%d row groups of at most %d rows, want 4 of at most 300", groups, maxRows)
	}
	if codecs != "ZSTD" {
		t.Errorf("compression %q, want ZSTD", codecs)
	}
	if !strings.Contains(encodings, "DICTIONARY") {
		t.Errorf("dst_workload encodings %q, want a dictionary encoding", encodings)
	}
}

func TestWriteFileLeavesNoTempFileAndRemoveTempCleansCrashes(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteFile(filepath.Join(dir, "x.parquet"), pairRows(3), Options{}); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "date=2026-11-25", "hour=10")
	os.MkdirAll(sub, 0o755)
	os.WriteFile(filepath.Join(sub, ".y.parquet.tmp"), []byte("torn"), 0o644)
	os.WriteFile(filepath.Join(sub, "keep.parquet"), []byte("x"), 0o644)
	n, err := RemoveTemp(dir)
	if err != nil || n != 1 {
		t.Fatalf("RemoveTemp = %d, %v; want 1 file removed", n, err)
	}
	var left []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, d.Name())
		}
		return nil
	})
	if strings.Join(left, ",") != "x.parquet,keep.parquet" && strings.Join(left, ",") != "keep.parquet,x.parquet" {
		t.Errorf("files left: %v", left)
	}
	if n, err := RemoveTemp(filepath.Join(dir, "missing")); err != nil || n != 0 {
		t.Errorf("RemoveTemp of a missing dir = %d, %v", n, err)
	}
}

func TestWriteFileRejectsBadOptionsAndUnwritableDirs(t *testing.T) {
	if _, err := WriteFile(filepath.Join(t.TempDir(), "x.parquet"), pairRows(1), Options{RowGroupRows: -1}); err == nil {
		t.Error("negative row group rows accepted")
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := WriteFile(filepath.Join(f, "x.parquet"), pairRows(1), Options{}); err == nil || !strings.Contains(err.Error(), "parquet: create directory") {
		t.Errorf("write under a regular file: err = %v", err)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, rel)
		}
		return nil
	})
	return names
}

// TestFileWriterStreamsRowGroupsAndCommitsUnderTheFinalName writes rows in
// several Write calls: row groups are cut every RowGroupRows rows across
// calls, the temporary file is hidden until CommitAs, and DuckDB reads
// every row.
func TestFileWriterStreamsRowGroupsAndCommitsUnderTheFinalName(t *testing.T) {
	dir := t.TempDir()
	shared := NewCompressor()
	other, err := Create[schemas.PairRollup](filepath.Join(dir, "h", "other.parquet"), Options{Compressor: shared})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Abort()
	w, err := Create[schemas.PairRollup](filepath.Join(dir, "h", "open.parquet"), Options{RowGroupRows: 250, PageBufferBytes: 4096, Compressor: shared})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	rows := pairRows(1000)
	for i := 0; i < len(rows); i += 70 {
		if err := w.Write(rows[i:min(i+70, len(rows))]); err != nil {
			t.Fatal(err)
		}
	}
	if w.Rows() != 1000 {
		t.Errorf("Rows() = %d, want 1000", w.Rows())
	}
	if err := other.Write(rows[:10]); err != nil {
		t.Fatal(err)
	}
	if err := other.Abort(); err != nil {
		t.Fatal(err)
	}
	left := listDir(t, dir)
	if len(left) != 1 || !IsTemp(filepath.Base(left[0])) {
		t.Fatalf("before commit: files %v, want one temporary file", left)
	}
	if target, _ := TempTarget(filepath.Base(left[0])); target != "open.parquet" {
		t.Errorf("TempTarget(%s) = %q, want open.parquet", left[0], target)
	}
	final := filepath.Join(dir, "h", "p0-o1-9.parquet")
	st, err := w.CommitAs(final)
	if err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); strings.Join(got, ",") != filepath.Join("h", "p0-o1-9.parquet") {
		t.Errorf("after commit: files %v", got)
	}
	fi, _ := os.Stat(final)
	if st.Rows != 1000 || st.Bytes != fi.Size() || fi.Mode().Perm() != 0o644 {
		t.Errorf("stats %+v, file size %d, mode %v", st, fi.Size(), fi.Mode())
	}
	db := ducktest.Open(t)
	var n, flows, groups, maxRows int64
	if err := db.QueryRow(`SELECT count(*), sum(flows) FROM read_parquet(?)`, final).Scan(&n, &flows); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(DISTINCT row_group_id), max(row_group_num_rows) FROM parquet_metadata(?)`, final).Scan(&groups, &maxRows); err != nil {
		t.Fatal(err)
	}
	if n != 1000 || flows != 999*1000/2 || groups != 4 || maxRows != 250 {
		t.Errorf("count %d, sum(flows) %d, %d row groups of at most %d rows; want 1000, %d, 4, 250", n, flows, groups, maxRows, 999*1000/2)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("Abort after commit: %v", err)
	}
	if _, err := os.Stat(final); err != nil {
		t.Errorf("Abort after commit removed the file: %v", err)
	}
	if err := w.Write(rows[:1]); err == nil {
		t.Error("Write after commit accepted")
	}
	if _, err := w.Commit(); err == nil {
		t.Error("second commit accepted")
	}
}

func TestFileWriterAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	w, err := Create[schemas.PairRollup](filepath.Join(dir, "x.parquet"), Options{RowGroupRows: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(pairRows(35)); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if left := listDir(t, dir); len(left) != 0 {
		t.Errorf("files left after Abort: %v", left)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if _, err := w.Commit(); err == nil {
		t.Error("commit after Abort accepted")
	}
	if left := listDir(t, dir); len(left) != 0 {
		t.Errorf("files left after a commit of an aborted writer: %v", left)
	}
}

// TestFileWriterCommitReplacesAtomically keeps the old file readable until
// the new one is renamed over it.
func TestFileWriterCommitReplacesAtomically(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.parquet")
	if _, err := WriteFile(path, pairRows(3), Options{}); err != nil {
		t.Fatal(err)
	}
	w, err := Create[schemas.PairRollup](path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(pairRows(7)); err != nil {
		t.Fatal(err)
	}
	db := ducktest.Open(t)
	count := func() int64 {
		var n int64
		if err := db.QueryRow(`SELECT count(*) FROM read_parquet(?)`, path).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 3 {
		t.Errorf("before commit: %d rows, want the old file's 3", n)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 7 {
		t.Errorf("after commit: %d rows, want the new file's 7", n)
	}
	if left := listDir(t, filepath.Dir(path)); len(left) != 1 {
		t.Errorf("files: %v, want only x.parquet", left)
	}
}

func TestFileWriterRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := Create[schemas.PairRollup](filepath.Join(dir, "x.parquet"), Options{RowGroupRows: -5}); err == nil || !strings.Contains(err.Error(), "must not be negative") {
		t.Errorf("negative row group rows: err = %v", err)
	}
	if _, err := Create[schemas.PairRollup](filepath.Join(dir, "x.parquet"), Options{PageBufferBytes: -1}); err == nil || !strings.Contains(err.Error(), "page buffer") {
		t.Errorf("negative page buffer: err = %v", err)
	}
	if _, err := Create[schemas.PairRollup](dir+string(filepath.Separator), Options{}); err == nil {
		t.Error("a directory path accepted as a file name")
	}
	w, err := Create[schemas.PairRollup](filepath.Join(dir, "x.parquet"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.CommitAs(filepath.Join(dir, "other", "x.parquet")); err == nil || !strings.Contains(err.Error(), "not in the directory") {
		t.Errorf("commit into another directory: err = %v", err)
	}
	if left := listDir(t, dir); len(left) != 0 {
		t.Errorf("files left after a refused commit: %v", left)
	}
}

func TestTempTargetNamesTheFinalFile(t *testing.T) {
	for _, c := range []struct {
		name, want string
		ok         bool
	}{
		{".p0-w1-o2-3.parquet.123456.tmp", "p0-w1-o2-3.parquet", true},
		{".p0-w1-o2-3.parquet.tmp", "p0-w1-o2-3.parquet", true},
		{".x.parquet.12a.tmp", "x.parquet.12a", true},
		{"p0-w1-o2-3.parquet", "", false},
		{".hidden", "", false},
	} {
		t.Run(c.name+" is the temporary file of "+c.want, func(t *testing.T) {
			got, ok := TempTarget(c.name)
			if got != c.want || ok != c.ok {
				t.Errorf("TempTarget(%q) = %q, %v; want %q, %v", c.name, got, ok, c.want, c.ok)
			}
		})
	}
}
