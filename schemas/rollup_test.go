package schemas

import (
	"strings"
	"testing"

	pq "github.com/parquet-go/parquet-go"
)

func TestHistRowsKeepsBucketsInOrder(t *testing.T) {
	var h Histogram
	h.Add(5_000_000, 3)
	h.Add(100, 1)
	h.Add(1<<40, 2)
	got := HistRows(nil, h)
	want := []HistBucketRow{{0, 1}, {HistBucket(5_000_000), 3}, {HistOverflow, 2}}
	if len(got) != len(want) {
		t.Fatalf("HistRows = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("HistRows[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if HistRows(nil, nil) != nil {
		t.Error("HistRows of an empty histogram is not nil")
	}
}

// TestRollupParquetSchemas pins the Parquet types readers rely on.
func TestRollupParquetSchemas(t *testing.T) {
	for _, tc := range []struct {
		name   string
		schema *pq.Schema
	}{
		{"pair_rollup", pq.SchemaOf(PairRollup{})},
		{"route_rollup", pq.SchemaOf(RouteRollup{})},
	} {
		t.Run(tc.name+" has the contract column types", func(t *testing.T) {
			s := tc.schema.String()
			for _, want := range []string{
				"required int64 window_start (TIMESTAMP(isAdjustedToUTC=true,unit=MICROS));",
				"required binary dst_workload (STRING);",
				"repeated group list {",
				"required int32 bucket (INT(16,true));",
				"required int64 count (INT(64,true));",
				"required boolean late;",
			} {
				if !strings.Contains(s, want) {
					t.Errorf("schema lacks %q:\n%s", want, s)
				}
			}
		})
	}
}
