//go:build linux

package ebpf

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/agent/l7/fqdn"
	"github.com/flowbus/flowbus/agent/l7/stream"
	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/schemas"
)

// Source is the kernel flow source: it runs a bpf.Collector and turns its
// events into flow records. Run is called once.
type Source struct {
	cfg Config
	log *slog.Logger

	coll  atomic.Pointer[bpf.Collector]
	flows atomic.Uint64 // records sent downstream
	view  atomic.Pointer[view]
	// names holds the pods' DNS answers (nil without L7 on a DNS port);
	// l7metrics the L7 tracker's counters (nil without L7).
	names     *fqdn.Cache
	l7metrics *stream.Collector
	dp        atomic.Pointer[datapath]
	pol       policyStats
	// free holds batches the agent handed back (Recycle), to be filled
	// again instead of allocating (and zeroing) a new one per send.
	free chan []schemas.Flow

	// syncMu orders the two writers of the kernel's endpoint and policy
	// maps: a new cluster snapshot (follow) and a new set of interfaces
	// (the collector's BeforeAttach). cur and curIfs are what was applied.
	syncMu sync.Mutex
	cur    *cluster.Snapshot
	curIfs map[uint32]string

	sockLB atomic.Pointer[sockLB] // while Run runs, with Config.SockLB (socklb.go)
}

// policyStats are the figures of the last policy sync, for metrics.
type policyStats struct {
	syncs, syncErrors atomic.Uint64
	revision          atomic.Uint64
	endpoints         atomic.Int64
	rejected          atomic.Int64 // policies the last compile rejected
	failClosed        atomic.Int64 // endpoint directions that failed closed
	collisions        atomic.Int64 // identities that did not get their hash's number
}

