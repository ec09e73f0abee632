package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/nats"
)

// readmePandasSnippet returns the README's pandas example: the one
// ```python block that reads flowbus-data with pd.read_parquet.
func readmePandasSnippet(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, m := range regexp.MustCompile("(?s)```python\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], "pd.read_parquet(\"flowbus-data/") {
			found = append(found, m[1])
		}
	}
	if len(found) != 1 {
		t.Fatalf("README.md has %d python blocks reading flowbus-data with pd.read_parquet, want 1", len(found))
	}
	return found[0]
}

// TestReadmePandasSnippet runs the README's pandas example with python3
// against the Parquet a real aggregator wrote from 20,000 fleet records
// read off NATS, and checks the numbers it prints against DuckDB's reading
// of the same files: the flows per verdict, and the busiest (source,
// destination, verdict) rows with their flows and bytes, in order (the
// fleet has seven). It
// skips, saying why, without python3, pandas and pyarrow (Debian has no
// python3-pyarrow; pip install pandas pyarrow).
func TestReadmePandasSnippet(t *testing.T) {
	snippet := readmePandasSnippet(t) // checked even when python is missing
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on PATH: the README's pandas snippet is not run")
	}
	if out, err := exec.Command(py, "-c", "import pandas, pyarrow").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import pandas and pyarrow (%s): the README's pandas snippet is not run", py, lastLine(string(out)))
	}
	db := ducktest.Open(t) // the reference reader; skips without cgo

	// 20,000 fleet records through NATS and a real aggregator.
	srv, url, err := nats.StartEmbedded(filepath.Join(t.TempDir(), "nats"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	flows := flowtest.Fleet(5, 20_000)
	byKey := map[string][]schemas.Flow{}
	var keys []string
	for _, f := range flows {
		k := f.PartitionKey()
		if byKey[k] == nil {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], f)
	}
	enc := flowcodec.NewEncoder()
	var msgs []schemas.Message
	for _, k := range keys {
		for fs := byKey[k]; len(fs) > 0; {
			chunk := fs[:min(200, len(fs))]
			fs = fs[len(chunk):]
			v, err := enc.Encode(nil, chunk)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, schemas.Message{Key: k, Node: "node-p", Run: "pandas", Seq: uint64(len(msgs) + 1), Rows: len(chunk),
				FirstTS: chunk[0].TimeNs, LastTS: chunk[len(chunk)-1].TimeNs, Value: v})
		}
	}
	publishTo(t, url, msgs)
	dataDir := filepath.Join(t.TempDir(), "flowbus-data")
	aggregateNATS(t, url, dataDir, "pandas", float64(len(flows)))

	script := strings.ReplaceAll(snippet, `"flowbus-data/`, `"`+filepath.ToSlash(dataDir)+`/`)
	cmd := exec.Command(py, "-")
	cmd.Stdin = strings.NewReader(script)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 README snippet: %v\n%s%s\n%s", err, out, stderr.String(), script)
	}
	t.Logf("the README's pandas snippet printed:\n%s", out)

	// DuckDB's numbers, in the snippet's order and layout: one line per
	// verdict, then the top rows' fields (the table's header first).
	pairs := "read_parquet('" + filepath.ToSlash(dataDir) + "/pair_rollup/*/*/*.parquet', hive_partitioning = true)"
	var want []string
	rows, err := db.Query(`SELECT verdict, sum(flows)::BIGINT FROM ` + pairs + ` GROUP BY verdict ORDER BY verdict`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		var n int64
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		want = append(want, v+" "+itoa64(n))
	}
	rows.Close()
	verdicts := len(want)
	want = append(want, "src_workload dst_workload verdict flows bytes_fwd")
	rows, err = db.Query(`SELECT src_workload, dst_workload, verdict, sum(flows)::BIGINT AS flows, sum(bytes_fwd)::BIGINT FROM ` + pairs + `
		GROUP BY ALL ORDER BY flows DESC, src_workload, dst_workload, verdict LIMIT 10`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var src, dst, v string
		var n, b int64
		if err := rows.Scan(&src, &dst, &v, &n, &b); err != nil {
			t.Fatal(err)
		}
		want = append(want, strings.Join(strings.Fields(strings.Join([]string{src, dst, v, itoa64(n), itoa64(b)}, " ")), " "))
	}
	rows.Close()
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the README's pandas snippet printed\n%s\nDuckDB reads\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The fleet has 7 (source, destination, verdict) rows, one of them DROPPED.
	if verdicts != 2 || len(want) != verdicts+1+7 {
		t.Errorf("%d verdicts and %d top rows, want FORWARDED and DROPPED and the fleet's 7 pairs", verdicts, len(want)-verdicts-1)
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
