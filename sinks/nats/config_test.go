package nats

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flowbus/flowbus/sinks/bus/bustest"
)

func TestValidateNamesTheBadField(t *testing.T) {
	publishers := []struct {
		name string
		cfg  PublisherConfig
		want string // "" = valid
	}{
		{"the zero config is valid", PublisherConfig{}, ""},
		{"a host:port without scheme is rejected", PublisherConfig{Conn: Conn{URL: "127.0.0.1:4222"}}, `url "127.0.0.1:4222": want nats://host:port`},
		{"a kafka URL is rejected", PublisherConfig{Conn: Conn{URL: "kafka://k:9092"}}, `unknown scheme "kafka"`},
		{"several URLs are accepted", PublisherConfig{Conn: Conn{URL: "nats://a:4222, nats://b:4222"}}, ""},
		{"a stream name with a dot is rejected", PublisherConfig{Stream: StreamConfig{Name: "FLOWBUS.FLOWS"}}, `stream: name "FLOWBUS.FLOWS" may not contain`},
		{"a wildcard subject prefix is rejected", PublisherConfig{Stream: StreamConfig{SubjectPrefix: "flowbus.*"}}, "no wildcards"},
		{"a subject prefix ending in a dot is rejected", PublisherConfig{Stream: StreamConfig{SubjectPrefix: "flowbus."}}, "dot-separated tokens"},
		{"a tiny max msg size is rejected", PublisherConfig{Stream: StreamConfig{MaxMsgSize: 10}}, "max msg size 10"},
		{"max bytes below one message are rejected", PublisherConfig{Stream: StreamConfig{MaxBytes: 1000}}, "max bytes 1000 below max msg size"},
		{"a duplicate window longer than max age is rejected", PublisherConfig{Stream: StreamConfig{MaxAge: time.Minute}}, "duplicate window 2m0s longer than max age 1m0s"},
		{"a duplicate window under 100ms is rejected", PublisherConfig{Stream: StreamConfig{Duplicates: time.Millisecond}}, "duplicate window 1ms, want >= 100ms"},
		{"negative max age is rejected", PublisherConfig{Stream: StreamConfig{MaxAge: -time.Hour}}, "negative max age"},
		{"six replicas are rejected", PublisherConfig{Stream: StreamConfig{Replicas: 6}}, "replicas 6"},
		{"negative partitions are rejected", PublisherConfig{Partitions: -1}, "partitions -1"},
		{"a negative ack timeout is rejected", PublisherConfig{AckTimeout: -time.Second}, "negative ack timeout"},
	}
	for _, tc := range publishers {
		t.Run(tc.name, func(t *testing.T) { checkErr(t, tc.cfg.Validate(), tc.want) })
	}
	consumers := []struct {
		name string
		cfg  ConsumerConfig
		want string
	}{
		{"the zero consumer config is valid", ConsumerConfig{}, ""},
		{"an assigned partition out of range is rejected", ConsumerConfig{Partitions: 4, Assigned: []int32{1, 4}}, "assigned partition 4 outside 0..3"},
		{"a partition assigned twice is rejected", ConsumerConfig{Assigned: []int32{2, 2}}, "partition 2 assigned twice"},
		{"a durable name with a space is rejected", ConsumerConfig{Durable: "flow bus"}, "durable"},
		{"a dead-letter stream equal to the stream is rejected", ConsumerConfig{DLQStream: DefaultStream}, "dead-letter stream equals the stream"},
		{"a dead-letter subject inside the flow subjects is rejected", ConsumerConfig{DLQSubject: "flowbus.flows.v1.dlq"}, "lies inside the stream's subjects"},
		{"an ack wait under a second is rejected", ConsumerConfig{AckWait: time.Millisecond}, "ack wait 1ms"},
		{"a negative commit timeout is rejected", ConsumerConfig{CommitTimeout: -time.Second}, "commit timeout -1s, want > 0"},
		{"a pull buffer smaller than two messages is rejected", ConsumerConfig{PullMaxBytes: 1 << 20}, "pull max bytes 1048576 below twice the max msg size"},
		{"a negative max ack pending is rejected", ConsumerConfig{MaxAckPending: -5}, "max ack pending -5"},
	}
	for _, tc := range consumers {
		t.Run(tc.name, func(t *testing.T) { checkErr(t, tc.cfg.Validate(), tc.want) })
	}
	t.Run("the default pull buffer holds two of the stream's largest messages", func(t *testing.T) {
		for _, tc := range []struct{ maxMsg, want int }{{0, 2 << 20}, {512 << 10, 2 << 20}, {4 << 20, 8 << 20}} {
			cfg := ConsumerConfig{Stream: StreamConfig{MaxMsgSize: int32(tc.maxMsg)}}.withDefaults()
			if cfg.PullMaxBytes != tc.want {
				t.Errorf("max msg size %d: pull max bytes %d, want %d", tc.maxMsg, cfg.PullMaxBytes, tc.want)
			}
			checkErr(t, cfg.Validate(), "")
		}
	})
	t.Run("NewPublisher refuses an invalid config", func(t *testing.T) {
		_, err := NewPublisher(PublisherConfig{Partitions: -2})
		checkErr(t, err, "nats publisher: partitions -2")
	})
	t.Run("StartEmbedded refuses an empty store dir", func(t *testing.T) {
		_, _, err := StartEmbedded("", -1)
		checkErr(t, err, "empty store dir")
	})
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("got %v, want valid", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("got %v, want an error containing %q", err, want)
	}
}

