//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/endpoints"
	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/schemas"
)

// Source is the kernel flow source: it runs a bpf.Collector and turns its
// events into flow records. Run is called once.
type Source struct {
	cfg Config
	log *slog.Logger

	coll       atomic.Pointer[bpf.Collector]
	flows      atomic.Uint64 // records sent downstream
	reloadErrs atomic.Uint64
	epsMu      sync.Mutex
	eps        *endpoints.File
}

// New returns a Source. The endpoints file, when set, must be readable now.
// reg may be nil; otherwise the source registers its kernel counters there
// (see Describe).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{cfg: cfg, log: log}
	if cfg.EndpointsFile != "" {
		f, err := endpoints.Read(cfg.EndpointsFile)
		if err != nil {
			return nil, fmt.Errorf("ebpf source: %w", err)
		}
		s.eps = f
	} else {
		log.Warn("no endpoints file: peers cannot be told apart from the world, so a connection between two " +
			"attached pods counts at both pods' interfaces in rollups; give --endpoints to count it once")
	}
	if reg != nil {
		if err := reg.Register(s); err != nil {
			return nil, fmt.Errorf("ebpf source: register metrics: %w", err)
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
	coll, err := bpf.New(s.cfg.Kernel, s.log)
	if err != nil {
		return fmt.Errorf("ebpf source: %w", err)
	}
	s.coll.Store(coll)
	sk := &sink{src: s, out: out, lost: lost, coll: coll, batch: make([]schemas.Flow, 0, s.cfg.BatchSize)}
	if s.cfg.EndpointsFile != "" {
		if st, err := os.Stat(s.cfg.EndpointsFile); err == nil {
			sk.epsMod, sk.epsSize = st.ModTime(), st.Size()
		}
	}
	runErr := coll.Run(ctx, sk)
	sk.reportLost()
	sk.send()
	if err := coll.Close(); err != nil {
		s.log.Warn("close ebpf collector", "err", err)
	}
	if runErr != nil {
		return fmt.Errorf("ebpf source: %w", runErr)
	}
	return nil
}

// sink converts events on the collector's goroutine.
type sink struct {
	src      *Source
	out      chan<- []schemas.Flow
	lost     func(flowpb.LostEventSource, uint64)
	coll     *bpf.Collector
	batch    []schemas.Flow
	lastLost uint64
	nextTick time.Time
	epsMod   time.Time
	epsSize  int64
	reloadAt time.Time
}

func (k *sink) Event(ev *bpf.Event) {
	if ev.Kind == bpf.EventFlowStart {
		return // a flow is reported when it ends or times out
	}
	k.src.epsMu.Lock()
	eps := k.src.eps
	k.src.epsMu.Unlock()
	k.batch = append(k.batch, schemas.Flow{})
	toFlow(ev, k.src.cfg.Node, eps, &k.batch[len(k.batch)-1])
	if len(k.batch) >= k.src.cfg.BatchSize {
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
	k.maybeReload(now)
}

func (k *sink) send() {
	if len(k.batch) == 0 {
		return
	}
	k.out <- k.batch
	k.src.flows.Add(uint64(len(k.batch)))
	k.batch = make([]schemas.Flow, 0, k.src.cfg.BatchSize)
}

// reportLost reports the growth of the kernel's unrecoverable ring buffer
// losses.
func (k *sink) reportLost() {
	c, err := k.coll.Counters()
	if err != nil {
		k.src.log.Warn("read kernel counters", "err", err)
		return
	}
	if n := c.Lost(); n > k.lastLost {
		if k.lost != nil {
			k.lost(flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, n-k.lastLost)
		}
		k.lastLost = n
	}
}

// maybeReload re-reads the endpoints file when it changed. A file that does
// not read keeps the previous contents in use and is logged and counted.
func (k *sink) maybeReload(now time.Time) {
	path := k.src.cfg.EndpointsFile
	if path == "" || now.Before(k.reloadAt) {
		return
	}
	k.reloadAt = now.Add(k.src.cfg.ReloadEvery)
	st, err := os.Stat(path)
	if err != nil {
		k.reloadFailed(err)
		return
	}
	if st.ModTime().Equal(k.epsMod) && st.Size() == k.epsSize {
		return
	}
	f, err := endpoints.Read(path)
	if err != nil {
		k.reloadFailed(err)
		return
	}
	k.epsMod, k.epsSize = st.ModTime(), st.Size()
	k.src.epsMu.Lock()
	k.src.eps = f
	k.src.epsMu.Unlock()
	k.src.log.Info("endpoints file reloaded", "path", path, "pods", len(f.Pods))
}

func (k *sink) reloadFailed(err error) {
	k.src.reloadErrs.Add(1)
	if !errors.Is(err, os.ErrNotExist) {
		k.src.log.Warn("endpoints file not reloaded; keeping the previous one", "err", err)
	}
}
