//go:build cgo

package report

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/parquet"
)

func TestPairsSumAcrossWindowsAndLateRows(t *testing.T) {
	out := t.TempDir()
	w := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	write := func(name string, rows []schemas.PairRollup) {
		for i := range rows {
			rows[i].WindowStartUs = w.UnixMicro()
		}
		if _, err := parquet.WriteFile(filepath.Join(out, "pair_rollup", "date=2026-11-25", "hour=10", name), rows, parquet.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	fe := schemas.PairRollup{SrcNamespace: "shop", SrcWorkload: "frontend", DstNamespace: "payments", DstWorkload: "ledger",
		DstPort: 5432, Protocol: "TCP", Verdict: "FORWARDED", Flows: 10, BytesFwd: 100, BytesRev: 1000, PacketsFwd: 1, PacketsRev: 2}
	dr := schemas.PairRollup{DstNamespace: "payments", DstWorkload: "ledger", DstPort: 5432, Protocol: "TCP",
		Verdict: "DROPPED", DropReason: "POLICY_DENIED", Flows: 3, BytesFwd: 60, PacketsFwd: 3}
	late := fe
	late.Late, late.Flows, late.BytesFwd, late.BytesRev, late.PacketsFwd, late.PacketsRev = true, 1, 5, 0, 1, 0
	write("p0-w1-o0-5.parquet", []schemas.PairRollup{fe, dr})
	write("p0-w1-o7-7-late.parquet", []schemas.PairRollup{late})
	rows, _, err := Pairs(context.Background(), out, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []PairRow{
		{Src: "shop/frontend", Dst: "payments/ledger", Port: 5432, Protocol: "TCP", Verdict: "FORWARDED", Flows: 11, Bytes: 1105, Packets: 4},
		{Src: "world", Dst: "payments/ledger", Port: 5432, Protocol: "TCP", Verdict: "DROPPED", Drop: "POLICY_DENIED", Flows: 3, Bytes: 60, Packets: 3},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows = %+v, want %+v", rows, want)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	if rows, _, err := Pairs(context.Background(), t.TempDir(), ""); err != nil || rows != nil {
		t.Errorf("Pairs on an empty dir = %v, %v", rows, err)
	}
}
