package parquet

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/flowbus/flowbus/schemas"
)

func openDuck(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

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

// TestWriteFileIsReadByDuckDBWithTheContractTypes checks what DESIGN.md
// promises readers: zstd, dictionary strings, UTC microsecond timestamps,
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
	db := openDuck(t)
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
	types := map[string]string{}
	rows, err := db.Query(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))`, path)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c, ty string
		rows.Scan(&c, &ty)
		types[c] = ty
	}
	rows.Close()
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
