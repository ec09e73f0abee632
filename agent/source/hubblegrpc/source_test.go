package hubblegrpc

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowbus/flowbus/internal/hubbletest"
	"github.com/flowbus/flowbus/internal/observer/query"
	"github.com/flowbus/flowbus/schemas"
)

var epoch = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// collector runs a Source and keeps what it delivers.
type collector struct {
	src    *Source
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error

	mu    sync.Mutex
	uuids map[string]int // delivered how many times
	flows []schemas.Flow
	lost  map[flowpb.LostEventSource]uint64
}

func startSource(t *testing.T, cfg Config) *collector {
	t.Helper()
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 5 * time.Millisecond
	}
	reg := prometheus.NewRegistry()
	src, err := New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{src: src, reg: reg, done: make(chan error, 1), uuids: map[string]int{}, lost: map[flowpb.LostEventSource]uint64{}}
	out := make(chan []schemas.Flow, 4)
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		err := src.Run(ctx, out, func(s flowpb.LostEventSource, n uint64) {
			c.mu.Lock()
			c.lost[s] += n
			c.mu.Unlock()
		})
		close(out)
		c.done <- err
	}()
	go func() {
		for b := range out {
			c.mu.Lock()
			for _, f := range b {
				c.uuids[f.UUID]++
				c.flows = append(c.flows, f)
			}
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop ends Run (it saves its position) and returns its error.
func (c *collector) stop(t *testing.T) error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	c.cancel = nil
	select {
	case err := <-c.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the source did not stop")
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.flows)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startUpstream(t *testing.T, cfg hubbletest.UpstreamConfig) *hubbletest.Upstream {
	t.Helper()
	u, err := hubbletest.StartUpstream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

// The source follows one node's Hubble through two restarts of Hubble
// (its ring comes back empty) and one of its own (it resumes from its state
// file while the node goes on): every flow the node held when the source
// asked is delivered exactly once; what a resumed stream sends again is
// dropped and counted; a resume that finds the node restarted is counted
// as a gap.
func TestResumesAcrossRestartsWithoutDuplicatesOrLoss(t *testing.T) {
	u := startUpstream(t, hubbletest.UpstreamConfig{Node: "node-a", RingSize: 4096})
	state := filepath.Join(t.TempDir(), "hubble.state")
	cl := hubbletest.NewCluster(1, epoch, "node-a")
	var fed []schemas.Flow
	feed := func(n int) {
		t.Helper()
		flows := hubbletest.Flows(cl.NextEvents(n))
		if err := u.FeedPaced(flows, 1024, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		fed = append(fed, flows...)
	}
	c := startSource(t, Config{Server: u.Target(), StateFile: state})
	feed(3000)
	waitFor(t, "the first flows", func() bool { return c.count() == len(fed) })

	var inRing int // flows fed to the running instance
	for restart := 1; restart <= 2; restart++ {
		u.Stop()
		time.Sleep(50 * time.Millisecond) // the source retries in vain
		if err := u.Start(); err != nil {
			t.Fatal(err)
		}
		inRing = len(fed)
		feed(2000)
		inRing = len(fed) - inRing
		waitFor(t, fmt.Sprintf("the flows after restart %d", restart), func() bool { return c.count() == len(fed) })
	}
	if g := testutil.ToFloat64(c.src.m.gaps.WithLabelValues("node-a")); g != 2 {
		t.Errorf("%v resume gaps, want 2 (one per Hubble restart)", g)
	}

	// The source stops; the node goes on with fewer flows than its ring
	// holds; a new source resumes from the state file.
	if err := c.stop(t); err != nil {
		t.Fatal(err)
	}
	before := c.count()
	flows := hubbletest.Flows(cl.NextEvents(1500))
	if err := u.Feed(flows); err != nil {
		t.Fatal(err)
	}
	c2 := startSource(t, Config{Server: u.Target(), StateFile: state})
	waitFor(t, "the flows fed while the source was down", func() bool { return c2.count() == len(flows) })
	fed = append(fed, flows...)
	feed(1000)
	waitFor(t, "the flows after the source's restart", func() bool { return c2.count() == len(fed)-before })
	time.Sleep(50 * time.Millisecond)

	seen := map[string]int{}
	for _, col := range []*collector{c, c2} {
		col.mu.Lock()
		for u, n := range col.uuids {
			seen[u] += n
		}
		col.mu.Unlock()
	}
	for _, f := range fed {
		if seen[f.UUID] != 1 {
			t.Fatalf("flow %s delivered %d times, want once", f.UUID, seen[f.UUID])
		}
	}
	if len(seen) != len(fed) {
		t.Errorf("%d distinct flows delivered, %d fed", len(seen), len(fed))
	}
	// The restarted ring held what was fed since the restart, delivered
	// before and within the 2 s overlap: sent again, and dropped.
	if d := testutil.ToFloat64(c2.src.m.duplicates); d != float64(inRing) {
		t.Errorf("%v duplicates dropped, want %d", d, inRing)
	}
	if g := testutil.ToFloat64(c2.src.m.gaps.WithLabelValues("node-a")); g != 0 {
		t.Errorf("%v gaps after the source's own restart, want 0", g)
	}
	if u.Lost() != 0 {
		t.Errorf("the upstream reported %d lost", u.Lost())
	}
}

// A reader that falls more than the ring behind is told how many events it
// lost: the source reports exactly the upstream's own count.
func TestLostEventsAreReportedAsTheServerCountsThem(t *testing.T) {
	u := startUpstream(t, hubbletest.UpstreamConfig{Node: "node-a", RingSize: 1024})
	c := startSource(t, Config{Server: u.Target()})
	cl := hubbletest.NewCluster(2, epoch, "node-a")
	first := hubbletest.Flows(cl.NextEvents(500))
	if err := u.FeedPaced(first, 256, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first flows", func() bool { return c.count() == len(first) })
	burst := hubbletest.Flows(cl.NextEvents(3000))
	if err := u.Feed(burst); err != nil { // one write: the reader was caught up, loses all but the ring's 1024
		t.Fatal(err)
	}
	want := uint64(len(burst) - 1024)
	waitFor(t, "the rest of the burst", func() bool { return c.count() == len(first)+1024 })
	waitFor(t, "the lost events", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.lost[flowpb.LostEventSource_HUBBLE_RING_BUFFER] == want
	})
	if u.Lost() != want {
		t.Errorf("upstream counted %d lost, want %d", u.Lost(), want)
	}
	if v := testutil.ToFloat64(c.src.m.lost.WithLabelValues("HUBBLE_RING_BUFFER")); v != float64(want) {
		t.Errorf("flowbus_source_lost_events_total = %v, want %d", v, want)
	}
	// The survivors are the burst's newest 1024.
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range burst[len(burst)-1024:] {
		if c.uuids[f.UUID] != 1 {
			t.Fatalf("flow %s of the burst's newest delivered %d times", f.UUID, c.uuids[f.UUID])
		}
	}
}

// Cilium's socket: a unix:// target (a bare path is taken as one), and the
// server-side filters given in hubble observe's syntax.
func TestUnixSocketAndServerSideFilters(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hubble.sock")
	u := startUpstream(t, hubbletest.UpstreamConfig{Node: "node-a", Addr: "unix://" + sock})
	words, err := query.SplitArgs("--not --type policy-verdict --not --type l7")
	if err != nil {
		t.Fatal(err)
	}
	white, black, err := query.FilterArgs(words)
	if err != nil {
		t.Fatal(err)
	}
	c := startSource(t, Config{Server: sock, Whitelist: white, Blacklist: black})
	events := hubbletest.NewCluster(3, epoch, "node-a").NextEvents(3500) // fewer than the ring holds: no loss
	if err := u.Feed(hubbletest.Flows(events)); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, e := range events {
		if e.Flow.EventType != 5 && e.Flow.EventType != 129 {
			want++
		}
	}
	waitFor(t, fmt.Sprintf("%d flows that pass the filters", want), func() bool { return c.count() == want })
	time.Sleep(20 * time.Millisecond)
	if n := c.count(); n != want {
		t.Errorf("%d flows, want %d", n, want)
	}
	if !strings.HasPrefix(c.src.cfg.Server, "unix://") {
		t.Errorf("server %q: a bare path is not taken as a socket", c.src.cfg.Server)
	}
	nodes := c.src.Nodes()
	if len(nodes) != 1 || nodes[0].GetName() != "node-a" || nodes[0].GetState().String() != "NODE_CONNECTED" {
		t.Errorf("nodes %v, want node-a connected", nodes)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no server", Config{}, "hubble server is empty"},
		{"a URL", Config{Server: "https://relay:4245"}, "not a URL"},
		{"a certificate without its key", Config{Server: "relay:4245", TLS: tlsOf(true, "", "c.crt", "")}, "both its certificate and its key"},
		{"TLS files without TLS", Config{Server: "relay:4245", TLS: tlsOf(false, "ca.crt", "", "")}, "TLS is not enabled"},
		{"a negative overlap", Config{Server: "relay:4245", ResumeOverlap: -time.Second}, "overlap"},
	} {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	if err := (Config{Server: "unix:///var/run/cilium/hubble.sock"}).Validate(); err != nil {
		t.Errorf("the Cilium socket: %v", err)
	}
}
