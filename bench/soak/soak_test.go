//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the embedded NATS server when there is
// no nats-server (run re-executes itself with FLOWBUS_SOAK_SERVE_NATS).
func TestMain(m *testing.M) {
	maybeServeNATS()
	os.Exit(m.Run())
}

// TestSoakShort runs the soak for 20 s (the real agent, NATS server and
// aggregator; Debian's nats-server if installed, else the embedded one in
// its own process) and checks that every flow written is in the Parquet and
// that the CSV, the plots and the summary are written: `make soak` runs it
// for 30 minutes.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s run of three processes")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "flowbus")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/flowbus").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/flowbus: %v\n%s", err, out)
	}
	o := options{duration: 20 * time.Second, interval: 2 * time.Second, warmup: 5 * time.Second, churn: time.Second,
		rate: 10000, namespaces: 24, workloads: 8, seed: 1, out: filepath.Join(tmp, "out"), flowbus: bin,
		natsServer: "nats-server", command: "TestSoakShort"}
	var log strings.Builder
	res, err := run(context.Background(), o, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Log("\n" + log.String())
	if !res.exact() {
		t.Errorf("not exact: %d records written, the agent's source read %.0f (stages dropped %.0f); %.0f rows exported, %.0f decoded; %d flows written, %d in the Parquet",
			res.records, res.sourceReceived, res.stageDropped, res.exportRows, res.aggregatorRows, res.flows, res.parquetFlows)
	}
	if res.records < 190000 || res.flows == 0 || res.pairs < 100 {
		t.Errorf("%d records, %d flows, %d pairs: the run did not do what it should", res.records, res.flows, res.pairs)
	}
	if len(res.samples) < 8 {
		t.Errorf("%d samples in 20 s every 2 s", len(res.samples))
	}
	for _, s := range res.samples {
		if s.agentRSS <= 0 || s.aggRSS <= 0 || s.agentGoroutines <= 0 || s.aggGoroutines <= 0 {
			t.Errorf("sample at %v without a process's figures: %+v", s.t, s)
		}
	}
	csv, err := os.ReadFile(filepath.Join(o.out, "soak.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(csv), "\n"); n != len(res.samples)+1 || !strings.HasPrefix(string(csv), csvHeader+"\n") {
		t.Errorf("soak.csv has %d lines for %d samples, or another header", n, len(res.samples))
	}
	for _, f := range []string{"soak-rss.png", "soak-cpu.png", "soak-goroutines.png", "soak-lag.png", "soak-spool.png", "soak-load.png"} {
		b, err := os.ReadFile(filepath.Join(o.out, f))
		if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
			t.Errorf("%s: %d bytes, %v", f, len(b), err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(o.out, "soak.md"))
	for _, want := range []string{"RSS slope after warm-up", "MB/h", "exact: nothing lost", "Load average"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("soak.md lacks %q:\n%s", want, md)
		}
	}
}
