//go:build !cgo

package report

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Without cgo there is no DuckDB: the queries say so when there is a file
// to read, and still return their SQL for the duckdb CLI.
func TestQueriesWithoutCgoSayDuckDBNeedsCgo(t *testing.T) {
	out := t.TempDir()
	if rows, q, err := Routes(context.Background(), out, ""); err != nil || rows != nil || !strings.Contains(q, "flowbus_routes(") {
		t.Errorf("Routes with no files = %v, %q, %v; want no rows, the SQL, no error", rows, q, err)
	}
	for _, table := range []string{"route_rollup", "pair_rollup"} {
		p := filepath.Join(out, table, "date=2026-11-25", "hour=10", "p0.parquet")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, q, err := Routes(context.Background(), out, ""); !errors.Is(err, ErrNoDuckDB) || !strings.Contains(q, "flowbus_routes(") {
		t.Errorf("Routes = %v, %q; want ErrNoDuckDB and the SQL", err, q)
	}
	if _, q, err := Pairs(context.Background(), out, ""); !errors.Is(err, ErrNoDuckDB) || !strings.Contains(q, "flowbus_pairs(") {
		t.Errorf("Pairs = %v, %q; want ErrNoDuckDB and the SQL", err, q)
	}
	if !strings.Contains(ErrNoDuckDB.Error(), "needs a cgo build") {
		t.Errorf("ErrNoDuckDB = %q", ErrNoDuckDB)
	}
}
