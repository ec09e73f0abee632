package aggregator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/flowbus/flowbus/sinks/bus"
)

// memConsumer serves a memLog through the consumer interface, as a bus
// consumer holding every partition would: the first Poll assigns them all,
// Close revokes them, and each Poll returns up to batch messages of every
// partition. Once everything was polled, Poll calls drained and waits for
// ctx. With failAt n, the n-th Poll fails with err instead.
type memConsumer struct {
	l                     *memLog
	batch                 int
	onAssigned, onRevoked func([]int32)
	drained               func()
	failAt                int
	err                   error

	polls     int
	pos       map[int32]int64 // next offset to poll
	committed map[int32]int64
	atFail    map[int32]int64 // committed when the failAt-th Poll came
	closed    bool
}

func (c *memConsumer) all() []int32 {
	ps := make([]int32, len(c.l.parts))
	for i := range ps {
		ps[i] = int32(i)
	}
	return ps
}

func (c *memConsumer) Poll(ctx context.Context) ([]bus.Delivery, error) {
	if c.closed {
		return nil, fmt.Errorf("mem %w", bus.ErrClosed)
	}
	if c.polls++; c.polls == 1 {
		c.onAssigned(c.all())
	}
	if c.polls == c.failAt {
		c.atFail = maps.Clone(c.committed)
		return nil, c.err
	}
	var out []bus.Delivery
	for _, p := range c.all() {
		for i := 0; i < c.batch && c.pos[p] < int64(len(c.l.parts[p])); i++ {
			out = append(out, c.l.message(p, c.pos[p]))
			c.pos[p]++
		}
	}
	if len(out) == 0 {
		c.drained()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return out, nil
}

func (c *memConsumer) Commit(_ context.Context, next map[int32]int64) error {
	maps.Copy(c.committed, next)
	return nil
}

func (c *memConsumer) DeadLetter(context.Context, bus.Delivery, string) error { return nil }

func (c *memConsumer) Close() error {
	if !c.closed {
		c.onRevoked(c.all())
		c.closed = true
	}
	return nil
}

// runMem runs the driver loop over a memConsumer of l until it drained l
// (then cancels), or fails.
func runMem(a *Aggregator, l *memLog, failAt int, failErr error) (*memConsumer, error) {
	a.decode = l.fakeDecode
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &memConsumer{l: l, batch: 3, drained: cancel, failAt: failAt, err: failErr,
		pos: map[int32]int64{}, committed: map[int32]int64{}}
	err := run(ctx, a, func(d *driver) (consumer, error) {
		c.onAssigned, c.onRevoked = d.onAssigned, d.onRevoked
		return c, nil
	})
	return c, err
}

func TestTheDriverLoop(t *testing.T) {
	g := generate(3, 30_000, 6*time.Minute, 500)
	msgs := split(g.flows, 3, 200)

	t.Run("reading a log to its end and stopping writes every window and commits every partition's end", func(t *testing.T) {
		l := newMemLog(msgs, 3)
		out := t.TempDir()
		a, _ := newTestAggregator(t, Config{Out: out})
		c, err := runMem(a, l, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		for p := range l.parts {
			if got, want := c.committed[int32(p)], int64(len(l.parts[p])); got != want {
				t.Errorf("partition %d: committed %d, want its end %d", p, got, want)
			}
		}
		if !c.closed || len(a.Assigned()) != 0 {
			t.Errorf("after the loop: consumer closed %v, %d partitions still assigned; want closed, none", c.closed, len(a.Assigned()))
		}
		checkExact(t, out, g)
	})

	t.Run("a poll error stops the loop at once, committing nothing more", func(t *testing.T) {
		l := newMemLog(msgs, 3)
		a, _ := newTestAggregator(t, Config{Out: t.TempDir()})
		errPoll := errors.New("broker gone")
		c, err := runMem(a, l, 5, errPoll)
		if !errors.Is(err, errPoll) {
			t.Fatalf("loop returned %v, want the poll error", err)
		}
		if !maps.Equal(c.committed, c.atFail) {
			t.Errorf("committed %v after the poll error, want what was committed before it, %v", c.committed, c.atFail)
		}
		if !c.closed || len(a.Assigned()) != 0 {
			t.Errorf("after the error: consumer closed %v, %d partitions still assigned; want closed, none", c.closed, len(a.Assigned()))
		}
	})

	t.Run("a consumer that reports itself closed ends the loop without an error", func(t *testing.T) {
		l := newMemLog(msgs, 3)
		a, _ := newTestAggregator(t, Config{Out: t.TempDir()})
		if _, err := runMem(a, l, 2, fmt.Errorf("mem %w", bus.ErrClosed)); err != nil {
			t.Fatalf("loop returned %v, want nil", err)
		}
	})
}

// progress counts the distinct (partition, offset) pairs processed by any
// aggregator of a test and cancels when all total are in.
type progress struct {
	mu     sync.Mutex
	seen   map[[2]int64]bool
	total  int
	done   chan struct{}
	closed bool
}

func newProgress(total int) *progress {
	return &progress{seen: make(map[[2]int64]bool), total: total, done: make(chan struct{})}
}

func (p *progress) hook(next func(string, *bus.Delivery) error) func(string, *bus.Delivery) error {
	return func(point string, m *bus.Delivery) error {
		if point == "message" {
			p.mu.Lock()
			p.seen[[2]int64{int64(m.Partition), m.Offset}] = true
			if len(p.seen) == p.total && !p.closed {
				p.closed = true
				close(p.done)
			}
			p.mu.Unlock()
		}
		if next != nil {
			return next(point, m)
		}
		return nil
	}
}

// run runs f until p is done, then cancels f's context (a clean shutdown)
// and returns what f returns; or returns f's error if f stops first, or
// an error after 3 minutes.
func (p *progress) run(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- f(ctx) }()
	select {
	case <-p.done:
		cancel()
		return <-errc
	case err := <-errc:
		return err
	case <-time.After(3 * time.Minute):
		cancel()
		<-errc
		return errors.New("timed out")
	}
}
