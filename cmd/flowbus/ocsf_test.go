package main

import (
	"bufio"
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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/internal/syncbuf"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/nats"
	"github.com/flowbus/flowbus/sinks/ocsf"
)

// ocsfTestPartitions is the NATS partitions of the OCSF tests' bus.
const ocsfTestPartitions = 4

// ocsfKey is what the tests count events by.
type ocsfKey struct{ class, activity int }

// ocsfInput is what the tests publish: fleet records, each with a unique
// UUID (the event's metadata.uid), one of them without a time (the encoder
// refuses it), in messages of at most 40 records per partition key, and one
// corrupt message among them.
type ocsfInput struct {
	flows    []schemas.Flow
	msgs     []schemas.Message
	want     map[ocsfKey]int // events per class and activity
	uids     []string        // of the records the encoder takes
	refused  int
	corrupts int
}

func newOCSFInput(t *testing.T, n int) *ocsfInput {
	t.Helper()
	in := &ocsfInput{flows: flowtest.Fleet(11, n), want: map[ocsfKey]int{}}
	for i := range in.flows {
		in.flows[i].UUID = fmt.Sprintf("rec-%06d", i)
	}
	in.flows[n/3].TimeNs = 0 // refused: ErrNoTime
	in.refused = 1
	// Every Network Activity: some L3/L4 records become a connection's
	// later traffic, a reset, or a connection still open.
	for i := range in.flows {
		f := &in.flows[i]
		if f.L7.Protocol != schemas.L7None || f.Verdict != flowpb.Verdict_FORWARDED {
			continue
		}
		switch {
		case i%7 == 0:
			f.CountAs = schemas.CountTraffic
		case i%11 == 0 && f.L4Protocol == 6:
			f.TCPFlags = schemas.FlagSYN | schemas.FlagACK | schemas.FlagRST
		case i%13 == 0 && f.L4Protocol == 6:
			f.TCPFlags = schemas.FlagSYN | schemas.FlagACK
		}
	}
	for i := range in.flows {
		f := &in.flows[i]
		if f.TimeNs <= 0 {
			continue
		}
		in.want[ocsfKey{ocsf.Class(f), ocsfActivity(t, f)}]++
		in.uids = append(in.uids, f.UUID)
	}
	// Messages: per partition key, in order, 40 records at most.
	byKey := map[string][]schemas.Flow{}
	var keys []string
	for _, f := range in.flows {
		k := f.PartitionKey()
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], f)
	}
	enc := flowcodec.NewEncoder()
	var seq uint64
	for _, k := range keys {
		fs := byKey[k]
		for len(fs) > 0 {
			chunk := fs[:min(40, len(fs))]
			fs = fs[len(chunk):]
			v, err := enc.Encode(nil, chunk)
			if err != nil {
				t.Fatal(err)
			}
			seq++
			in.msgs = append(in.msgs, schemas.Message{Key: k, Node: "node-t", Run: "ocsf-test", Seq: seq, Rows: len(chunk),
				FirstTS: chunk[0].TimeNs, LastTS: chunk[len(chunk)-1].TimeNs, Value: v})
		}
	}
	// A corrupt message, in the middle: a good message cut in half, in the
	// partition of the busiest key, between that key's messages.
	busiest := slices.MaxFunc(keys, func(a, b string) int { return len(byKey[a]) - len(byKey[b]) })
	var at int
	for i, m := range in.msgs {
		if m.Key == busiest {
			at = i + 1 // after its first message
			break
		}
	}
	bad := in.msgs[at-1]
	seq++
	bad.Seq, bad.Value = seq, bad.Value[:len(bad.Value)/2]
	in.msgs = slices.Insert(in.msgs, at, bad)
	in.corrupts = 1
	return in
}

