package nats

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/syncbuf"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
)

// logWatch is a debug-level logger whose output a test can wait on.
type logWatch struct {
	buf syncbuf.Buffer
	log *slog.Logger
}

func newLogWatch() *logWatch {
	w := &logWatch{}
	w.log = slog.New(slog.NewTextHandler(&w.buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return w
}

func (w *logWatch) waitFor(t *testing.T, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(w.buf.String(), what); {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", what, w.buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A connection we close ourselves (every run's shutdown, the demo's last
// line) is not reported; a server that goes away is.
func TestOnlyALostServerIsLoggedAsADisconnect(t *testing.T) {
	s, u := startServer(t, t.TempDir(), -1)
	w := newLogWatch()
	nc, err := connect(Conn{URL: u}, w.log)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	time.Sleep(200 * time.Millisecond) // callbacks run on their own goroutine
	if got := w.buf.String(); got != "" {
		t.Fatalf("our own Close was logged:\n%s", got)
	}

	nc, err = connect(Conn{URL: u}, w.log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s.Shutdown()
	s.WaitForShutdown()
	w.waitFor(t, `level=INFO msg="nats disconnected"`)
}

// nats.go closes a connection for good on some server errors; with
// unlimited reconnects that is the one way publishing stops for ever, so it
// is a warning with the server's error.
func TestAConnectionTheClientGivesUpOnIsAWarning(t *testing.T) {
	w := newLogWatch()
	nc, err := connect(Conn{URL: refusingServer(t)}, w.log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w.waitFor(t, `level=WARN msg="nats connection closed by the client library and not retried`)
	w.waitFor(t, `err="nats: Authentication Timeout"`)
}

// After nats.go closes its connection for good, Publish dials again and
// the messages reach the server that now accepts us: no restart needed.
func TestPublishDialsAgainAfterTheClientGaveUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	refused := make(chan struct{})
	go func() {
		defer close(refused)
		refuseOnce(ln)
	}()
	w := newLogWatch()
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: "nats://" + addr.String()}, Partitions: testPartitions, Logger: w.log})
	w.waitFor(t, `level=WARN msg="nats connection closed by the client library`)
	ln.Close()
	<-refused
	startServer(t, t.TempDir(), addr.Port)

	msgs := bustest.Messages("node-r", 1, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs); err != nil {
		t.Fatalf("publish after the client gave up: %v", err)
	}
	w.waitFor(t, "nats: dialled again")
	if n := streamMsgs(t, "nats://"+addr.String(), DefaultStream); n != 20 {
		t.Fatalf("stream holds %d messages, want 20", n)
	}
}

// A server that refuses the redial too, before the stream was ever set up:
// Publish waits for the next redial instead of failing.
func TestPublishWaitsForTheNextRedialBeforeTheStreamIsSetUp(t *testing.T) {
	defer func(d time.Duration) { redialEvery = d }(redialEvery)
	redialEvery = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)
	refused := make(chan struct{})
	go func() {
		defer close(refused)
		refuseOnce(ln) // the first connection
		refuseOnce(ln) // the first redial
	}()
	w := newLogWatch()
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: "nats://" + addr.String()}, Partitions: testPartitions, Logger: w.log})
	msgs := bustest.Messages("node-w", 1, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Publish(ctx, msgs) }()
	select {
	case <-refused:
	case err := <-done:
		t.Fatalf("publish returned %v while the server refused every connection", err)
	case <-ctx.Done():
		t.Fatal("no second connection to refuse: publish did not dial again")
	}
	ln.Close()
	startServer(t, t.TempDir(), addr.Port)
	if err := <-done; err != nil {
		t.Fatalf("publish across two refused connections: %v", err)
	}
	if n := streamMsgs(t, "nats://"+addr.String(), DefaultStream); n != 10 {
		t.Fatalf("stream holds %d messages, want 10", n)
	}
}

func TestPublishAfterCloseFails(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	p := newPublisher(t, PublisherConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	p.Close()
	if err := p.Publish(context.Background(), bustest.Messages("node-c", 1, 1)); !errors.Is(err, errPublisherClosed) {
		t.Fatalf("Publish after Close = %v, want %v", err, errPublisherClosed)
	}
}

// refusingServer returns the URL of a server that refuses its first client
// as refuseOnce does.
func refusingServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go refuseOnce(ln)
	return "nats://" + ln.Addr().String()
}

// refuseOnce serves one client on ln like a NATS server that completes the
// handshake and then sends an error nats.go does not retry.
func refuseOnce(ln net.Listener) {
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(`INFO {"server_id":"fake","version":"2.10.0","proto":1,"max_payload":1048576}` + "\r\n"))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.HasPrefix(line, "PING") {
			break
		}
	}
	c.Write([]byte("PONG\r\n-ERR 'Authentication Timeout'\r\n"))
	r.ReadString('\n') // until the client hangs up
}

// A consumer whose connection nats.go closed for good says so from Poll
// instead of waiting for ever; the aggregator then stops without
// committing, and a restart resumes after the last commit.
func TestPollFailsWhenTheClientGaveUp(t *testing.T) {
	w := newLogWatch()
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: refusingServer(t)}, Partitions: testPartitions, Logger: w.log})
	w.waitFor(t, `level=WARN msg="nats connection closed by the client library`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Poll(ctx)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "connection closed") {
		t.Fatalf("Poll = %v (context: %v), want the closed connection's error at once", err, ctx.Err())
	}
}

// The same when the connection goes after the consumers were set up: a
// Poll waiting for messages notices within a second or so.
func TestAWaitingPollFailsWhenTheClientGaveUp(t *testing.T) {
	_, u := startServer(t, t.TempDir(), -1)
	c := newConsumer(t, ConsumerConfig{Conn: Conn{URL: u}, Partitions: testPartitions})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Poll(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first Poll on an empty stream = %v, want the deadline", err)
	}
	c.nc.Close() // as nats.go does on a server error it does not retry
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Poll(ctx)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "closed the connection") {
		t.Fatalf("Poll = %v after %v, want the closed connection's error", err, time.Since(start))
	}
}
