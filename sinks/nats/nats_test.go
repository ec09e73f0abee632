package nats

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const testPartitions = 8

func startServer(t testing.TB, dir string, port int) (*server.Server, string) {
	t.Helper()
	s, u, err := StartEmbedded(dir, port)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s, u
}

func newPublisher(t *testing.T, cfg PublisherConfig) *Publisher {
	t.Helper()
	p, err := NewPublisher(cfg)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newConsumer(t *testing.T, cfg ConsumerConfig) *Consumer {
	t.Helper()
	c, err := NewConsumer(cfg)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// streamMsgs returns the number of messages in a stream.
func streamMsgs(t *testing.T, u, stream string) uint64 {
	t.Helper()
	nc, err := natsgo.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// checkDeliveries asserts that ds is exactly msgs (bustest.CheckDeliveries),
// each on the subject of its partition, with every header of its message
// plus flowbus-key and Nats-Msg-Id, and its stream time.
func checkDeliveries(t *testing.T, ds []bus.Delivery, msgs []schemas.Message, partitions int) {
	t.Helper()
	bustest.CheckDeliveries(t, ds, msgs, partitions, func(d *bus.Delivery, m *schemas.Message) {
		if want := DefaultSubjectPrefix + "." + strconv.Itoa(schemas.PartitionOf(m.Key, partitions)); d.Topic != want {
			t.Errorf("message %s key %q: subject %s, want %s", m.ID(), m.Key, d.Topic, want)
		}
		want := map[string]string{HeaderKey: m.Key, jetstream.MsgIDHeader: m.ID()}
		for _, kv := range m.Headers() {
			want[kv[0]] = kv[1]
		}
		if !maps.Equal(d.Headers, want) {
			t.Errorf("message %s: headers %v, want %v", m.ID(), d.Headers, want)
		}
		if d.Time.IsZero() {
			t.Errorf("message %s: no stream time", m.ID())
		}
	})
}

func TestPublishedMessagesReachTheConsumerExactlyOnce(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	msgs := bustest.Messages("node-a", 1, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs[:20]); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := p.Publish(ctx, msgs[20:]); err != nil {
		t.Fatalf("publish: %v", err)
	}
	var assigned []int32
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: testPartitions,
		OnAssigned: func(ps []int32) { assigned = ps }})
	ds := bustest.PollN(t, c, len(msgs), 10*time.Second)
	ds = append(ds, bustest.PollQuiet(t, c, 300*time.Millisecond)...)
	checkDeliveries(t, ds, msgs, testPartitions)
	if len(assigned) != testPartitions || assigned[0] != 0 || assigned[7] != 7 {
		t.Errorf("OnAssigned got %v, want partitions 0..7", assigned)
	}

	nc, err := natsgo.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := info.Config
	if info.State.Msgs != 50 || len(sc.Subjects) != 1 || sc.Subjects[0] != "flowbus.flows.v1.>" ||
		sc.Storage != jetstream.FileStorage || sc.Discard != jetstream.DiscardOld || sc.MaxAge != 24*time.Hour ||
		sc.Duplicates != 2*time.Minute || sc.MaxMsgSize != 1<<20 || sc.MaxBytes != DefaultMaxBytes {
		t.Errorf("stream %s: %d msgs, config %+v; want 50 msgs, flowbus.flows.v1.>, file, discard old, 24h, 2m, 1 MiB, 4 GiB", DefaultStream, info.State.Msgs, sc)
	}
}

func TestPublishingTheSameMessagesAgainDoesNotDuplicateThem(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	msgs := bustest.Messages("node-b", 1, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 3 {
		if err := p.Publish(ctx, msgs); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	// A second publisher (an agent restarted and replaying its spool) too.
	p2 := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	if err := p2.Publish(ctx, msgs[5:15]); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if n := streamMsgs(t, u, DefaultStream); n != 20 {
		t.Fatalf("stream holds %d messages after republishing 20 with the same Nats-Msg-Id, want 20", n)
	}
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	ds := bustest.PollN(t, c, len(msgs), 10*time.Second)
	ds = append(ds, bustest.PollQuiet(t, c, 300*time.Millisecond)...)
	checkDeliveries(t, ds, msgs, testPartitions)
}

func TestAConsumerRestartResumesAfterTheCommitWithoutDuplicates(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	msgs := bustest.Messages("node-c", 1, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
	cfg := ConsumerConfig{Conn: Conn{URL: u}, Partitions: testPartitions, MaxPollRecords: 7}
	first := newConsumer(t, cfg)
	processed, next := bustest.CommitFirst(ctx, t, first, 20, 7)
	first.Close()
	if _, err := first.Poll(ctx); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("poll after close: got %v, want bus.ErrClosed", err)
	}

	second := newConsumer(t, cfg)
	rest := bustest.PollN(t, second, len(msgs)-len(processed), 10*time.Second)
	rest = append(rest, bustest.PollQuiet(t, second, 300*time.Millisecond)...)
	bustest.CheckNotBefore(t, rest, next)
	checkDeliveries(t, append(processed, rest...), msgs, testPartitions)
}

// TestPublishBlocksThroughAServerRestartAndStoresEachMessageOnce stops the
// server for 3 s while a Publish is in flight and restarts it with the same
// store: the Publish returns nil and the stream holds every message once.
func TestPublishBlocksThroughAServerRestartAndStoresEachMessageOnce(t *testing.T) {
	dir := t.TempDir()
	s1, u, err := StartEmbedded(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	port, _ := strconv.Atoi(pu.Port())
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Partitions: testPartitions, AckTimeout: time.Second})
	msgs := bustest.Messages("node-d", 1, 40)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs[:20]); err != nil {
		t.Fatalf("publish before the outage: %v", err)
	}
	s1.Shutdown()
	s1.WaitForShutdown()

	done := make(chan error, 1)
	go func() { done <- p.Publish(ctx, msgs[10:]) }() // 10 already stored, 20 new
	select {
	case err := <-done:
		t.Fatalf("publish returned %v while the server was down", err)
	case <-time.After(3 * time.Second):
	}
	startServer(t, dir, port)
	if err := <-done; err != nil {
		t.Fatalf("publish across the outage: %v", err)
	}
	if n := streamMsgs(t, u, DefaultStream); n != 40 {
		t.Fatalf("stream holds %d messages, want 40", n)
	}
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	ds := bustest.PollN(t, c, len(msgs), 10*time.Second)
	ds = append(ds, bustest.PollQuiet(t, c, 300*time.Millisecond)...)
	checkDeliveries(t, ds, msgs, testPartitions)
}

func TestPublishRejectsAMessageOverTheStreamLimitBeforeSendingAnything(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}})
	msgs := bustest.Messages("node-e", 1, 3)
	msgs[2].Value = make([]byte, 1<<20-100) // fits the payload, not with its headers
	err := p.Publish(context.Background(), msgs)
	if !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("publish: got %v, want bus.ErrTooLarge", err)
	}
	if n := streamMsgs(t, u, DefaultStream); n != 0 {
		t.Errorf("%d messages stored, want 0", n)
	}
	msgs[2].Value = make([]byte, 1<<20-1024)
	if err := p.Publish(context.Background(), msgs); err != nil {
		t.Fatalf("publish of a value of 1 MiB - 1 KiB: %v", err)
	}
	if n := streamMsgs(t, u, DefaultStream); n != 3 {
		t.Errorf("%d messages stored, want 3", n)
	}
}