// ocsfActivity is the activity_id doc.go's mapping table gives f.
func ocsfActivity(t *testing.T, f *schemas.Flow) int {
	switch f.L7.Protocol {
	case schemas.L7HTTP:
		a, ok := map[string]int{"CONNECT": 1, "DELETE": 2, "GET": 3, "HEAD": 4, "OPTIONS": 5, "POST": 6, "PUT": 7, "TRACE": 8, "PATCH": 9}[f.L7.HTTPMethod]
		if !ok {
			t.Fatalf("fleet HTTP method %q", f.L7.HTTPMethod)
		}
		return a
	case schemas.L7DNS:
		switch f.L7.Type {
		case flowpb.L7FlowType_REQUEST:
			return 1
		case flowpb.L7FlowType_RESPONSE:
			return 2
		}
		return 6
	case schemas.L7Kafka:
		return 6
	}
	// doc.go's table, not the encoder's code.
	switch {
	case f.CountAs == schemas.CountTraffic || f.CountAs == schemas.CountNone:
		return 6
	case f.Verdict == flowpb.Verdict_DROPPED:
		return 5
	case f.Verdict == flowpb.Verdict_ERROR:
		return 4
	case f.L4Protocol == 6 && f.TCPFlags&schemas.FlagRST != 0:
		return 3
	case f.L4Protocol == 6 && f.TCPFlags&schemas.FlagFIN != 0:
		return 2
	}
	return 1
}

// publishOCSF starts an embedded NATS JetStream and publishes in's messages
// as the agent's exporter does; it returns the server's URL.
func publishOCSF(t *testing.T, in *ocsfInput) string {
	t.Helper()
	srv, url, err := nats.StartEmbedded(filepath.Join(t.TempDir(), "nats"), -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	publishTo(t, url, in.msgs)
	return url
}

// publishTo publishes msgs to the NATS server at url as the agent's
// exporter does.
func publishTo(t *testing.T, url string, msgs []schemas.Message) {
	t.Helper()
	p, err := nats.NewPublisher(nats.PublisherConfig{Conn: nats.Conn{URL: url}, Partitions: ocsfTestPartitions})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ms := msgs; len(ms) > 0; {
		n := min(25, len(ms))
		if err := p.Publish(ctx, ms[:n]); err != nil {
			t.Fatal(err)
		}
		ms = ms[n:]
	}
}

// ocsfRun is one run of 'flowbus ocsf' in this process.
type ocsfRun struct {
	reg    *prometheus.Registry
	log    *syncbuf.Buffer
	exited chan struct{} // closed when the command returned, err set
	err    error
	stop   context.CancelFunc
}

// startOCSF runs 'flowbus ocsf args...' with hooks (a new registry when
// they have none).
func startOCSF(t *testing.T, h ocsfHooks, args ...string) *ocsfRun {
	t.Helper()
	if h.reg == nil {
		h.reg = prometheus.NewRegistry()
	}
	r := &ocsfRun{reg: h.reg, log: &syncbuf.Buffer{}, exited: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	cio := cmdIO{Stdout: io.Discard, Stderr: io.Discard, Log: slog.New(slog.NewTextHandler(r.log, nil))}
	go func() {
		defer close(r.exited)
		r.err = runOCSFWith(ctx, args, cio, h)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			t.Error("flowbus ocsf did not stop within 10s of its context")
		}
	})
	return r
}

func (r *ocsfRun) value(name string) int {
	return int(counterValue(r.reg, name, "", ""))
}

// waitConsumed waits until the run has read msgs messages (decoded or bad),
// then stops it and returns its error.
func (r *ocsfRun) waitConsumed(t *testing.T, msgs int) error {
	t.Helper()
	return r.waitAndStop(t, func() bool {
		return r.value("flowbus_ocsf_messages_total")+r.value("flowbus_ocsf_bad_messages_total") >= msgs
	})
}

