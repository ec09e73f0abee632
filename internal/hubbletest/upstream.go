package hubbletest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowbus/flowbus/internal/observer"
	"github.com/flowbus/flowbus/schemas"
)

// UpstreamConfig configures an Upstream.
type UpstreamConfig struct {
	Node string // node name the server reports
	// Addr is where it listens: "" for a free 127.0.0.1 port (kept across
	// restarts), host:port, or unix:///path for a socket as Cilium's.
	Addr     string
	RingSize int // events the ring holds (default observer.DefaultRingSize, Hubble's 4096)
	TLS      observer.ServerTLS
}

// Upstream is a node's Hubble server for tests and benchmarks: flowbus's
// Observer server over a ring of the last RingSize events, with Hubble's
// behaviour (since, first, follow; a reader that falls behind is told how
// many events it lost). Stop and Start restart it as a Cilium agent
// restarts: same address, an empty ring. Safe for concurrent use.
type Upstream struct {
	cfg  UpstreamConfig
	addr string // listen address (host:port or a socket path)

	mu        sync.Mutex
	ring      *observer.Ring
	srv       *observer.Server
	cancel    context.CancelFunc
	done      chan error
	pastLost  float64 // counters of stopped instances
	pastSent  float64
	fed       atomic.Uint64
	instances int
}

// StartUpstream starts an Upstream.
func StartUpstream(cfg UpstreamConfig) (*Upstream, error) {
	if cfg.RingSize == 0 {
		cfg.RingSize = observer.DefaultRingSize
	}
	u := &Upstream{cfg: cfg, addr: strings.TrimPrefix(cfg.Addr, "unix://")}
	if u.addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		u.addr = l.Addr().String()
		l.Close()
	}
	return u, u.Start()
}

// Target is the address a client dials (unix:///path for a socket).
func (u *Upstream) Target() string {
	if strings.HasPrefix(u.cfg.Addr, "unix://") {
		return "unix://" + u.addr
	}
	return u.addr
}

// Start starts a new instance with an empty ring (a no-op when running).
func (u *Upstream) Start() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cancel != nil {
		return nil
	}
	ring := observer.NewRing(u.cfg.RingSize, nil)
	srv, err := observer.NewServer(observer.Config{NodeName: u.cfg.Node, Version: "hubbletest", TLS: u.cfg.TLS}, ring, nil, nil)
	if err != nil {
		return err
	}
	var lis net.Listener
	for try := 0; ; try++ {
		if strings.HasPrefix(u.cfg.Addr, "unix://") {
			os.Remove(u.addr)
			lis, err = net.Listen("unix", u.addr)
		} else {
			lis, err = net.Listen("tcp", u.addr)
		}
		if err == nil || try == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond) // the previous instance's socket may linger briefly
	}
	if err != nil {
		return fmt.Errorf("upstream %s: %w", u.cfg.Node, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	u.ring, u.srv, u.cancel, u.done = ring, srv, cancel, done
	u.instances++
	return nil
}

// Stop stops the running instance as a crash would: streams are cut and
// the ring is gone, with whatever it held that was not sent.
func (u *Upstream) Stop() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cancel == nil {
		return
	}
	u.cancel()
	<-u.done
	u.pastLost += testutil.ToFloat64(u.srv.ReaderLost())
	u.pastSent += testutil.ToFloat64(u.srv.Sent())
	u.ring, u.srv, u.cancel, u.done = nil, nil, nil, nil
}

// Restart stops the running instance and starts a new one, empty.
func (u *Upstream) Restart() error {
	u.Stop()
	return u.Start()
}

// Close stops the upstream for good.
func (u *Upstream) Close() { u.Stop() }

// Feed writes flows into the running instance's ring in one write (a
// burst: a reader more than RingSize behind afterwards loses the oldest).
// It fails when the upstream is stopped.
func (u *Upstream) Feed(flows []schemas.Flow) error {
	u.mu.Lock()
	ring := u.ring
	u.mu.Unlock()
	if ring == nil {
		return errors.New("upstream " + u.cfg.Node + " is stopped")
	}
	ring.Observe(flows)
	u.fed.Add(uint64(len(flows)))
	return nil
}

// FeedPaced writes flows in chunks of at most slack, each once the readers
// have been sent all but slack of what was fed, so that a reader that
// keeps up loses nothing; it gives up after timeout without progress.
func (u *Upstream) FeedPaced(flows []schemas.Flow, slack int, timeout time.Duration) error {
	for len(flows) > 0 {
		n := min(slack, len(flows))
		deadline := time.Now().Add(timeout)
		for u.Fed()+uint64(n) > u.Sent()+u.Lost()+uint64(slack) {
			if time.Now().After(deadline) {
				return fmt.Errorf("upstream %s: readers stalled: fed %d, sent %d, lost %d", u.cfg.Node, u.Fed(), u.Sent(), u.Lost())
			}
			time.Sleep(time.Millisecond)
		}
		if err := u.Feed(flows[:n]); err != nil {
			return err
		}
		flows = flows[n:]
	}
	return nil
}

// Fed returns the flows written into every instance's ring.
func (u *Upstream) Fed() uint64 { return u.fed.Load() }

// Sent returns the flows every instance sent to its readers.
func (u *Upstream) Sent() uint64 { return u.total(&u.pastSent, (*observer.Server).Sent) }

// Lost returns the events every instance reported lost to its readers
// (LostEvents for readers that fell more than RingSize behind): the
// upstream's own count of what it dropped.
func (u *Upstream) Lost() uint64 { return u.total(&u.pastLost, (*observer.Server).ReaderLost) }

// total adds the running instance's counter to the stopped instances' past.
func (u *Upstream) total(past *float64, counter func(*observer.Server) prometheus.Counter) uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv == nil {
		return uint64(*past)
	}
	return uint64(*past + testutil.ToFloat64(counter(u.srv)))
}

// Instances returns how many times the upstream was started.
func (u *Upstream) Instances() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.instances
}

// Flows returns the flows of events.
func Flows(events []Event) []schemas.Flow {
	out := make([]schemas.Flow, len(events))
	for i := range events {
		out[i] = events[i].Flow
	}
	return out
}

// ByNode splits events by the node that observed them, keeping their order.
func ByNode(events []Event) map[string][]Event {
	out := map[string][]Event{}
	for _, e := range events {
		out[e.Flow.NodeName] = append(out[e.Flow.NodeName], e)
	}
	return out
}