func TestPublishBlocksWhileNoServerAnswersUntilTheContextEnds(t *testing.T) {
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: "nats://127.0.0.1:1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Publish(ctx, bustest.Messages("node-f", 1, 3))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish with no server: got %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el < 650*time.Millisecond {
		t.Errorf("publish gave up after %s, before the context ended", el)
	}
}

func TestDeadLetterStoresTheMessageOnceWithReasonPartitionAndOffset(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, bustest.Messages("node-g", 1, 3)); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	ds := bustest.PollN(t, c, 3, 10*time.Second)
	bad := ds[1]
	for range 2 {
		if err := c.DeadLetter(ctx, bad, "arrow: truncated stream"); err != nil {
			t.Fatalf("dead letter: %v", err)
		}
	}
	if n := streamMsgs(t, u, DefaultDLQStream); n != 1 {
		t.Fatalf("dead-letter stream holds %d messages after dead-lettering one twice, want 1", n)
	}
	nc, err := natsgo.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	raw := lastDeadLetter(ctx, t, nc)
	if !bytes.Equal(raw.Data, bad.Value) {
		t.Errorf("dead letter holds %d bytes, want the original %d", len(raw.Data), len(bad.Value))
	}
	got := map[string]string{}
	for k, vs := range raw.Header {
		got[k] = vs[0]
	}
	want := map[string]string{}
	for k, v := range bad.Headers {
		if !strings.HasPrefix(k, "Nats-") {
			want[k] = v
		}
	}
	want[bus.HeaderDLQReason] = "arrow: truncated stream"
	want[bus.HeaderDLQPartition] = strconv.Itoa(int(bad.Partition))
	want[bus.HeaderDLQOffset] = strconv.FormatInt(bad.Offset, 10)
	want[jetstream.MsgIDHeader] = DefaultStream + "/" + strconv.FormatInt(bad.Offset, 10)
	if !maps.Equal(got, want) {
		t.Errorf("dead letter headers %v, want %v", got, want)
	}
}