// TestPollDropsMessagesTheServerResendsAfterAckWait holds messages
// uncommitted past AckWait: the server sends them again, and Poll must not
// hand them out twice.
func TestPollDropsMessagesTheServerResendsAfterAckWait(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Partitions: 4})
	msgs := bustest.Messages("node-r", 1, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: 4, AckWait: time.Second})
	ds := bustest.PollN(t, c, len(msgs), 10*time.Second)
	repeats := func() int {
		n := 0
		for _, ps := range c.parts {
			n += ps.repeats
		}
		return n
	}
	// Keep polling until the server resent every message at least once
	// (after AckWait, 1 s); none of the resends may come out of Poll.
	for deadline := time.Now().Add(15 * time.Second); repeats() < len(msgs) && time.Now().Before(deadline); {
		ds = append(ds, bustest.PollQuiet(t, c, 250*time.Millisecond)...)
	}
	if r := repeats(); r < len(msgs) {
		t.Fatalf("server resent %d messages after AckWait, want at least %d: the test did not exercise redelivery", r, len(msgs))
	}
	checkDeliveries(t, ds, msgs, 4)

	next := map[int32]int64{}
	for _, d := range ds {
		next[d.Partition] = d.Offset + 1
	}
	if err := c.Commit(ctx, next); err != nil {
		t.Fatalf("commit: %v", err)
	}
	c.Close()
	again := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: 4})
	if rest := bustest.PollQuiet(t, again, 500*time.Millisecond); len(rest) != 0 {
		t.Errorf("%d messages delivered again after everything was committed", len(rest))
	}
}

func TestCommitOfAPartitionNotAssignedFails(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: 4, Assigned: []int32{1, 3}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Poll(ctx); err != context.DeadlineExceeded {
		t.Fatalf("poll of an empty stream: got %v, want context.DeadlineExceeded", err)
	}
	checkErr(t, c.Commit(context.Background(), map[int32]int64{2: 5}), "partition 2 is not assigned")
}

// restartable is an embedded server the test stops and starts again on the
// same port and store, and a publisher (4 partitions) to it.
type restartable struct {
	dir  string
	port int
	s    *server.Server
	url  string
	p    *Publisher
}

func newRestartable(t *testing.T) *restartable {
	r := &restartable{dir: t.TempDir()}
	var err error
	if r.s, r.url, err = StartEmbedded(r.dir, -1); err != nil {
		t.Fatal(err)
	}
	r.port = r.s.Addr().(*net.TCPAddr).Port
	r.p = newPublisher(t, PublisherConfig{Conn: Conn{URL: r.url}, Partitions: 4})
	return r
}

func (r *restartable) stop() { r.s.Shutdown(); r.s.WaitForShutdown() }

func (r *restartable) start(t *testing.T) { r.s, _ = startServer(t, r.dir, r.port) }

