package main

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowbus/flowbus/aggregator/report"
)

// The demo's numbers come from what the reader got back over the bus; the
// test checks them against the agent's own published count, which the demo
// prints on the same run, and that DuckDB produced the L7 table (in a build
// without cgo, that the demo says why there is none).
func TestDemoPrintsWhatCameBackOverTheBus(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the demo runs for seconds")
	}
	dir := t.TempDir()
	var out, errb strings.Builder
	code := run([]string{"demo", "--duration", "3s", "--data-dir", dir, "--nats-port", "-1",
		"--observer-address", "", "--metrics-address", "", "--rate", "5000", "--seed", "3"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	s := out.String()
	m := regexp.MustCompile(`published (\d+) records; read back (\d+) records in (\d+) messages; 0 bytes left in the spool`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no summary line in:\n%s", s)
	}
	if m[1] != m[2] || m[1] == "0" {
		t.Fatalf("published %s records but read back %s", m[1], m[2])
	}
	tot := regexp.MustCompile(`Total flows: (\d+) \(in (\d+) records; 0 bad messages\)`).FindStringSubmatch(s)
	if tot == nil || tot[2] != m[1] {
		t.Fatalf("total line %v does not match %s records:\n%s", tot, m[1], s)
	}
	if n, _ := strconv.Atoi(tot[1]); n < 5000 {
		t.Fatalf("only %d flows in 3 s at 5000/s", n)
	}
	l7 := "/api/v1/orders/{id}" // DuckDB's table
	if !report.HaveDuckDB {
		l7 = "L7 drill-down: not computed: " + report.ErrNoDuckDB.Error()
	}
	for _, want := range []string{"payments/rewards-cron", "POLICY_DENIED", "INVALID_SOURCE_IP", "FORWARDED",
		"L7 drill-down", l7, "flowbus_quantile(", "flowbus_routes(", "duckdb -init flowbus.sql"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(s, "WARNING") {
		t.Errorf("demo warned:\n%s", s)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "parquet", "pair_rollup", "date=*", "hour=*", "*.parquet"))
	if len(files) == 0 {
		t.Errorf("no pair_rollup Parquet under %s", dir)
	}
}

// hubble-json in, Hubble JSON out: with aggregation off, the agent prints
// every good flow of the file again, exactly, and skips the bad line.
func TestAgentHubbleJSONToStdoutKeepsEveryGoodFlow(t *testing.T) {
	lines := []string{
		`{"flow":{"time":"2026-11-25T10:00:00Z","uuid":"u1","verdict":"FORWARDED","IP":{"source":"10.0.0.1","destination":"10.0.0.2","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":40000,"destination_port":8080,"flags":{"SYN":true}}},"source":{"namespace":"payments","pod_name":"checkout-api-1"},"destination":{"namespace":"payments","pod_name":"ledger-svc-1"},"Type":"L3_L4","node_name":"n1","traffic_direction":"EGRESS","is_reply":false},"node_name":"n1","time":"2026-11-25T10:00:00Z"}`,
		`{"flow": not json`,
		`{"flow":{"time":"2026-11-25T10:00:01Z","uuid":"u2","verdict":"DROPPED","drop_reason_desc":"POLICY_DENIED","IP":{"source":"10.0.0.3","destination":"10.0.0.2","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":40001,"destination_port":8080,"flags":{"SYN":true}}},"source":{"namespace":"payments","pod_name":"rewards-cron-1"},"destination":{"namespace":"payments","pod_name":"ledger-svc-1"},"Type":"L3_L4","node_name":"n1","traffic_direction":"INGRESS"},"node_name":"n1","time":"2026-11-25T10:00:01Z"}`,
	}
	path := filepath.Join(t.TempDir(), "hubble.json")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	ctx := context.Background()
	err := runAgent(ctx, []string{"--source", "hubble-json", "--hubble-json", path, "--bus", "stdout", "--no-aggregate",
		"--node", "n1", "--observer-address", "", "--metrics-address", "", "--spool-dir", "off", "--linger", "10ms"},
		cmdIO{Stdout: &out, Stderr: &errb, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, errb.String())
	}
	var uuids []string
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var r observerpb.GetFlowsResponse
		if err := protojson.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		uuids = append(uuids, r.GetFlow().GetUuid()+"/"+r.GetFlow().GetVerdict().String()+"/"+r.GetFlow().GetDropReasonDesc().String()+"/"+r.GetFlow().GetSource().GetPodName())
	}
	sort.Strings(uuids)
	want := "u1/FORWARDED/DROP_REASON_UNKNOWN/checkout-api-1 u2/DROPPED/POLICY_DENIED/rewards-cron-1"
	if got := strings.Join(uuids, " "); got != want {
		t.Fatalf("flows out = %s\nwant        %s", got, want)
	}
}