func TestAStreamTheServerRefusesFailsPublishAtOnce(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Stream: StreamConfig{Replicas: 3}}) // one server, not a cluster
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.Publish(ctx, bustest.Messages("node-h", 1, 1))
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "nats stream FLOWBUS_FLOWS") {
		t.Fatalf("publish with a 3-replica stream on one server: got %v, want the server's refusal before the deadline", err)
	}
}

// A message as large as the server's max_payload cannot be dead-lettered
// whole with the dead-letter headers added: it is dead-lettered cut to fit,
// with its original length in a header, rather than failing on every
// restart.
func TestADeadLetterAtMaxPayloadIsCutToFit(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	var logs bytes.Buffer
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: testPartitions,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	maxPayload := int(c.nc.MaxPayload())
	value := make([]byte, maxPayload)
	for i := range value {
		value[i] = byte(i * 7)
	}
	bad := bus.Delivery{Partition: 1, Offset: 9, Value: value, Headers: map[string]string{"flowbus-schema": "flow.v1"}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.DeadLetter(ctx, bad, strings.Repeat("r", 2000)); err != nil {
		t.Fatalf("dead letter of a %d-byte message: %v", maxPayload, err)
	}
	raw := lastDeadLetter(ctx, t, c.nc)
	// Headers take ~1.2 KiB (the reason is cut at 1 KiB).
	if n := len(raw.Data); n >= maxPayload-1024 || n < maxPayload-2048 || !bytes.Equal(raw.Data, value[:n]) {
		t.Errorf("dead letter holds %d bytes, want a prefix of the original of %d-2048..%d bytes", n, maxPayload, maxPayload-1024)
	}
	if got := raw.Header.Get(bus.HeaderDLQTruncated); got != strconv.Itoa(maxPayload) {
		t.Errorf("%s = %q, want %d", bus.HeaderDLQTruncated, got, maxPayload)
	}
	if got := raw.Header.Get(bus.HeaderDLQOffset); got != "9" {
		t.Errorf("%s = %q, want 9", bus.HeaderDLQOffset, got)
	}
	if !strings.Contains(logs.String(), "nats dead letter cut to fit") {
		t.Errorf("no warning about the cut dead letter in the log:\n%s", logs.String())
	}
}

// lastDeadLetter returns the last message of the dead-letter subject.
func lastDeadLetter(ctx context.Context, t *testing.T, nc *natsgo.Conn) *jetstream.RawStreamMsg {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, DefaultDLQStream)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetLastMsgForSubject(ctx, DefaultDLQSubject)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// A dead-letter stream made before (by an operator, or an older version)
// with a smaller max_msg_size than the messages it receives: the dead letter
// is cut to that size instead.
func TestADeadLetterIsCutToAnExistingStreamsMaxMsgSize(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := natsgo.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const maxMsg = 64 << 10
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: DefaultDLQStream, Subjects: []string{DefaultDLQSubject}, MaxMsgSize: maxMsg}); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	value := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
	bad := bus.Delivery{Partition: 2, Offset: 5, Value: value, Headers: map[string]string{bus.HeaderDLQTruncated: "stale"}}
	if err := c.DeadLetter(ctx, bad, "not an Arrow stream"); err != nil {
		t.Fatalf("dead letter of %d bytes to a stream of max_msg_size %d: %v", len(value), maxMsg, err)
	}
	raw := lastDeadLetter(ctx, t, nc)
	if n := len(raw.Data); n >= maxMsg-100 || n < maxMsg-1024 || !bytes.Equal(raw.Data, value[:n]) {
		t.Errorf("dead letter holds %d bytes, want a prefix of the original of %d-1024..%d bytes", n, maxMsg, maxMsg-100)
	}
	if got := raw.Header.Values(bus.HeaderDLQTruncated); len(got) != 1 || got[0] != strconv.Itoa(len(value)) {
		t.Errorf("%s = %q, want [%d]", bus.HeaderDLQTruncated, got, len(value))
	}
}
