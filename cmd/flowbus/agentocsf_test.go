package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/internal/syncbuf"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/nats"
	"github.com/flowbus/flowbus/sinks/ocsf"
)

// agentOCSFPartitions is the NATS partitions of the agent's bus in these
// tests, and of its OCSF outputs.
const agentOCSFPartitions = 4

// runAgentOCSF runs 'flowbus agent args...' in this process until its
// source ends; it returns the runtime (its metrics in rt.reg), the log and
// how long the run took.
func runAgentOCSF(t *testing.T, args ...string) (*agentRuntime, *syncbuf.Buffer, time.Duration) {
	t.Helper()
	log := &syncbuf.Buffer{}
	cio := cmdIO{Stdout: io.Discard, Stderr: io.Discard, Log: slog.New(slog.NewTextHandler(log, nil))}
	fs, f := newAgentFlags(cio)
	if err := parseFlags(fs, args); err != nil {
		t.Fatal(err)
	}
	rt, err := f.build(cio, false, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rt.close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	start := time.Now()
	if err := rt.run(ctx); err != nil {
		t.Fatalf("agent: %v\n%s", err, log)
	}
	return rt, log, time.Since(start)
}

// busRecords reads the records the agent exported to the NATS bus at url,
// until it has n rows (and a moment more, to see none beyond).
func busRecords(t *testing.T, url string, n int) []schemas.Flow {
	t.Helper()
	c, err := nats.NewConsumer(nats.ConsumerConfig{Conn: nats.Conn{URL: url}, Partitions: agentOCSFPartitions, Durable: "agent-ocsf-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dec := flowcodec.NewDecoder()
	var out []schemas.Flow
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(out) < n && ctx.Err() == nil {
		ds, err := c.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if out, err = dec.Decode(out, d.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	if ds, _ := c.Poll(sctx); len(ds) > 0 {
		t.Errorf("%d bus messages beyond the %d rows", len(ds), n)
	}
	return out
}

// agentOCSFWant is what the outputs must hold for the records recs: one
// event per record, per class and activity as sinks/ocsf's doc.go maps
// them.
func agentOCSFWant(t *testing.T, recs []schemas.Flow) *ocsfInput {
	in := &ocsfInput{flows: recs, want: map[ocsfKey]int{}}
	for i := range recs {
		f := &recs[i]
		in.want[ocsfKey{ocsf.Class(f), ocsfActivity(t, f)}]++
		in.uids = append(in.uids, f.UUID)
	}
	return in
}

func writeTokenFile(t *testing.T, token string) string {
	p := filepath.Join(t.TempDir(), "hec-token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAgentOCSFExact: an agent on the synthetic source (20,000 records,
// --no-aggregate) writing OCSF to every output at once (files, a test
// Splunk HEC, a Kafka topic on kfake, NATS subjects on its own bus's
// server), its queue as large as the input, so that nothing is dropped
// however fast the source: every event of every output validates against OCSF 1.8.0
// (internal/ocsftest), each output holds one event per record the agent
// exported to the bus, per class and activity as those records imply, and
// the Kafka and NATS events are keyed and partitioned as the flows are.
// The counters say the same. With aggregation, the events are the source's
// records still: per class, as many as the exported records' counts sum to.
func TestAgentOCSFExact(t *testing.T) {
	const n = 20_000
	srv, url, err := nats.StartEmbedded(filepath.Join(t.TempDir(), "nats"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	hec := &hecCollector{}
	hs := httptest.NewServer(hec)
	defer hs.Close()
	dir := t.TempDir()
	rt, log, took := runAgentOCSF(t, "--source", "synthetic", "--rate", "0", "--count", fmt.Sprint(n), "--no-aggregate",
		"--bus", url, "--nats-partitions", fmt.Sprint(agentOCSFPartitions), "--data-dir", t.TempDir(),
		"--observer-address", "", "--metrics-address", "",
		"--ocsf-queue-records", fmt.Sprint(n), // the source is as fast as it can be: the queue holds it all
		"--ocsf-data-dir", dir, "--ocsf-rotate-bytes", "4194304", "--ocsf-max-files", "1000",
		"--ocsf-hec-url", hs.URL+"/services/collector/event", "--ocsf-hec-token-file", writeTokenFile(t, "tok"),
		"--ocsf-hec-spool-dir", t.TempDir(),
		"--ocsf-kafka-output-topic", "flowbus.ocsf.v1", "--ocsf-kafka-output-brokers", strings.Join(kc.ListenAddrs(), ","),
		"--ocsf-kafka-output-partitions", fmt.Sprint(agentOCSFPartitions),
		"--ocsf-nats-output-subject", "flowbus.ocsf.v1", "--ocsf-nats-output-partitions", fmt.Sprint(agentOCSFPartitions))

	recs := busRecords(t, url, n)
	if len(recs) != n {
		t.Fatalf("the agent exported %d records, want %d\n%s", len(recs), n, log)
	}
	in := agentOCSFWant(t, recs)
	for name, want := range map[string]int{
		"flowbus_ocsf_records_total":         n,
		"flowbus_ocsf_events_total":          n,
		"flowbus_ocsf_refused_records_total": 0,
		"flowbus_ocsf_dropped_total":         0,
		"flowbus_ocsf_output_errors_total":   0,
		"flowbus_ocsf_queue_records":         0,
		"flowbus_ocsf_hec_spooled_batches":   0,
	} {
		if got := int(counterValue(rt.reg, name, "", "")); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	for _, c := range []struct{ name, label, value string }{
		{"flowbus_ocsf_file_events_total", "", ""},
		{"flowbus_ocsf_hec_events_total", "result", "sent"},
		{"flowbus_ocsf_bus_events_total", "output", "kafka"},
		{"flowbus_ocsf_bus_events_total", "output", "nats"},
	} {
		if got := int(counterValue(rt.reg, c.name, c.label, c.value)); got != n {
			t.Errorf("%s{%s=%q} = %d, want %d", c.name, c.label, c.value, got, n)
		}
	}
	byClass := map[int]int{}
	for k, v := range in.want {
		byClass[k.class] += v
	}
	for _, c := range ocsfClasses {
		if got := int(counterValue(rt.reg, "flowbus_ocsf_events_total", "class", c.label)); got != byClass[c.uid] {
			t.Errorf("flowbus_ocsf_events_total{class=%q} = %d, want %d", c.label, got, byClass[c.uid])
		}
	}
	checkOCSFOutput(t, "files", in, fileEvents(t, dir), false, 0)
	checkOCSFOutput(t, "hec", in, hec.received(), false, 0)
	checkOCSFOutput(t, "kafka", in, kafkaEvents(t, kc.ListenAddrs(), "flowbus.ocsf.v1", n), true, agentOCSFPartitions)
	checkOCSFOutput(t, "nats", in, natsEvents(t, url, "FLOWBUS_OCSF", "flowbus.ocsf.v1", agentOCSFPartitions, n), true, agentOCSFPartitions)
	if files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl")); len(files) < 2 {
		t.Errorf("%d files: want the active one and rotated ones (--ocsf-rotate-bytes 4194304)", len(files))
	}
	t.Logf("%d records exported and written to 4 OCSF outputs in %s: %v", n, took.Round(time.Millisecond), in.want)

	t.Run("aggregated", func(t *testing.T) {
		dir := t.TempDir()
		srv, url, err := nats.StartEmbedded(filepath.Join(t.TempDir(), "nats"), -1)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		rt, log, _ := runAgentOCSF(t, "--source", "synthetic", "--rate", "0", "--count", fmt.Sprint(n),
			"--bus", url, "--nats-partitions", fmt.Sprint(agentOCSFPartitions), "--data-dir", t.TempDir(),
			"--observer-address", "", "--metrics-address", "", "--ocsf-data-dir", dir)
		rows := int(counterValue(rt.reg, "flowbus_export_rows_total", "", ""))
		recs := busRecords(t, url, rows)
		if len(recs) != rows || rows >= n {
			t.Fatalf("read %d records of the %d exported; want fewer than the %d raw (folded)\n%s", len(recs), rows, n, log)
		}
		folded := map[int]int{}
		for i := range recs {
			folded[ocsf.Class(&recs[i])] += int(recs[i].Count)
		}
		events := map[int]int{}
		for _, ev := range fileEvents(t, dir) {
			var e struct {
				ClassUID int `json:"class_uid"`
			}
			if err := json.Unmarshal(ev.json, &e); err != nil {
				t.Fatal(err)
			}
			events[e.ClassUID]++
		}
		if !maps.Equal(events, folded) || counterValue(rt.reg, "flowbus_ocsf_events_total", "", "") != n {
			t.Errorf("events per class %v, want the exported records' counts per class %v (%d in all)", events, folded, n)
		}
		t.Logf("%d raw records, %d exported after aggregation, %d OCSF events: %v", n, rows, n, events)
	})
}

// TestAgentOCSFBlockedHECDoesNotSlowExport: a HEC that never answers does
// not reduce the agent's export to the bus: every record is exported, the
// OCSF queue (1,000 records) fills, and the records that do not fit are
// dropped and counted; every record is accounted for, exactly: events
// written, refused, dropped for a full queue, left at stop. The stop takes
// the drain timeout, not the HEC's.
func TestAgentOCSFBlockedHECDoesNotSlowExport(t *testing.T) {
	const n = 20_000
	srv, url, err := nats.StartEmbedded(filepath.Join(t.TempDir(), "nats"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // blocked: never answers while the agent runs
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hs.Close()
	defer close(release)
	rt, log, took := runAgentOCSF(t, "--source", "synthetic", "--rate", "0", "--count", fmt.Sprint(n), "--no-aggregate",
		"--bus", url, "--nats-partitions", fmt.Sprint(agentOCSFPartitions), "--data-dir", t.TempDir(),
		"--observer-address", "", "--metrics-address", "",
		"--ocsf-hec-url", hs.URL, "--ocsf-hec-token-file", writeTokenFile(t, "tok"), "--ocsf-hec-spool-dir", t.TempDir(),
		"--ocsf-queue-records", "1000", "--ocsf-drain-timeout", "500ms")
	if recs := busRecords(t, url, n); len(recs) != n {
		t.Fatalf("the agent exported %d records with the HEC blocked, want %d\n%s", len(recs), n, log)
	}
	v := func(name, label, value string) int { return int(counterValue(rt.reg, name, label, value)) }
	records, events, refused := v("flowbus_ocsf_records_total", "", ""), v("flowbus_ocsf_events_total", "", ""), v("flowbus_ocsf_refused_records_total", "", "")
	full, left := v("flowbus_ocsf_dropped_total", "reason", "queue_full"), v("flowbus_ocsf_dropped_total", "reason", "shutdown")
	if records != n || full == 0 || events+refused+full+left != n {
		t.Errorf("records %d, events %d + refused %d + dropped queue_full %d + shutdown %d = %d; want %d records, some dropped, all accounted for\n%s",
			records, events, refused, full, left, events+refused+full+left, n, log)
	}
	if sent := v("flowbus_ocsf_hec_events_total", "result", "sent"); sent != 0 {
		t.Errorf("flowbus_ocsf_hec_events_total{result=sent} = %d with the HEC blocked", sent)
	}
	if left > 0 && !strings.Contains(log.String(), "records left unwritten at stop") {
		t.Errorf("%d records left at stop, not logged:\n%s", left, log)
	}
	if took > 8*time.Second {
		t.Errorf("the run took %s: the stop waited for the HEC, not --ocsf-drain-timeout 500ms", took)
	}
	t.Logf("%d records exported in %s with the HEC blocked; OCSF: %d events, %d dropped (queue full), %d left at stop",
		n, took.Round(time.Millisecond), events, full, left)
}

// TestAgentOCSFFlags: OCSF flags that cannot deliver are usage errors
// naming the flags, before the agent starts anything; none given is no
// OCSF.
func TestAgentOCSFFlags(t *testing.T) {
	token := writeTokenFile(t, "t")
	hecURL := "http://h:8088/services/collector/event"
	for _, c := range []struct {
		args []string
		want string // in the error; "" for none
	}{
		{nil, ""},
		{[]string{"--ocsf-data-dir", "d"}, ""},
		{[]string{"--ocsf-hec-url", hecURL, "--ocsf-hec-token-file", token, "--ocsf-hec-spool-dir", "s"}, ""},
		{[]string{"--ocsf-nats-output-subject", "flowbus.ocsf.v1"}, ""}, // the embedded server
		{[]string{"--bus", "nats://n:4222", "--ocsf-nats-output-subject", "flowbus.ocsf.v1"}, ""},
		{[]string{"--bus", "kafka://k:9092", "--ocsf-kafka-output-topic", "flowbus.ocsf.v1"}, ""},
		{[]string{"--ocsf-rotate-bytes", "4096"}, "--ocsf-rotate-bytes: no OCSF output: give --ocsf-data-dir (JSON-lines files), --ocsf-hec-url (Splunk HEC), --ocsf-kafka-output-topic (Kafka) or --ocsf-nats-output-subject (NATS), or several"},
		{[]string{"--ocsf-queue-records", "10", "--ocsf-hec-token-file", token}, "--ocsf-hec-token-file, --ocsf-queue-records: no OCSF output"},
		{[]string{"--ocsf-hec-url", hecURL, "--ocsf-hec-spool-dir", "s"}, "--ocsf-hec-url needs --ocsf-hec-token-file"},
		{[]string{"--ocsf-hec-url", hecURL, "--ocsf-hec-token-file", token}, "--ocsf-hec-url needs --ocsf-hec-spool-dir"},
		{[]string{"--ocsf-data-dir", "d", "--ocsf-hec-spool-dir", "s"}, "--ocsf-hec-token-file and --ocsf-hec-spool-dir need --ocsf-hec-url"},
		{[]string{"--ocsf-hec-url", "splunk:8088", "--ocsf-hec-token-file", token, "--ocsf-hec-spool-dir", "s"}, `--ocsf-hec-url "splunk:8088"`},
		{[]string{"--ocsf-kafka-output-topic", "flowbus.ocsf.v1"}, "--ocsf-kafka-output-topic needs --ocsf-kafka-output-brokers when --bus is not kafka://"},
		{[]string{"--bus", "kafka://k:9092", "--ocsf-kafka-output-topic", "flowbus.flows.v1"}, "--ocsf-kafka-output-topic flowbus.flows.v1 is the flows' topic (--kafka-topic)"},
		{[]string{"--ocsf-data-dir", "d", "--ocsf-kafka-output-brokers", "k:9092"}, "--ocsf-kafka-output-brokers needs --ocsf-kafka-output-topic"},
		{[]string{"--ocsf-nats-output-subject", "flowbus.flows.v1"}, "--ocsf-nats-output-subject flowbus.flows.v1 overlaps the flows' subjects"},
		{[]string{"--bus", "stdout", "--ocsf-nats-output-subject", "flowbus.ocsf.v1"}, "--ocsf-nats-output-subject needs --ocsf-nats-output-url when --bus is not nats://"},
		{[]string{"--ocsf-nats-output-subject", "s", "--ocsf-nats-output-url", "http://n:4222"}, `--ocsf-nats-output-url "http://n:4222": want nats://host:port`},
		{[]string{"--ocsf-nats-output-subject", "flowbus.ocsf.v1", "--ocsf-nats-output-stream", "FLOWBUS_FLOWS"}, "--ocsf-nats-output-stream FLOWBUS_FLOWS is the flows' stream"},
	} {
		fs, f := newAgentFlags(testIO())
		err := parseFlags(fs, c.args)
		if err == nil {
			err = f.ocsf.check(*f.bus, *f.topic)
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.args, err)
		case c.want != "" && (err == nil || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: err %v, want a usage error with %q", c.args, err, c.want)
		}
	}
	// On the command line: exit code 2, one line, nothing started.
	code, out, errOut := runCommand("agent", "--observer-address", "", "--metrics-address", "", "--data-dir", t.TempDir(),
		"--ocsf-hec-url", hecURL, "--ocsf-hec-token-file", token)
	if code != 2 || !strings.Contains(errOut, "--ocsf-hec-url needs --ocsf-hec-spool-dir") || out != "" {
		t.Errorf("exit %d, stderr %q, stdout %q; want exit 2 and the usage error", code, errOut, out)
	}
	// The demo has no OCSF flags.
	if code, _, errOut := runCommand("demo", "--ocsf-data-dir", "d"); code != 2 || !strings.Contains(errOut, "unknown flag: --ocsf-data-dir") {
		t.Errorf("demo --ocsf-data-dir: exit %d, stderr %q; want an unknown flag", code, errOut)
	}
}

// TestAgentOCSFHECDownSpools: while the collector answers 503 the agent's
// HEC batches go to the spool, the export to the bus whole; the next run on
// the same spool, the collector back, replays them: the collector gets
// every record of both runs once, valid OCSF, per class and activity.
func TestAgentOCSFHECDownSpools(t *testing.T) {
	const n = 3000
	srv, url, err := nats.StartEmbedded(filepath.Join(t.TempDir(), "nats"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	var down atomic.Bool
	down.Store(true)
	var refused atomic.Int64
	hec := &hecCollector{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			refused.Add(1)
			http.Error(w, "server busy", http.StatusServiceUnavailable)
			return
		}
		hec.ServeHTTP(w, r)
	}))
	defer hs.Close()
	token, spool := writeTokenFile(t, "tok"), t.TempDir()
	args := func(seed, count int) []string {
		return []string{"--source", "synthetic", "--seed", fmt.Sprint(seed), "--rate", "0", "--count", fmt.Sprint(count), "--no-aggregate",
			"--bus", url, "--nats-partitions", fmt.Sprint(agentOCSFPartitions), "--data-dir", t.TempDir(),
			"--observer-address", "", "--metrics-address", "", "--ocsf-queue-records", fmt.Sprint(n),
			"--ocsf-hec-url", hs.URL + "/services/collector/event", "--ocsf-hec-token-file", token, "--ocsf-hec-spool-dir", spool}
	}
	rt, log, took := runAgentOCSF(t, args(1, n)...)
	v := func(name, label, value string) int { return int(counterValue(rt.reg, name, label, value)) }
	if spooled, sent, errs := v("flowbus_ocsf_hec_events_total", "result", "spooled"), v("flowbus_ocsf_hec_events_total", "result", "sent"),
		v("flowbus_ocsf_output_errors_total", "", ""); spooled != n || sent != 0 || errs != 0 || refused.Load() == 0 {
		t.Fatalf("collector down: %d events spooled, %d sent, %d output errors after %d refused requests; want %d, 0, 0 after some\n%s",
			spooled, sent, errs, refused.Load(), n, log)
	}
	if batches := v("flowbus_ocsf_hec_spooled_batches", "", ""); batches == 0 {
		t.Errorf("flowbus_ocsf_hec_spooled_batches = 0 at the end of the run")
	}
	down.Store(false)
	rt2, log2, _ := runAgentOCSF(t, args(2, 1)...)
	if replayed := int(counterValue(rt2.reg, "flowbus_ocsf_hec_events_total", "result", "replayed")); replayed != n {
		t.Errorf("second run replayed %d events, want %d\n%s", replayed, n, log2)
	}
	recs := busRecords(t, url, n+1)
	checkOCSFOutput(t, "hec", agentOCSFWant(t, recs), hec.received(), false, 0)
	t.Logf("%d events spooled in %s while the collector refused %d requests, replayed by the next run", n, took.Round(time.Millisecond), refused.Load())
}

// TestAgentOCSFNATSOutputGoesAway: the NATS output's server stops while
// the agent runs: the output is paused, its events counted as errors, and
// the agent goes on: every record exported to the bus and written to the
// files; the NATS output's events acknowledged and not taken add up to the
// records.
func TestAgentOCSFNATSOutputGoesAway(t *testing.T) {
	const n = 8000
	srv, url, err := nats.StartEmbedded(filepath.Join(t.TempDir(), "nats"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	outSrv, outURL, err := nats.StartEmbedded(filepath.Join(t.TempDir(), "nats-out"), -1)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		time.Sleep(2500 * time.Millisecond) // after the writer's flushes at 1s and 2s
		outSrv.Shutdown()
		outSrv.WaitForShutdown()
	}()
	dir := t.TempDir()
	rt, log, took := runAgentOCSF(t, "--source", "synthetic", "--rate", "2000", "--count", fmt.Sprint(n), "--no-aggregate",
		"--bus", url, "--nats-partitions", fmt.Sprint(agentOCSFPartitions), "--data-dir", t.TempDir(),
		"--observer-address", "", "--metrics-address", "", "--ocsf-data-dir", dir,
		"--ocsf-nats-output-subject", "flowbus.ocsf.v1", "--ocsf-nats-output-url", outURL, "--ocsf-output-timeout", "300ms")
	<-stopped
	if recs := busRecords(t, url, n); len(recs) != n {
		t.Fatalf("exported %d records, want %d\n%s", len(recs), n, log)
	}
	v := func(name, label, value string) int { return int(counterValue(rt.reg, name, label, value)) }
	published, errs := v("flowbus_ocsf_bus_events_total", "output", "nats"), v("flowbus_ocsf_output_errors_total", "output", "nats")
	if files := v("flowbus_ocsf_file_events_total", "", ""); files != n || len(fileEvents(t, dir)) != n {
		t.Errorf("%d events written to the files (%d read back), want %d", files, len(fileEvents(t, dir)), n)
	}
	if published == 0 || errs == 0 || published+errs != n {
		t.Errorf("nats output: %d events acknowledged + %d not taken = %d, want some of each, %d in all\n%s", published, errs, published+errs, n, log)
	}
	if !strings.Contains(log.String(), "ocsf: output paused") {
		t.Errorf("no log line of the output paused:\n%s", log)
	}
	t.Logf("run of %s: nats output acknowledged %d events, %d not taken after its server stopped at 2.5s", took.Round(time.Millisecond), published, errs)
}
