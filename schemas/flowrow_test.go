package schemas_test

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	pq "github.com/parquet-go/parquet-go"

	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/parquet"
)

// TestFlowRowHasTheFlowV1Columns: the raw flows table has flow.v1's
// columns, by name and in order.
func TestFlowRowHasTheFlowV1Columns(t *testing.T) {
	var got []string
	for _, f := range pq.SchemaOf(schemas.FlowRow{}).Fields() {
		got = append(got, f.Name())
	}
	var want []string
	for _, f := range flowcodec.NewArrowSchema().Fields() {
		want = append(want, f.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("FlowRow columns\n%v\nflow.v1 columns\n%v", got, want)
	}
}

// normalRow is what a row reads back as from Parquet: lists (every slice
// field: string lists, latency_hist) nil when empty.
func normalRow(r schemas.FlowRow) schemas.FlowRow {
	v := reflect.ValueOf(&r).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Slice && f.Len() == 0 {
			f.SetZero()
		}
	}
	return r
}

// TestFlowRowsRoundTripThroughParquet writes random flows (every field,
// every enum, null and empty lists, unknown times and IPs) through
// schemas.AppendFlowRow into a reused slice, and reads them back equal to
// schemas.FlowRowOf of each flow.
func TestFlowRowsRoundTripThroughParquet(t *testing.T) {
	g := flowtest.NewGen(5)
	flows := make([]schemas.Flow, 400)
	for i := range flows {
		flows[i] = g.Flow()
		if i%9 == 0 {
			flows[i].TimeNs, flows[i].FirstSeenNs = 0, 0
		}
	}
	path := filepath.Join(t.TempDir(), "flows.parquet")
	w, err := parquet.Create[schemas.FlowRow](path, parquet.Options{RowGroupRows: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	var stage []schemas.FlowRow
	for i := range flows {
		stage = schemas.AppendFlowRow(stage, &flows[i])
		if len(stage) == 50 {
			if err := w.Write(stage); err != nil {
				t.Fatal(err)
			}
			stage = stage[:0]
		}
	}
	if err := w.Write(stage); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := pq.ReadFile[schemas.FlowRow](path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(flows) {
		t.Fatalf("read %d rows, wrote %d", len(got), len(flows))
	}
	for i := range flows {
		want := normalRow(schemas.FlowRowOf(&flows[i]))
		if g := normalRow(got[i]); !reflect.DeepEqual(g, want) {
			t.Fatalf("row %d:\n got %+v\nwant %+v", i, g, want)
		}
	}
}

// TestFlowRowIsReadByDuckDBWithReaderTypes checks the types and values a
// DuckDB user sees for one flow.
func TestFlowRowIsReadByDuckDBWithReaderTypes(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 1, 123456789, time.UTC)
	f := schemas.Flow{
		TimeNs: at.UnixNano(), NodeName: "node-a",
		Verdict: flowpb.Verdict_DROPPED, DropReason: flowpb.DropReason_POLICY_DENIED,
		Direction: flowpb.TrafficDirection_INGRESS, IsReply: schemas.False, IPVersion: flowpb.IPVersion_IPv4,
		SrcIP: netip.MustParseAddr("10.0.1.11"), DstIP: netip.MustParseAddr("fd00::1"),
		DstPort: 8080, L4Protocol: 6, TCPFlags: schemas.FlagSYN,
		Src:      schemas.Endpoint{Namespace: "shop", Workload: "frontend", Labels: []string{"k8s:app=frontend", "k8s:tier=web"}},
		BytesFwd: 1 << 40, Count: 3, LatencyNs: 2_000_000,
		LatencyHist: schemas.Histogram{{Index: 12, Count: 2}, {Index: 300, Count: 1}},
		L7:          schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP, HTTPMethod: "GET", HTTPURL: "/v1/x?id=1", HTTPStatus: 503},
	}
	path := filepath.Join(t.TempDir(), "f.parquet")
	if _, err := parquet.WriteFile(path, []schemas.FlowRow{schemas.FlowRowOf(&f), schemas.FlowRowOf(&schemas.Flow{})}, parquet.Options{}); err != nil {
		t.Fatal(err)
	}
	db := ducktest.Open(t)
	types := ducktest.ColumnTypes(t, db, path)
	for col, want := range map[string]string{
		"time": "TIMESTAMP WITH TIME ZONE", "first_seen": "TIMESTAMP WITH TIME ZONE",
		"verdict": "VARCHAR", "src_ip": "VARCHAR", "is_reply": "BOOLEAN", "dst_port": "USMALLINT",
		"l4_protocol": "UTINYINT", "bytes_fwd": "UBIGINT", "event_type": "INTEGER",
		"src_labels": "VARCHAR[]", "latency_hist": "STRUCT(bucket SMALLINT, count BIGINT)[]",
		"tcp_flags": "USMALLINT", "src_id": "UINTEGER", "l7_dns_ttl": "UINTEGER", "count": "UBIGINT",
		"l7_kafka_error_code": "INTEGER", "uuid": "VARCHAR", "l7_dns_qtypes": "VARCHAR[]", "last_seen": "TIMESTAMP WITH TIME ZONE",
	} {
		if types[col] != want {
			t.Errorf("column %s is %q, want %q", col, types[col], want)
		}
	}
	var (
		ts                                 time.Time
		verdict, drop, srcIP, dstIP, label string
		reply                              bool
		bytes, hist                        int64
		nullTime, nullIP, nullReply        bool
	)
	err := db.QueryRow(`SELECT time, verdict, drop_reason, src_ip, dst_ip, src_labels[2], is_reply, bytes_fwd::BIGINT,
		list_sum(list_transform(latency_hist, h -> h.bucket * h.count))::BIGINT
		FROM read_parquet(?) WHERE node_name = 'node-a'`, path).Scan(&ts, &verdict, &drop, &srcIP, &dstIP, &label, &reply, &bytes, &hist)
	if err != nil {
		t.Fatal(err)
	}
	if !ts.Equal(at.Truncate(time.Microsecond)) || verdict != "DROPPED" || drop != "POLICY_DENIED" || srcIP != "10.0.1.11" ||
		dstIP != "fd00::1" || label != "k8s:tier=web" || reply || bytes != 1<<40 || hist != 12*2+300 {
		t.Errorf("read %v %s %s %s %s %s %v %d %d", ts, verdict, drop, srcIP, dstIP, label, reply, bytes, hist)
	}
	err = db.QueryRow(`SELECT time IS NULL, src_ip IS NULL, is_reply IS NULL FROM read_parquet(?) WHERE node_name = ''`, path).
		Scan(&nullTime, &nullIP, &nullReply)
	if err != nil || !nullTime || !nullIP || !nullReply {
		t.Errorf("unknown time, IP, is_reply: null = %v %v %v (err %v), want all null", nullTime, nullIP, nullReply, err)
	}
}
