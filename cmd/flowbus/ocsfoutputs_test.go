package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowbus/flowbus/internal/ocsftest"
	"github.com/flowbus/flowbus/internal/pkitest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/flowbus/flowbus/sinks/kafka"
	"github.com/flowbus/flowbus/sinks/nats"
)

// ocsfEvent is one event an output holds, with what the output says of it
// beside the event (Kafka and NATS: key, partition, headers).
type ocsfEvent struct {
	json      []byte
	key       string
	partition int
	headers   map[string]string
}

// checkOCSFOutput validates every event of one output against OCSF 1.8.0
// and checks that it holds each record the encoder takes exactly once, per
// class and activity as the input implies; keyed (Kafka, NATS) events must
// carry their record's partition key, in that key's partition of
// partitions, and the class's headers.
func checkOCSFOutput(t *testing.T, name string, in *ocsfInput, events []ocsfEvent, keyed bool, partitions int) {
	t.Helper()
	s := ocsftest.Load(t)
	keyOf := map[string]string{}
	for i := range in.flows {
		keyOf[in.flows[i].UUID] = in.flows[i].PartitionKey()
	}
	got, uids := map[ocsfKey]int{}, map[string]int{}
	invalid, wrongKey, wrongHeaders := 0, 0, 0
	for i, ev := range events {
		if errs := s.Validate(ev.json); errs != nil {
			if invalid++; invalid <= 3 {
				t.Errorf("%s: event %d is not valid OCSF %s: %q\n%s", name, i, s.Version(), errs, ev.json)
			}
		}
		var e struct {
			ClassUID   int `json:"class_uid"`
			ActivityID int `json:"activity_id"`
			Metadata   struct {
				UID string `json:"uid"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(ev.json, &e); err != nil {
			t.Fatalf("%s: event %d: %v", name, i, err)
		}
		got[ocsfKey{e.ClassUID, e.ActivityID}]++
		uids[e.Metadata.UID]++
		if !keyed {
			continue
		}
		if k := keyOf[e.Metadata.UID]; ev.key != k || ev.partition != schemas.PartitionOf(k, partitions) {
			if wrongKey++; wrongKey <= 3 {
				t.Errorf("%s: event of %s keyed %q in partition %d, want %q in %d", name, e.Metadata.UID, ev.key, ev.partition, k, schemas.PartitionOf(k, partitions))
			}
		}
		if ev.headers["content-type"] != "application/json" || ev.headers["flowbus-schema"] != "ocsf/1.8.0" || ev.headers["ocsf-class-uid"] != strconv.Itoa(e.ClassUID) {
			if wrongHeaders++; wrongHeaders <= 3 {
				t.Errorf("%s: event of %s has headers %v", name, e.Metadata.UID, ev.headers)
			}
		}
	}
	if invalid != 0 || wrongKey != 0 || wrongHeaders != 0 {
		t.Errorf("%s: %d events invalid, %d keyed wrong, %d with wrong headers; want 0", name, invalid, wrongKey, wrongHeaders)
	}
	if !maps.Equal(got, in.want) {
		t.Errorf("%s: events per class/activity\n got %v\nwant %v", name, got, in.want)
	}
	if len(events) != len(in.uids) || len(uids) != len(in.uids) {
		t.Errorf("%s: %d events of %d records, want %d of %d", name, len(events), len(uids), len(in.uids), len(in.uids))
	}
	for _, u := range in.uids {
		if uids[u] != 1 {
			t.Fatalf("%s: record %s is there %d times, want once", name, u, uids[u])
		}
	}
}

// hecCollector is a Splunk HEC endpoint that keeps the events it accepts.
type hecCollector struct {
	mu     sync.Mutex
	events [][]byte
}

func (h *hecCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 4<<20)
	var evs [][]byte
	for sc.Scan() {
		var env struct {
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &env); err != nil || len(env.Event) == 0 {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		evs = append(evs, env.Event)
	}
	h.mu.Lock()
	h.events = append(h.events, evs...)
	h.mu.Unlock()
	fmt.Fprint(w, `{"text":"Success","code":0}`)
}

func (h *hecCollector) received() []ocsfEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]ocsfEvent, len(h.events))
	for i, e := range h.events {
		out[i] = ocsfEvent{json: e}
	}
	return out
}

// fileEvents reads the events of the .jsonl files in dir.
func fileEvents(t *testing.T, dir string) []ocsfEvent {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []ocsfEvent
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			out = append(out, ocsfEvent{json: append([]byte(nil), sc.Bytes()...)})
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// kafkaEvents reads n records of topic from the start.
func kafkaEvents(t *testing.T, brokers []string, topic string, n int) []ocsfEvent {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []ocsfEvent
	for len(out) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			hs := map[string]string{}
			for _, h := range r.Headers {
				hs[h.Key] = string(h.Value)
			}
			out = append(out, ocsfEvent{json: r.Value, key: string(r.Key), partition: int(r.Partition), headers: hs})
		})
	}
	// Nothing beyond n.
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	cl.PollFetches(sctx).EachRecord(func(r *kgo.Record) { out = append(out, ocsfEvent{json: r.Value}) })
	return out
}

// natsEvents reads n messages of the stream of subjects <prefix>.<p>.
func natsEvents(t *testing.T, url, stream, prefix string, partitions, n int) []ocsfEvent {
	t.Helper()
	c, err := nats.NewConsumer(nats.ConsumerConfig{Conn: nats.Conn{URL: url}, Stream: nats.StreamConfig{Name: stream, SubjectPrefix: prefix},
		Partitions: partitions, Durable: "ocsf-test-reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []ocsfEvent
	for len(out) < n && ctx.Err() == nil {
		ds, err := c.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			out = append(out, ocsfEvent{json: d.Value, key: string(d.Key), partition: int(d.Partition), headers: d.Headers})
		}
	}
	return out
}

// TestOCSFAcceptance100kToEveryOutput: 100,000 fleet records (policy drops,
// HTTP and DNS L7 records; one refused by the encoder, one corrupt message
// among them) read from NATS by one 'flowbus ocsf' writing to every output
// at once: files, a Splunk HEC, a Kafka topic (kfake) and NATS subjects on
// the input's own server. Every event of every output validates against
// OCSF 1.8.0, each output holds each record once, per class and activity
// as the input implies, and the Kafka and NATS events are keyed and
// partitioned as the flows are.
func TestOCSFAcceptance100kToEveryOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 100,000 records through every output")
	}
	const n = 100_000
	in := newOCSFInput(t, n)
	url := publishOCSF(t, in)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	hec := &hecCollector{}
	hs := httptest.NewServer(hec)
	defer hs.Close()
	tokenFile := filepath.Join(t.TempDir(), "hec-token")
	if err := os.WriteFile(tokenFile, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const outPartitions = 6
	start := time.Now()
	r := startOCSF(t, ocsfHooks{}, "--bus", url, "--nats-partitions", fmt.Sprint(ocsfTestPartitions),
		"--data-dir", dir, "--rotate-bytes", "16777216", "--max-files", "1000",
		"--hec-url", hs.URL+"/services/collector/event", "--hec-token-file", tokenFile, "--hec-spool-dir", t.TempDir(),
		"--kafka-output-topic", "flowbus.ocsf.v1", "--kafka-output-brokers", strings.Join(kc.ListenAddrs(), ","),
		"--kafka-output-partitions", fmt.Sprint(outPartitions),
		"--nats-output-subject", "flowbus.ocsf.v1", "--nats-output-partitions", fmt.Sprint(outPartitions),
		"--metrics-address", "", "--progress-interval", "1s")
	if err := r.waitConsumed(t, len(in.msgs)); err != nil {
		t.Fatalf("flowbus ocsf: %v\n%s", err, r.log)
	}
	elapsed := time.Since(start)
	for name, want := range map[string]int{
		"flowbus_ocsf_bad_messages_total":    in.corrupts,
		"flowbus_ocsf_refused_records_total": in.refused,
		"flowbus_ocsf_records_total":         n,
		"flowbus_ocsf_events_total":          len(in.uids),
	} {
		if got := r.value(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	for _, out := range []string{"kafka", "nats"} {
		if got := int(counterValue(r.reg, "flowbus_ocsf_bus_events_total", "output", out)); got != len(in.uids) {
			t.Errorf("flowbus_ocsf_bus_events_total{output=%q} = %d, want %d", out, got, len(in.uids))
		}
	}

	checkOCSFOutput(t, "files", in, fileEvents(t, dir), false, 0)
	checkOCSFOutput(t, "hec", in, hec.received(), false, 0)
	checkOCSFOutput(t, "kafka", in, kafkaEvents(t, kc.ListenAddrs(), "flowbus.ocsf.v1", len(in.uids)), true, outPartitions)
	checkOCSFOutput(t, "nats", in, natsEvents(t, url, "FLOWBUS_OCSF", "flowbus.ocsf.v1", outPartitions, len(in.uids)), true, outPartitions)
	t.Logf("%d records, %d events per output, 4 outputs, in %s: %v", n, len(in.uids), elapsed.Round(time.Millisecond), in.want)
}

// TestOCSFOutputUnreachable: a Kafka or NATS output that cannot be reached
// stops the command within --output-timeout with an error naming it; one
// that goes away while the command runs stops it at its next batch, with
// nothing committed.
func TestOCSFOutputUnreachable(t *testing.T) {
	in := newOCSFInput(t, 200)
	url := publishOCSF(t, in)
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"kafka", []string{"--kafka-output-topic", "flowbus.ocsf.v1", "--kafka-output-brokers", "127.0.0.1:1"},
			[]string{"ocsf output kafka topic flowbus.ocsf.v1 on 127.0.0.1:1: not ready within 1s (--output-timeout)", "connection refused"}},
		{"nats", []string{"--nats-output-subject", "flowbus.ocsf.v1", "--nats-output-url", "nats://127.0.0.1:1"},
			[]string{"ocsf output nats subjects flowbus.ocsf.v1.<partition> (stream FLOWBUS_OCSF) on nats://127.0.0.1:1: not ready within 1s (--output-timeout)",
				"the server nats://127.0.0.1:1 is not reachable"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--bus", url, "--nats-partitions", fmt.Sprint(ocsfTestPartitions), "--group", "unreachable-" + c.name,
				"--metrics-address", "", "--output-timeout", "1s"}, c.args...)
			start := time.Now()
			r := startOCSF(t, ocsfHooks{}, args...)
			select {
			case <-r.exited:
			case <-time.After(20 * time.Second):
				t.Fatal("flowbus ocsf still runs 20s after it started with an unreachable output")
			}
			if r.err == nil {
				t.Fatal("flowbus ocsf ran with an unreachable output")
			}
			for _, w := range c.want {
				if !strings.Contains(r.err.Error(), w) {
					t.Errorf("error %q lacks %q", r.err, w)
				}
			}
			if n := r.value("flowbus_ocsf_messages_total"); n != 0 {
				t.Errorf("read %d messages before its output was ready", n)
			}
			t.Logf("stopped after %s: %v", time.Since(start).Round(time.Millisecond), r.err)
		})
	}

	t.Run("kafka goes away", func(t *testing.T) {
		kc, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		// The command starts on an empty input, so that the broker goes
		// away between the start (when the output was ready) and the first
		// batch, published after.
		brokers := strings.Join(kc.ListenAddrs(), ",")
		empty := publishOCSF(t, &ocsfInput{})
		r := startOCSF(t, ocsfHooks{}, "--bus", empty, "--nats-partitions", fmt.Sprint(ocsfTestPartitions), "--metrics-address", "",
			"--output-timeout", "1s", "--kafka-output-topic", "flowbus.ocsf.v1", "--kafka-output-brokers", brokers)
		waitOCSFStarted(t, r)
		kc.Close()
		publishTo(t, empty, in.msgs)
		wantOCSFStoppedByItsOutput(t, r, "Kafka", "ocsf to kafka topic flowbus.ocsf.v1 on "+brokers)
	})

	t.Run("nats goes away", func(t *testing.T) {
		out, outURL, err := nats.StartEmbedded(filepath.Join(t.TempDir(), "out"), -1)
		if err != nil {
			t.Fatal(err)
		}
		empty := publishOCSF(t, &ocsfInput{})
		r := startOCSF(t, ocsfHooks{}, "--bus", empty, "--nats-partitions", fmt.Sprint(ocsfTestPartitions), "--metrics-address", "",
			"--output-timeout", "1s", "--nats-output-subject", "flowbus.ocsf.v1", "--nats-output-url", outURL)
		waitOCSFStarted(t, r)
		out.Shutdown()
		out.WaitForShutdown()
		publishTo(t, empty, in.msgs)
		wantOCSFStoppedByItsOutput(t, r, "NATS", "ocsf to nats subjects flowbus.ocsf.v1.<partition> (stream FLOWBUS_OCSF) on "+outURL)
	})
}

// waitOCSFStarted waits until r has logged its start (its outputs ready).
func waitOCSFStarted(t *testing.T, r *ocsfRun) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(r.log.String(), `msg="ocsf starting"`) {
		if time.Now().After(deadline) {
			t.Fatalf("not started\n%s", r.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantOCSFStoppedByItsOutput checks that r stopped, within 30 s, on its
// output (kind, named as output) not acknowledging in time, with nothing
// committed.
func wantOCSFStoppedByItsOutput(t *testing.T, r *ocsfRun, kind, output string) {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("flowbus ocsf still runs 30s after its %s output went away", kind)
	}
	if r.err == nil || !strings.Contains(r.err.Error(), output) ||
		!strings.Contains(r.err.Error(), "no acknowledgement within 1s (--output-timeout; the batch stays uncommitted") {
		t.Fatalf("err %v, want the %s output named and the timeout", r.err, kind)
	}
	if c := int(counterValue(r.reg, "flowbus_ocsf_committed_offset", "", "")); c != 0 {
		t.Errorf("committed offsets sum to %d, want nothing committed", c)
	}
	t.Log(r.err)
}

// deliveryEvents are the events of deliveries read from a Kafka or NATS
// output.
func deliveryEvents(ds []bus.Delivery) []ocsfEvent {
	out := make([]ocsfEvent, len(ds))
	for i, d := range ds {
		out[i] = ocsfEvent{json: d.Value, key: string(d.Key), partition: int(d.Partition), headers: d.Headers}
	}
	return out
}

// TestOCSFOutputsOverTLSAndAuth: the bus's TLS and authentication flags
// reach the outputs: 'flowbus ocsf' reads from a NATS server that requires
// mTLS and a user, publishes to NATS subjects on that same server and to a
// Kafka that requires mTLS and SASL/SCRAM; every event arrives, valid, and
// no log line shows a password.
func TestOCSFOutputsOverTLSAndAuth(t *testing.T) {
	pki := pkitest.New(t, t.TempDir())
	_, seedPub := newSeed(t)
	url := startNATS(t, pki, seedPub, false)
	natsConn := nats.Conn{URL: url, TLS: nats.TLS{CAFile: pki.CAFile, CertFile: pki.CertFile, KeyFile: pki.KeyFile},
		Auth: nats.Auth{User: "flowbus", Password: natsPassword}}
	in := newOCSFInput(t, 600)
	p, err := nats.NewPublisher(nats.PublisherConfig{Conn: natsConn, Partitions: ocsfTestPartitions})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, in.msgs); err != nil {
		t.Fatal(err)
	}
	p.Close()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(pki.ServerTLS()), kfake.EnableSASL(),
		kfake.Superuser(kafka.MechanismSCRAMSHA256, "flowbus", kafkaPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kafkaConn := kafka.Conn{Brokers: kc.ListenAddrs(), TLS: kafka.TLS{CAFile: pki.CAFile, CertFile: pki.CertFile, KeyFile: pki.KeyFile},
		SASL: kafka.SASL{Mechanism: kafka.MechanismSCRAMSHA256, User: "flowbus", Password: kafkaPassword}}

	r := startOCSF(t, ocsfHooks{}, "--bus", url, "--nats-partitions", fmt.Sprint(ocsfTestPartitions),
		"--nats-tls-ca-file", pki.CAFile, "--nats-tls-cert-file", pki.CertFile, "--nats-tls-key-file", pki.KeyFile,
		"--nats-user", "flowbus", "--nats-password-file", writeSecret(t, "nats-password", natsPassword),
		"--kafka-tls-ca-file", pki.CAFile, "--kafka-tls-cert-file", pki.CertFile, "--kafka-tls-key-file", pki.KeyFile,
		"--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-user", "flowbus",
		"--kafka-sasl-password-file", writeSecret(t, "kafka-password", kafkaPassword),
		"--kafka-output-topic", "flowbus.ocsf.v1", "--kafka-output-brokers", strings.Join(kc.ListenAddrs(), ","), "--kafka-output-partitions", "3",
		"--nats-output-subject", "flowbus.ocsf.v1", "--nats-output-partitions", "5",
		"--metrics-address", "", "--progress-interval", "100ms")
	if err := r.waitConsumed(t, len(in.msgs)); err != nil {
		t.Fatalf("flowbus ocsf: %v\n%s", err, r.log)
	}
	kcons, err := kafka.NewConsumer(kafka.ConsumerConfig{Conn: kafkaConn, Topic: "flowbus.ocsf.v1", Group: "ocsf-reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer kcons.Close()
	checkOCSFOutput(t, "kafka", in, deliveryEvents(bustest.PollN(t, kcons, len(in.uids), 30*time.Second)), true, 3)
	ncons, err := nats.NewConsumer(nats.ConsumerConfig{Conn: natsConn, Stream: nats.StreamConfig{Name: "FLOWBUS_OCSF", SubjectPrefix: "flowbus.ocsf.v1"},
		Partitions: 5, Durable: "ocsf-reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer ncons.Close()
	checkOCSFOutput(t, "nats", in, deliveryEvents(bustest.PollN(t, ncons, len(in.uids), 30*time.Second)), true, 5)
	for _, secret := range []string{natsPassword, kafkaPassword} {
		if strings.Contains(r.log.String(), secret) {
			t.Errorf("the log shows a password:\n%s", r.log)
		}
	}
}

// TestOCSFNATSOutputRestartStoresEachEventOnce: a run that dies between
// publishing a batch to the NATS output and committing its input offsets
// leaves the batch to be emitted again by the next run; each event's
// Nats-Msg-Id is the place of its record on the bus, so the stream stores
// the repeats once and holds every record exactly once.
func TestOCSFNATSOutputRestartStoresEachEventOnce(t *testing.T) {
	in := newOCSFInput(t, 2000)
	url := publishOCSF(t, in)
	args := []string{"--bus", url, "--nats-partitions", fmt.Sprint(ocsfTestPartitions), "--nats-output-subject", "flowbus.ocsf.v1",
		"--nats-output-partitions", "3", "--metrics-address", "", "--progress-interval", "1s"}
	errCrash := fmt.Errorf("crash before commit")
	commits := 0
	reg := prometheus.NewRegistry()
	first := startOCSF(t, ocsfHooks{reg: reg, maxPoll: 5, beforeCommit: func(map[int32]int64) error {
		if commits++; commits == 4 {
			return errCrash
		}
		return nil
	}}, args...)
	select {
	case <-first.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the first run did not crash\n%s", first.log)
	}
	if first.err == nil || !strings.Contains(first.err.Error(), errCrash.Error()) {
		t.Fatalf("first run: %v, want the crash", first.err)
	}
	published := int(counterValue(reg, "flowbus_ocsf_bus_events_total", "output", "nats"))
	second := startOCSF(t, ocsfHooks{maxPoll: 5}, args...)
	read := first.value("flowbus_ocsf_messages_total") + first.value("flowbus_ocsf_bad_messages_total")
	if err := second.waitAndStop(t, func() bool {
		// The second run reads the crashed batch again, then the rest.
		return second.value("flowbus_ocsf_messages_total")+second.value("flowbus_ocsf_bad_messages_total") >= len(in.msgs)-read+1
	}); err != nil {
		t.Fatal(err)
	}
	republished := int(counterValue(second.reg, "flowbus_ocsf_bus_events_total", "output", "nats"))
	if published+republished <= len(in.uids) {
		t.Fatalf("%d + %d events published: no batch was published twice, the test proves nothing", published, republished)
	}
	events := natsEvents(t, url, "FLOWBUS_OCSF", "flowbus.ocsf.v1", 3, len(in.uids))
	if n := streamMessages(t, url, "FLOWBUS_OCSF"); n != uint64(len(in.uids)) {
		t.Errorf("the stream holds %d messages, want %d: one per record", n, len(in.uids))
	}
	checkOCSFOutput(t, "nats", in, events, true, 3)
	t.Logf("%d events published, %d of them twice; the stream holds %d", published+republished, published+republished-len(in.uids), len(events))
}

// streamMessages is the number of messages in a JetStream stream.
func streamMessages(t *testing.T, url, stream string) uint64 {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestOCSFFromKafkaToTheSameKafka: 'flowbus ocsf' reading the flows topic
// of a Kafka cluster (the agent's producer wrote it, the corrupt message
// among the rest) and publishing the events to another topic of the same
// cluster (--kafka-output-brokers defaults to --bus): every record once,
// valid, keyed and partitioned as the flows; the bad message counted.
func TestOCSFFromKafkaToTheSameKafka(t *testing.T) {
	in := newOCSFInput(t, 3000)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, kafka.DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	p, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: kc.ListenAddrs()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, in.msgs); err != nil {
		t.Fatal(err)
	}
	p.Close()
	r := startOCSF(t, ocsfHooks{}, "--bus", "kafka://"+strings.Join(kc.ListenAddrs(), ","),
		"--kafka-output-topic", "flowbus.ocsf.v1", "--kafka-output-partitions", "5", "--metrics-address", "", "--progress-interval", "100ms",
		"--kafka-instance-id", "flowbus-ocsf-test-0") // static membership: the consumer joins with it
	if err := r.waitConsumed(t, len(in.msgs)); err != nil {
		t.Fatalf("flowbus ocsf: %v\n%s", err, r.log)
	}
	if got := r.value("flowbus_ocsf_bad_messages_total"); got != in.corrupts {
		t.Errorf("flowbus_ocsf_bad_messages_total = %d, want %d", got, in.corrupts)
	}
	checkOCSFOutput(t, "kafka", in, kafkaEvents(t, kc.ListenAddrs(), "flowbus.ocsf.v1", len(in.uids)), true, 5)
}