// New returns a Source. reg may be nil; otherwise the source registers its
// kernel and policy figures there (see Describe).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{cfg: cfg, log: log, free: make(chan []schemas.Flow, freeBatches)}
	if cfg.L7 != nil {
		s.l7metrics = stream.NewCollector()
		for _, proto := range cfg.L7.Ports {
			if proto == stream.DNS || proto == stream.Auto {
				s.names = fqdn.New(cfg.Names)
				break
			}
		}
	}
	if cfg.Cluster == nil {
		log.Warn("no view of the cluster (--endpoints or --endpoints-source kubernetes): peers cannot be told apart from " +
			"the world, so a connection between two attached pods counts at both pods' interfaces in rollups, and no " +
			"policy is enforced")
	}
	if reg != nil {
		if err := reg.Register(s); err != nil {
			return nil, fmt.Errorf("ebpf source: register metrics: %w", err)
		}
		if s.l7metrics != nil {
			if err := reg.Register(s.l7metrics); err != nil {
				return nil, fmt.Errorf("ebpf source: register L7 metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Name returns "ebpf".
func (s *Source) Name() string { return "ebpf" }

// Counters returns the kernel counters, or false before Run loaded the programs.
func (s *Source) Counters() (bpf.Counters, bool) {
	c := s.coll.Load()
	if c == nil {
		return bpf.Counters{}, false
	}
	n, err := c.Counters()
	return n, err == nil
}

// Stats returns the collector's userspace figures (zero before Run).
func (s *Source) Stats() bpf.Stats {
	if c := s.coll.Load(); c != nil {
		return c.Stats()
	}
	return bpf.Stats{}
}

// Run loads and attaches the programs, sends flow batches on out until ctx
// ends, then reports the flows still in the kernel map and returns nil.
// Kernel ring buffer losses are reported through lost as
// PERF_EVENT_RING_BUFFER, once a second and at the end.
//
// Run blocks on out when downstream is slow: the kernel never waits, its ring
// buffer overflows into the loss counter instead.
func (s *Source) Run(ctx context.Context, out chan<- []schemas.Flow, lost func(flowpb.LostEventSource, uint64)) error {
	var first *cluster.Snapshot
	if st := s.cfg.Cluster; st != nil {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.FirstSnapshotWait)
		first, _ = st.Wait(wctx, 0)
		cancel()
		if first == nil && ctx.Err() == nil {
			s.log.Warn("no cluster snapshot yet: attaching without one (flows carry addresses only, no policy) until it comes",
				"waited", s.cfg.FirstSnapshotWait)
		}
	}
	kcfg := s.cfg.Kernel
	if s.cfg.Cluster != nil {
		// An interface's endpoint and policy are written before its
		// programs are attached: no packet is seen without them.
		kcfg.BeforeAttach = func(next []bpf.Interface) {
			ifs := make(map[uint32]string, len(next))
			for _, i := range next {
				ifs[uint32(i.Index)] = i.Name
			}
			s.sync(nil, ifs)
		}
	}
	if s.cfg.L7 != nil {
		kcfg.L7 = kernelL7(s.cfg.L7, kcfg.L7.RingBufSize)
	}
	coll, err := bpf.New(kcfg, s.log)
	if err != nil {
		return fmt.Errorf("ebpf source: %w", err)
	}
	s.coll.Store(coll)
	closeColl := coll.Close
	if dir := s.cfg.PinDir; dir != "" {
		if err := coll.PinMaps(dir); err != nil {
			s.log.Warn("pin the kernel's maps (flowbus bpf and flowbus audit will not find them)", "dir", dir, "err", err)
		} else {
			s.log.Info("kernel maps pinned", "dir", dir)
			closeColl = func() error { // the pins go while the maps are still open: Unpin compares them
				if err := coll.UnpinMaps(dir); err != nil {
					s.log.Warn("unpin the kernel's maps", "dir", dir, "err", err)
				}
				return coll.Close()
			}
		}
	}
	var l7s *l7sink
	l7done := make(chan error, 1)
	// The L7 reader stops with Run, also when Run fails.
	l7ctx, stopL7 := context.WithCancel(ctx)
	defer stopL7()
	if s.cfg.L7 != nil {
		if l7s, err = newL7Sink(s, out); err != nil {
			closeColl()
			return fmt.Errorf("ebpf source: %w", err)
		}
		go func() { l7done <- coll.RunL7(l7ctx, l7s) }()
	} else {
		l7done <- nil
	}
	sk := &sink{batcher: newBatcher(s, out), lost: lost, coll: coll}
	fctx, stopFollow := context.WithCancel(ctx)
	followed := make(chan struct{})
	if s.cfg.Cluster != nil {
		d := newDatapath(coll.Policy(), identity.Allocator{ClusterName: s.cfg.ClusterName, Node: s.cfg.Node})
		d.enforce = s.cfg.EnforcePolicy
		s.dp.Store(d)
		s.sync(first, map[uint32]string{})
		go func() {
			defer close(followed)
			s.follow(fctx, first)
		}()
	} else {
		close(followed)
	}
	stopLB, err := s.startSockLB(ctx, out)
	if err != nil {
		stopFollow()
		<-followed
		closeColl()
		return fmt.Errorf("ebpf source: %w", err)
	}
	runErr := coll.Run(ctx, sk)
	stopFollow()
	<-followed
	stopLB()
	sk.reportLost()
	sk.send()
	stopL7()
	if err := <-l7done; err != nil {
		s.log.Warn("L7 capture", "err", err)
	}
	if l7s != nil {
		l7s.close()
	}
	if err := closeColl(); err != nil {
		s.log.Warn("close ebpf collector", "err", err)
	}
	if runErr != nil {
		return fmt.Errorf("ebpf source: %w", runErr)
	}
	return nil
}

// follow applies every cluster snapshot after first to the kernel's
// identity and policy maps and to the view flows are enriched with. It
// returns when ctx is done.
func (s *Source) follow(ctx context.Context, first *cluster.Snapshot) {
	var rev uint64
	if first != nil {
		rev = first.Revision
	}
	for {
		next, err := s.cfg.Cluster.Wait(ctx, rev)
		if err != nil {
			return
		}
		rev = next.Revision
		s.sync(next, nil)
	}
}

// sync applies snap (nil: the last one) on the interfaces ifs (nil: the
// last set) when either changed. Without a snapshot yet there is nothing
// to apply; the interfaces are remembered for when it comes.
func (s *Source) sync(snap *cluster.Snapshot, ifs map[uint32]string) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	changed := false
	if snap != nil && snap != s.cur {
		s.cur, changed = snap, true
	}
	if ifs != nil && !maps.Equal(ifs, s.curIfs) {
		s.curIfs, changed = ifs, true
	}
	d := s.dp.Load()
	if !changed || s.cur == nil || d == nil {
		return
	}
	s.apply(d, withInterfaces(s.cur, s.cfg.Node, s.curIfs, routeIfIndex), s.curIfs)
}

// apply syncs one snapshot and publishes its view.
func (s *Source) apply(d *datapath, snap *cluster.Snapshot, attached map[uint32]string) {
	start := time.Now()
	got, err := d.apply(snap, attached)
	s.pol.syncs.Add(1)
	if err != nil {
		s.pol.syncErrors.Add(1)
		s.log.Warn("policy and identity maps partly written", "revision", snap.Revision, "err", err)
	}
	s.view.Store(newView(snap, got.IDs, attached))
	s.pol.revision.Store(uint64(got.Revision))
	s.pol.endpoints.Store(int64(got.Endpoints))
	s.pol.rejected.Store(int64(len(got.Result.Errors)))
	s.pol.failClosed.Store(int64(got.Result.Stats.FailedClosed))
	s.pol.collisions.Store(int64(len(got.IDs.Collisions)))
	for _, e := range got.Result.Errors {
		s.log.Warn("policy rejected; the endpoints it selects fail closed", "policy", e.Policy.String(), "field", e.Field, "err", e.Err)
	}
	s.log.Info("cluster view applied", "snapshot", snap.Revision, "source", snap.Source, "pods", len(snap.Pods),
		"endpoints", got.Endpoints, "policy_revision", got.Revision, "enforce", d.enforce, "took", time.Since(start).Round(time.Microsecond))
}

// sink converts events on the collector's goroutine.
type sink struct {
	batcher
	lost     func(flowpb.LostEventSource, uint64)
	coll     *bpf.Collector
	lastLost uint64
	perCPU   []uint64 // reportLost's buffer
	nextTick time.Time
}

func (k *sink) Event(ev *bpf.Event) {
	if ev.Kind == bpf.EventFlowStart {
		return // a flow is reported when it ends or times out
	}
	if ev.Continued && ev.PacketsFwd+ev.PacketsRev == 0 {
		// A later record of a flow with nothing since its last one (a
		// verdict change right after a record): no traffic, no event.
		return
	}
	var names func(uint32) []string
	if d := k.src.dp.Load(); d != nil {
		names = d.policyNames
	}
	k.batch = append(k.batch, schemas.Flow{})
	f := &k.batch[len(k.batch)-1]
	toFlow(ev, k.src.cfg.Node, k.src.view.Load(), names, f)
	if k.src.names != nil {
		addNames(f, k.src.names)
	}
	if pv, ok := policyVerdict(f, ev); ok {
		k.batch = append(k.batch, pv)
	}
	if k.full() {
		k.send()
	}
}

func (k *sink) Flush() {
	k.send()
	now := time.Now()
	if now.After(k.nextTick) {
		k.nextTick = now.Add(time.Second)
		k.reportLost()
	}
}

// freeBatches is how many handed-back batches the source keeps: the agent's
// channels hold 8, and the kernel and L7 sinks each fill one.
const freeBatches = 16

// Recycle takes back a batch the agent is done with, to be filled again
// (agent.Recycler): at ordinary rates a batch is sent every poll of the
// ring buffer, and allocating a new one each time zeroed BatchSize records
// (~5 % of the agent's CPU). Safe for concurrent use with Run.
func (s *Source) Recycle(batch []schemas.Flow) {
	if cap(batch) < s.cfg.BatchSize {
		return
	}
	select {
	case s.free <- batch[:0]:
	default:
	}
}

// batcher sends records downstream in batches of the source's BatchSize;
// the kernel events' sink and the L7 sink each have one.
type batcher struct {
	src   *Source
	out   chan<- []schemas.Flow
	batch []schemas.Flow
}

func newBatcher(s *Source, out chan<- []schemas.Flow) batcher {
	return batcher{src: s, out: out, batch: s.newBatch()}
}

// newBatch is a handed-back batch, or a new one. Records are overwritten
// whole when appended, so a reused batch needs no clearing.
func (s *Source) newBatch() []schemas.Flow {
	select {
	case b := <-s.free:
		return b
	default:
		return make([]schemas.Flow, 0, s.cfg.BatchSize)
	}
}

// full reports whether the batch is due.
func (b *batcher) full() bool { return len(b.batch) >= b.src.cfg.BatchSize }

// send passes the batch on (blocking while downstream is slow).
func (b *batcher) send() {
	if len(b.batch) == 0 {
		return
	}
	b.out <- b.batch
	b.src.flows.Add(uint64(len(b.batch)))
	b.batch = b.src.newBatch()
}

// reportLost reports the growth of the kernel's unrecoverable ring buffer
// losses, once a second: one counter, one system call.
func (k *sink) reportLost() {
	n, err := k.coll.Counter(bpf.CounterRingBufLost, &k.perCPU)
	if err != nil {
		k.src.log.Warn("read kernel counters", "err", err)
		return
	}
	if n > k.lastLost {
		if k.lost != nil {
			k.lost(flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, n-k.lastLost)
		}
		k.lastLost = n
	}
}