// waitAndStop waits until done holds, then stops the run and returns its
// error.
func (r *ocsfRun) waitAndStop(t *testing.T, done func() bool) error {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for !done() {
		select {
		case <-r.exited:
			t.Fatalf("flowbus ocsf stopped early: %v\n%s", r.err, r.log)
		case <-deadline:
			t.Fatalf("not done in 60s: read %d messages and %d bad, wrote %d events\n%s", r.value("flowbus_ocsf_messages_total"),
				r.value("flowbus_ocsf_bad_messages_total"), r.value("flowbus_ocsf_events_total"), r.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	r.stop()
	select {
	case <-r.exited:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatal("flowbus ocsf did not stop within 30s of its context")
	}
	return nil
}

// readOCSFEvents reads every JSON line of the .jsonl files in dir: events
// per class and activity, and how many times each metadata.uid occurs.
func readOCSFEvents(t *testing.T, dir string) (map[ocsfKey]int, map[string]int, int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	got, uids := map[ocsfKey]int{}, map[string]int{}
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for n := 1; sc.Scan(); n++ {
			var ev struct {
				ClassUID   int   `json:"class_uid"`
				ActivityID int   `json:"activity_id"`
				TypeUID    int   `json:"type_uid"`
				Time       int64 `json:"time"`
				Metadata   struct {
					UID     string `json:"uid"`
					Version string `json:"version"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("%s line %d: %v: %s", p, n, err, sc.Bytes())
			}
			if ev.TypeUID != ev.ClassUID*100+ev.ActivityID || ev.Time <= 0 || ev.Metadata.Version != ocsf.SchemaVersion || ev.Metadata.UID == "" {
				t.Fatalf("%s line %d: type_uid, time, metadata.version or uid wrong: %s", p, n, sc.Bytes())
			}
			got[ocsfKey{ev.ClassUID, ev.ActivityID}]++
			uids[ev.Metadata.UID]++
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return got, uids, len(files)
}

// TestOCSFCommandExactFromNATS: every record published to NATS becomes one
// OCSF event in the files, per class and activity as the input implies; the
// corrupt message is counted, logged with its partition and offset, and
// the records around it all arrive; the record the encoder refuses is
// counted; a clean stop commits everything, so a second run emits nothing.
func TestOCSFCommandExactFromNATS(t *testing.T) {
	in := newOCSFInput(t, 3000)
	url := publishOCSF(t, in)
	dir := t.TempDir()
	args := []string{"--bus", url, "--nats-partitions", fmt.Sprint(ocsfTestPartitions), "--data-dir", dir,
		"--rotate-bytes", "262144", "--max-files", "1000", "--metrics-address", "", "--progress-interval", "50ms"}
	r := startOCSF(t, ocsfHooks{}, args...)
	// Consumed, and at least one progress line out (the input can be read
	// in less than one --progress-interval).
	if err := r.waitAndStop(t, func() bool {
		return r.value("flowbus_ocsf_messages_total")+r.value("flowbus_ocsf_bad_messages_total") >= len(in.msgs) &&
			strings.Contains(r.log.String(), `msg="ocsf progress"`)
	}); err != nil {
		t.Fatalf("flowbus ocsf: %v\n%s", err, r.log)
	}

	got, uids, files := readOCSFEvents(t, dir)
	if !maps.Equal(got, in.want) {
		t.Errorf("events per class/activity\n got %v\nwant %v", got, in.want)
	}
	if len(uids) != len(in.uids) {
		t.Errorf("%d distinct records in the files, want %d", len(uids), len(in.uids))
	}
	for _, u := range in.uids {
		if uids[u] != 1 {
			t.Fatalf("record %s written %d times, want once", u, uids[u])
		}
	}
	if files < 2 {
		t.Errorf("%d files: the sink never rotated", files)
	}
	for name, want := range map[string]int{
		"flowbus_ocsf_messages_total":        len(in.msgs) - in.corrupts,
		"flowbus_ocsf_bad_messages_total":    in.corrupts,
		"flowbus_ocsf_records_total":         len(in.flows),
		"flowbus_ocsf_refused_records_total": in.refused,
		"flowbus_ocsf_events_total":          len(in.uids),
	} {
		if got := r.value(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	perClass := map[int]int{}
	for k, n := range in.want {
		perClass[k.class] += n
	}
	for _, c := range ocsfClasses {
		if got := int(counterValue(r.reg, "flowbus_ocsf_events_total", "class", c.label)); got != perClass[c.uid] || got == 0 {
			t.Errorf("flowbus_ocsf_events_total{class=%q} = %d, want %d (not 0)", c.label, got, perClass[c.uid])
		}
	}
	log := r.log.String()
	if !strings.Contains(log, `msg="ocsf: bad message skipped"`) || !strings.Contains(log, "partition=") || !strings.Contains(log, "offset=") {
		t.Errorf("no log line for the bad message with its partition and offset:\n%s", log)
	}
	if !strings.Contains(log, `msg="ocsf progress"`) {
		t.Errorf("no progress line:\n%s", log)
	}
	stopped := log[strings.LastIndex(log, `msg="ocsf stopped"`):]
	for _, c := range ocsfClasses {
		if want := fmt.Sprintf("%s=%d", c.label, perClass[c.uid]); !strings.Contains(stopped, want) {
			t.Errorf("the last line %q lacks %s", stopped, want)
		}
	}
	if !strings.Contains(stopped, "committed=") || strings.Contains(stopped, "committed=none") {
		t.Errorf("the last line %q has no committed offsets", stopped)
	}

	// Everything was committed: a second run of the same group emits nothing.
	r2 := startOCSF(t, ocsfHooks{}, args...)
	time.Sleep(time.Second)
	r2.stop()
	if <-r2.exited; r2.err != nil {
		t.Fatal(r2.err)
	}
	if n := r2.value("flowbus_ocsf_messages_total") + r2.value("flowbus_ocsf_bad_messages_total"); n != 0 {
		t.Errorf("a second run read %d messages, want 0: the first did not commit", n)
	}
}

// TestOCSFCommandRestartResumesAfterCommit: a run that dies between writing
// a batch and committing it (the hook fails, as a crash would) leaves that
// batch uncommitted; the next run resumes after the last commit, so every
// record is in the files and exactly the records of the uncommitted batch
// are there twice.
func TestOCSFCommandRestartResumesAfterCommit(t *testing.T) {
	in := newOCSFInput(t, 3000)
	url := publishOCSF(t, in)
	dir := t.TempDir()
	args := []string{"--bus", url, "--nats-partitions", fmt.Sprint(ocsfTestPartitions), "--data-dir", dir,
		"--metrics-address", "", "--progress-interval", "1s"}

	errCrash := errors.New("crash before commit")
	var (
		mu      sync.Mutex
		commits int
		events  []int // events counted at each beforeCommit
	)
	reg := prometheus.NewRegistry()
	hooks := ocsfHooks{reg: reg, maxPoll: 5, beforeCommit: func(map[int32]int64) error {
		mu.Lock()
		defer mu.Unlock()
		commits++
		events = append(events, int(counterValue(reg, "flowbus_ocsf_events_total", "", "")))
		if commits == 4 {
			return errCrash
		}
		return nil
	}}
	first := startOCSF(t, hooks, args...)
	select {
	case <-first.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the first run did not crash\n%s", first.log)
	}
	if !errors.Is(first.err, errCrash) {
		t.Fatalf("first run: %v, want the crash", first.err)
	}
	committed, uncommitted := events[2], events[3]-events[2]
	read := first.value("flowbus_ocsf_messages_total") + first.value("flowbus_ocsf_bad_messages_total")
	if uncommitted == 0 || read >= len(in.msgs) {
		t.Fatalf("the crashed batch had %d events and the first run read %d of %d messages: the test proves nothing", uncommitted, read, len(in.msgs))
	}

	// The second run reads the crashed batch again, then the rest: every
	// record the first did not commit.
	second := startOCSF(t, ocsfHooks{maxPoll: 5}, args...)
	if err := second.waitAndStop(t, func() bool {
		return second.value("flowbus_ocsf_events_total") >= len(in.uids)-committed &&
			second.value("flowbus_ocsf_messages_total")+second.value("flowbus_ocsf_bad_messages_total") >= len(in.msgs)-read
	}); err != nil {
		t.Fatal(err)
	}

	got, uids, _ := readOCSFEvents(t, dir)
	var missing, dups []string
	for _, u := range in.uids {
		switch n := uids[u]; {
		case n == 0:
			missing = append(missing, u)
		case n > 1:
			dups = append(dups, u)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d records missing after the restart, e.g. %s", len(missing), missing[0])
	}
	if len(uids) != len(in.uids) {
		t.Errorf("%d distinct records, want %d", len(uids), len(in.uids))
	}
	if len(dups) != uncommitted {
		t.Errorf("%d records written twice, want the %d of the uncommitted batch", len(dups), uncommitted)
	}
	if n := second.value("flowbus_ocsf_events_total"); n != len(in.uids)-committed {
		t.Errorf("the second run wrote %d events, want %d: all but the %d committed by the first", n, len(in.uids)-committed, committed)
	}
	total := 0
	for _, n := range got {
		total += n
	}
	if total != len(in.uids)+uncommitted {
		t.Errorf("%d events in the files, want %d records + %d of the uncommitted batch", total, len(in.uids), uncommitted)
	}
	t.Logf("%d commits before the crash; %d events committed, %d re-emitted", commits-1, committed, uncommitted)
}

// TestOCSFCommandToHEC: the events reach a Splunk HEC with the token from
// the file, which no log line carries.
func TestOCSFCommandToHEC(t *testing.T) {
	in := newOCSFInput(t, 500)
	url := publishOCSF(t, in)
	const token = "8d3c1f3e-hec-token-for-test"
	var mu sync.Mutex
	received, badAuth := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Splunk "+token {
			badAuth++
			http.Error(w, "bad token", http.StatusForbidden)
			return
		}
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var env struct {
				SourceType string          `json:"sourcetype"`
				Event      json.RawMessage `json:"event"`
			}
			if err := json.Unmarshal(sc.Bytes(), &env); err != nil || env.SourceType != "ocsf:test" || len(env.Event) == 0 {
				http.Error(w, "bad event", http.StatusBadRequest)
				return
			}
			received++
		}
		fmt.Fprint(w, `{"text":"Success","code":0}`)
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "hec-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startOCSF(t, ocsfHooks{}, "--bus", url, "--nats-partitions", fmt.Sprint(ocsfTestPartitions),
		"--hec-url", srv.URL+"/services/collector/event", "--hec-token-file", tokenFile, "--hec-sourcetype", "ocsf:test",
		"--hec-spool-dir", t.TempDir(), "--metrics-address", "", "--progress-interval", "50ms")
	if err := r.waitConsumed(t, len(in.msgs)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if received != len(in.uids) || badAuth != 0 {
		t.Errorf("the collector received %d events (%d requests with a wrong token), want %d", received, badAuth, len(in.uids))
	}
	if got := int(counterValue(r.reg, "flowbus_ocsf_hec_events_total", "result", "sent")); got != len(in.uids) {
		t.Errorf("flowbus_ocsf_hec_events_total{result=sent} = %d, want %d", got, len(in.uids))
	}
	if strings.Contains(r.log.String(), token) {
		t.Errorf("the token is in the log:\n%s", r.log)
	}
}

// TestOCSFFlags: a command that could not deliver anything, or not at
// least once, is a usage error that says what to give.
func TestOCSFFlags(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string // in the error; "" for none
	}{
		{nil, "no output: give --data-dir (JSON-lines files), --hec-url (Splunk HEC), --kafka-output-topic (Kafka) or --nats-output-subject (NATS), or several"},
		{[]string{"--data-dir", "d"}, ""},
		{[]string{"--hec-url", "http://h:8088/services/collector/event", "--hec-token-file", tokenFile, "--hec-spool-dir", "s"}, ""},
		{[]string{"--hec-url", "http://h:8088/services/collector/event", "--hec-spool-dir", "s"}, "--hec-url needs --hec-token-file"},
		{[]string{"--hec-url", "http://h:8088/services/collector/event", "--hec-token-file", tokenFile}, "--hec-url needs --hec-spool-dir"},
		{[]string{"--data-dir", "d", "--hec-token-file", tokenFile}, "need --hec-url"},
		{[]string{"--hec-url", "splunk:8088", "--hec-token-file", tokenFile, "--hec-spool-dir", "s"}, `--hec-url "splunk:8088"`},
		{[]string{"--data-dir", "d", "--bus", "embedded"}, `--bus "embedded"`},
		{[]string{"--data-dir", "d", "--bus", "stdout://x"}, `--bus "stdout://x"`},
		{[]string{"--data-dir", "d", "--max-files", "0"}, "--max-files 0: must be at least 1"},
		{[]string{"--data-dir", "d", "--rotate-age", "0s"}, "--rotate-age 0s: must be more than 0s"},
		{[]string{"--data-dir", "d", "--nats-assigned", "7", "--nats-partitions", "4"}, "--nats-assigned 7"},
		{[]string{"--kafka-output-topic", "flowbus.ocsf.v1"}, "--kafka-output-topic needs --kafka-output-brokers when --bus is not kafka://"},
		{[]string{"--kafka-output-topic", "flowbus.ocsf.v1", "--kafka-output-brokers", "k:9092"}, ""},
		{[]string{"--bus", "kafka://k:9092", "--kafka-output-topic", "flowbus.ocsf.v1"}, ""},
		{[]string{"--bus", "kafka://k:9092", "--kafka-output-topic", "flowbus.flows.v1"}, "--kafka-output-topic flowbus.flows.v1 is the topic the command reads (--kafka-topic)"},
		{[]string{"--bus", "kafka://k:9092", "--kafka-output-topic", "flowbus.flows.v1", "--kafka-output-brokers", "other:9092"}, ""},
		{[]string{"--kafka-output-topic", "t", "--kafka-output-brokers", "kafka://k:9092"}, `--kafka-output-brokers "kafka://k:9092": want host:port`},
		{[]string{"--data-dir", "d", "--kafka-output-brokers", "k:9092"}, "--kafka-output-brokers needs --kafka-output-topic"},
		{[]string{"--nats-output-subject", "flowbus.ocsf.v1"}, ""},
		{[]string{"--bus", "kafka://k:9092", "--nats-output-subject", "flowbus.ocsf.v1"}, "--nats-output-subject needs --nats-output-url when --bus is not nats://"},
		{[]string{"--bus", "kafka://k:9092", "--nats-output-subject", "flowbus.ocsf.v1", "--nats-output-url", "nats://n:4222"}, ""},
		{[]string{"--nats-output-subject", "flowbus.flows.v1"}, "--nats-output-subject flowbus.flows.v1 overlaps the flows' subjects flowbus.flows.v1.<partition>"},
		{[]string{"--nats-output-subject", "flowbus"}, "--nats-output-subject flowbus overlaps the flows' subjects"},
		{[]string{"--nats-output-subject", "flowbus.ocsf.v1", "--nats-output-stream", "FLOWBUS_FLOWS"}, "--nats-output-stream FLOWBUS_FLOWS is the flows' stream"},
		{[]string{"--nats-output-subject", "s", "--nats-output-url", "http://n:4222"}, `--nats-output-url "http://n:4222": want nats://host:port`},
		{[]string{"--data-dir", "d", "--nats-output-url", "nats://n:4222"}, "--nats-output-url needs --nats-output-subject"},
		{[]string{"--data-dir", "d", "--output-timeout", "0s"}, "--output-timeout 0s: must be more than 0s"},
	} {
		_, err := parseOCSFFlags(c.args, testIO())
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.args, err)
		case c.want != "" && (err == nil || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: err %v, want a usage error with %q", c.args, err, c.want)
		}
	}
	for _, c := range []struct{ content, want string }{
		{"", "is empty"},
		{" \n", "is empty"},
		{"a\nb\n", "more than one line"},
	} {
		p := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readHECToken(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("token file %q: err %v, want %q", c.content, err, c.want)
		}
	}
	if tok, err := readHECToken(tokenFile); tok != "t" || err != nil {
		t.Errorf("readHECToken = %q, %v", tok, err)
	}
}

// TestOCSFCommandHECOutageSpools: while the collector answers 503 the
// batches go to the spool and their offsets are committed; once it is back
// the spool is replayed and every event arrives.
func TestOCSFCommandHECOutageSpools(t *testing.T) {
	in := newOCSFInput(t, 500)
	url := publishOCSF(t, in)
	var mu sync.Mutex
	down, received, refusedRequests := true, 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			refusedRequests++
			http.Error(w, "server busy", http.StatusServiceUnavailable)
			return
		}
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			received++
		}
		fmt.Fprint(w, `{"text":"Success","code":0}`)
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "hec-token")
	if err := os.WriteFile(tokenFile, []byte("t0ken"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startOCSF(t, ocsfHooks{}, "--bus", url, "--nats-partitions", fmt.Sprint(ocsfTestPartitions),
		"--hec-url", srv.URL, "--hec-token-file", tokenFile, "--hec-spool-dir", t.TempDir(),
		"--metrics-address", "", "--progress-interval", "100ms")
	committed := func() int { return int(counterValue(r.reg, "flowbus_ocsf_committed_offset", "", "")) }
	deadline := time.Now().Add(60 * time.Second)
	for r.value("flowbus_ocsf_messages_total")+r.value("flowbus_ocsf_bad_messages_total") < len(in.msgs) || committed() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not consumed while the collector is down\n%s", r.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if spooled := int(counterValue(r.reg, "flowbus_ocsf_hec_events_total", "result", "spooled")); spooled == 0 {
		t.Fatalf("nothing spooled while the collector was down")
	}
	mu.Lock()
	down = false
	mu.Unlock()
	if err := r.waitAndStop(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received >= len(in.uids)
	}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if received != len(in.uids) || refusedRequests == 0 {
		t.Errorf("received %d events after %d refused requests, want %d after some", received, refusedRequests, len(in.uids))
	}
	if got := int(counterValue(r.reg, "flowbus_ocsf_hec_events_total", "result", "replayed")); got == 0 {
		t.Errorf("flowbus_ocsf_hec_events_total{result=replayed} = 0")
	}
}