// TestTheConsumerKeepsReadingAcrossAServerRestart stops the server between
// two batches: the consumer's readers reconnect by themselves and the second
// batch arrives, nothing twice.
func TestTheConsumerKeepsReadingAcrossAServerRestart(t *testing.T) {
	r := newRestartable(t)
	u, p := r.url, r.p
	msgs := bustest.Messages("node-x", 1, 24)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs[:12]); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: 4})
	ds := bustest.PollN(t, c, 12, 10*time.Second)
	next := map[int32]int64{}
	for _, d := range ds {
		next[d.Partition] = d.Offset + 1
	}
	if err := c.Commit(ctx, next); err != nil {
		t.Fatal(err)
	}
	r.stop()
	time.Sleep(time.Second)
	r.start(t)
	if err := p.Publish(ctx, msgs[12:]); err != nil {
		t.Fatal(err)
	}
	ds = append(ds, bustest.PollN(t, c, 12, 20*time.Second)...)
	ds = append(ds, bustest.PollQuiet(t, c, 300*time.Millisecond)...)
	checkDeliveries(t, ds, msgs, 4)
}

// After a server restart the consumer subscribes every partition again,
// each from its ack floor: what it had handed out and not committed comes
// again and is dropped (the caller has it), what is new comes once, and a
// commit of all of it reaches the server (a new consumer reads nothing).
func TestAfterAServerRestartTheConsumerSubscribesAgainFromItsAckFloor(t *testing.T) {
	r := newRestartable(t)
	u, p := r.url, r.p
	msgs := bustest.Messages("node-y", 1, 24)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs[:12]); err != nil {
		t.Fatal(err)
	}
	w := newLogWatch()
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: 4, Logger: w.log})
	ds := bustest.PollN(t, c, 12, 10*time.Second) // handed out, not committed
	r.stop()
	time.Sleep(time.Second)
	r.start(t)
	if err := p.Publish(ctx, msgs[12:]); err != nil {
		t.Fatal(err)
	}
	ds = append(ds, bustest.PollN(t, c, 12, 20*time.Second)...)
	ds = append(ds, bustest.PollQuiet(t, c, 300*time.Millisecond)...)
	checkDeliveries(t, ds, msgs, 4)
	w.waitFor(t, "subscribed again after the connection came back")
	next := map[int32]int64{}
	for _, d := range ds {
		next[d.Partition] = max(next[d.Partition], d.Offset+1)
	}
	if err := c.Commit(ctx, next); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c2 := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: 4})
	if again := bustest.PollQuiet(t, c2, time.Second); len(again) != 0 {
		t.Fatalf("a new consumer read %d messages again: the commit after the restart did not reach the server", len(again))
	}
}

// A commit while the server is down fails (after CommitTimeout at the
// latest) instead of waiting for an answer that may never come (an aggregator that waited
// for ever in Commit never polled again, so never subscribed again, after
// a NATS restart); once the server is back the same commit succeeds and a
// new consumer reads nothing again.
func TestACommitWhileTheServerIsDownFailsAfterItsTimeout(t *testing.T) {
	r := newRestartable(t)
	u, p := r.url, r.p
	msgs := bustest.Messages("node-z", 1, 12)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: 4, CommitTimeout: 500 * time.Millisecond})
	ds := bustest.PollN(t, c, 12, 10*time.Second)
	next := map[int32]int64{}
	for _, d := range ds {
		next[d.Partition] = max(next[d.Partition], d.Offset+1)
	}
	r.stop()
	done := make(chan error, 1)
	go func() { done <- c.Commit(context.Background(), next) }()
	select {
	case err := <-done:
		// A deadline, or at once the client's refusal to buffer while
		// disconnected: an error either way, not a wait.
		if err == nil {
			t.Fatal("commit with the server down succeeded")
		}
		t.Logf("commit with the server down: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("commit with the server down still waiting after 10s (CommitTimeout 500ms)")
	}
	r.start(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if again := bustest.PollQuiet(t, c, 200*time.Millisecond); len(again) != 0 {
			t.Fatalf("after the restart Poll handed out %d messages again", len(again))
		}
		err := c.Commit(ctx, next)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("commit after the server came back: %v", err)
		}
	}
	c.Close()
	c2 := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: 4})
	if again := bustest.PollQuiet(t, c2, time.Second); len(again) != 0 {
		t.Fatalf("a new consumer read %d messages again: the commit after the restart did not reach the server", len(again))
	}
}
