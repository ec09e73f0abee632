//go:build linux

package bpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/flowbus/flowbus/internal/tick"
)

// Sink receives a Collector's events, on the goroutine running Run.
type Sink interface {
	// Event is called once per event. ev is reused after Event returns:
	// implementations must not retain it.
	Event(ev *Event)
	// Flush is called when no event is ready (the ring buffer is drained)
	// and after each sweep; a sink that batches should pass its batch on.
	Flush()
}

// Stats are a Collector's userspace figures.
type Stats struct {
	Events      uint64        // events passed to the sink
	BadRecords  uint64        // ring buffer records of the wrong size (never expected)
	Sweeps      uint64        // completed scans of the flows map
	Evicted     uint64        // map entries removed by the sweep
	ReaderCPU   time.Duration // user+system CPU of Run's thread while it works, updated each sweep
	AttachError string        // last interface attach error, if any
	// KernelDropsError says why kernel drops are not observed (the
	// kfree_skb tracepoint could not be attached), empty if they are.
	KernelDropsError string
	// L7Captures is the L7 captures passed to the L7 sink; L7BadRecords
	// the L7 ring buffer records that did not decode (never expected).
	L7Captures, L7BadRecords uint64
}

// Collector owns the loaded programs, their tcx links and the ring buffer
// reader. Run is called once; Counters, Stats and Attached are safe for
// concurrent use; Close detaches everything.
type Collector struct {
	cfg    Config
	log    *slog.Logger
	objs   *bpfObjects
	reader *ringbuf.Reader
	// l7reader reads the L7 captures (RunL7), every l7poll; nil when L7
	// is off.
	l7reader *ringbuf.Reader
	l7poll   time.Duration

	attached map[int]*attachment // Run's goroutine only
	kdrop    link.Link           // tp_btf/kfree_skb, nil if it failed to attach

	mu      sync.Mutex
	ifaces  []Interface
	names   map[uint32]string
	statsMu sync.Mutex
	stats   Stats
	events  atomic.Uint64
	// l7Captures and l7Bad count the L7 records passed on and those that
	// did not decode.
	l7Captures, l7Bad atomic.Uint64
	closeOnce         sync.Once

	// reported holds the counters already reported for flows that had an
	// active-timeout record (Run's goroutine only).
	reported map[bpfFlowKey]bpfFlowStats
	// last is what the last scan of the flows maps found, to tell whether
	// the next can wait (sweepDue; Run's goroutine only).
	last lastScan
	// scanBuf are the scans' batch buffers, reused (Run's goroutine only).
	scanBuf scanBuffers

	policyOnce sync.Once
	policy     *PolicyMaps
}

// New loads the kernel programs and maps. It does not attach: Run does.
func New(cfg Config, log *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l7poll := cfg.PollInterval
	if l7poll == 0 {
		l7poll = DefaultL7PollInterval
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	objs, err := loadObjects(loadOptions{
		maxFlows: cfg.MaxFlows, ringBufSize: cfg.RingBufSize,
		naivePerPacketEvents: cfg.NaivePerPacketEvents, emitStartEvents: cfg.EmitStartEvents,
		wakeupBytes: ringWakeupBytes(cfg.RingBufSize), l7: cfg.L7, endLinger: cfg.EndLinger,
	})
	if err != nil {
		return nil, err
	}
	rd, err := ringbuf.NewReader(objs.Events)
	if err != nil {
		objs.Close()
		return nil, fmt.Errorf("open ring buffer reader: %w", err)
	}
	var l7rd *ringbuf.Reader
	if cfg.L7.Enabled() {
		if l7rd, err = ringbuf.NewReader(objs.L7Events); err != nil {
			rd.Close()
			objs.Close()
			return nil, fmt.Errorf("open L7 ring buffer reader: %w", err)
		}
	}
	c := &Collector{
		cfg: cfg, log: log, objs: objs, reader: rd, l7reader: l7rd, l7poll: l7poll,
		attached: map[int]*attachment{},
		names:    map[uint32]string{},
		reported: map[bpfFlowKey]bpfFlowStats{},
	}
	// Kernel drops are an addition: without them flows are still observed.
	if c.kdrop, err = attachKernelDrops(objs.KfreeSkbDrop); err != nil {
		c.stats.KernelDropsError = err.Error()
		log.Warn("kernel drops not observed", "err", err)
	}
	return c, nil
}

// Counters reads the kernel counters, summed over CPUs.
func (c *Collector) Counters() (Counters, error) { return readCounters(c.objs.Counters) }

// Counter reads one kernel counter, summed over CPUs: one system call, where
// Counters makes one per counter. per is the caller's buffer of per-CPU
// values (nil: allocated here).
func (c *Collector) Counter(i Counter, per *[]uint64) (uint64, error) {
	return readCounter(c.objs.Counters, i, per)
}

// Stats returns the userspace figures.
func (c *Collector) Stats() Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	s := c.stats
	s.Events = c.events.Load()
	s.L7Captures, s.L7BadRecords = c.l7Captures.Load(), c.l7Bad.Load()
	return s
}

// Attached returns the interfaces the programs are attached to now.
func (c *Collector) Attached() []Interface {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ifaces)
}

func (c *Collector) publishAttached() {
	ifs := make([]Interface, 0, len(c.attached))
	for idx, a := range c.attached {
		ifs = append(ifs, Interface{Index: idx, Name: a.name})
	}
	slices.SortFunc(ifs, func(a, b Interface) int { return a.Index - b.Index })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ifaces = ifs
	for _, i := range ifs {
		c.names[uint32(i.Index)] = i.Name
	}
}

func (c *Collector) ifName(idx uint32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.names[idx]
}

// Run attaches to the configured interfaces, follows them as they come and
// go, and passes every event to sink until ctx is done. Then it reports
// every flow still in the map (EventFlush) and returns nil. Run locks its
// goroutine to its OS thread while it works (not while it waits), so
// Stats.ReaderCPU is the CPU of its work alone.
//
// An interface that fails to attach is logged and retried every
// SweepInterval; Run fails only if the first attach round attaches nothing
// and reports an error.
func (c *Collector) Run(ctx context.Context, sink Sink) error {
	// Stats.ReaderCPU is the CPU of Run's thread while it works: Run locks
	// its goroutine to its thread for each stretch of work and reads the
	// thread's clock around it, but not while it waits, as a goroutine
	// locked to a thread costs two more thread switches per wakeup.
	var cpu cpuMeter
	cpu.start()
	defer cpu.stop()

	// The interfaces are listed again only when the kernel announces a
	// change, or after an attach failed (to retry it), at the next
	// SweepInterval tick; without the announcements, at every tick.
	lw, err := newLinkWatch()
	if err != nil {
		c.log.Debug("interfaces: listed at every sweep interval", "err", err)
		lw = nil
	} else {
		defer lw.close()
	}
	retry := false
	if err := c.reconcile(); err != nil {
		c.setAttachError(err)
		if len(c.attached) == 0 {
			return err
		}
		c.log.Warn("attach", "err", err)
		retry = true
	}

	// Wait for the ring through the netpoller; where that is not possible,
	// block in the reader as before (doc.go, "Wakeups").
	w, err := newRingWaiter(c.objs.Events)
	if err != nil {
		c.log.Debug("ring buffer: blocking reads", "err", err)
		w = nil
	} else {
		defer w.close()
	}
	var stopping atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		stopping.Store(true)
		if w != nil {
			w.interrupt()
		} else {
			c.reader.Flush()
		}
	})
	defer stop()
	// Two waits (doc.go, "Wakeups"): with the ring drained, until the
	// kernel wakes it with the first record of a batch (or the sweep is
	// due); then PollInterval more, for the rest of the batch, unless the
	// ring fills to the kernel's watermark (a forced wakeup) first.
	wakeupBytes := int(ringWakeupBytes(c.cfg.RingBufSize))
	some := func() bool { return stopping.Load() || c.reader.AvailableBytes() > 0 }
	full := func() bool { return stopping.Load() || c.reader.AvailableBytes() >= wakeupBytes }
	past := time.Unix(1, 0)

	var rec ringbuf.Record
	var ev Event
	mono := MonoToUnix()
	now := time.Now()
	// The sweeps fall on multiples of SweepInterval, with the agent's other
	// periodic work (internal/tick): an idle agent wakes once for all.
	next := tick.Next(now, c.cfg.SweepInterval)
	poll := now.Add(c.cfg.PollInterval)
	for {
		cpu.stop()
		if w != nil {
			if err := w.wait(next, some); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("wait for ring buffer: %w", err)
			}
			if until := time.Now().Add(c.cfg.PollInterval); !stopping.Load() && c.reader.AvailableBytes() > 0 && until.Before(next) {
				if err := w.wait(until, full); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					return fmt.Errorf("wait for ring buffer: %w", err)
				}
			}
			c.reader.SetDeadline(past)
		} else {
			until := poll
			if next.Before(until) {
				until = next
			}
			c.reader.SetDeadline(until)
		}
		cpu.start()
		if w == nil || c.reader.AvailableBytes() > 0 {
			if err := c.drain(sink, &rec, &ev, mono); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			c.flushAll(sink, &ev, MonoToUnix())
			sink.Flush()
			c.setCPU(cpu.now())
			return nil
		}
		now = time.Now()
		if !now.Before(next) {
			mono = MonoToUnix()
			if lw == nil || lw.changed() || retry {
				retry = false
				if err := c.reconcile(); err != nil {
					c.setAttachError(err)
					c.log.Warn("attach", "err", err)
					retry = true
				}
			}
			// Scans are timed by the grid point that came due, not the
			// clock after the wait: MaxSweepInterval after a scan is then
			// a grid point too, not a little past it (which made the idle
			// scans 5 s apart instead of 4).
			if c.sweepDue(next) {
				if err := c.sweep(sink, &ev, mono); err != nil {
					c.log.Warn("sweep flows map", "err", err)
				}
				c.scanned(next)
			}
			c.setCPU(cpu.now())
			next = tick.Next(now, c.cfg.SweepInterval)
		}
		sink.Flush()
		poll = time.Now().Add(c.cfg.PollInterval)
	}
}

// drain passes every record in the ring to sink (the reader's deadline
// bounds a wait for the first), then flushes the sink.
func (c *Collector) drain(sink Sink, rec *ringbuf.Record, ev *Event, mono int64) error {
	for {
		err := c.reader.ReadInto(rec)
		switch {
		case err == nil:
			if c.kernelEvent(rec.RawSample, ev, mono) {
				c.events.Add(1)
				sink.Event(ev)
			} else {
				c.statsMu.Lock()
				c.stats.BadRecords++
				c.statsMu.Unlock()
			}
			if c.reader.AvailableBytes() > 0 {
				continue
			}
			sink.Flush()
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ringbuf.ErrFlushed):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

// kernelEvent decodes a ring buffer record into ev and takes off what an
// active-timeout record of its flow already reported. It reports false for a
// record that does not decode.
func (c *Collector) kernelEvent(raw []byte, ev *Event, mono int64) bool {
	ke := decodeEvent(raw, ev, mono)
	if ke == nil {
		return false
	}
	if len(c.reported) > 0 && ev.Kind.resets() {
		c.subtractReported(&ke.Key, ev)
	}
	ev.IfName = c.ifName(ev.IfIndex)
	return true
}

func (c *Collector) setAttachError(err error) {
	c.statsMu.Lock()
	c.stats.AttachError = err.Error()
	c.statsMu.Unlock()
}

// cpuMeter adds up the CPU of the thread of a goroutine over stretches of
// work: start locks the goroutine to its thread and reads the thread's
// clock, stop adds what the thread used since and unlocks.
type cpuMeter struct {
	total, t0 time.Duration
	locked    bool
}

func (m *cpuMeter) start() {
	runtime.LockOSThread()
	m.locked, m.t0 = true, threadCPU()
}

func (m *cpuMeter) stop() {
	if m.locked {
		m.total += threadCPU() - m.t0
		m.locked = false
		runtime.UnlockOSThread()
	}
}

// now is the total so far, the current stretch included.
func (m *cpuMeter) now() time.Duration {
	if m.locked {
		return m.total + threadCPU() - m.t0
	}
	return m.total
}

func (c *Collector) setCPU(d time.Duration) {
	c.statsMu.Lock()
	c.stats.ReaderCPU = d
	c.statsMu.Unlock()
}

// Close detaches every program and frees the maps. Run must have returned.
func (c *Collector) Close() error {
	var err error
	c.closeOnce.Do(func() {
		errs := []error{c.reader.Close()}
		if c.l7reader != nil {
			errs = append(errs, c.l7reader.Close())
		}
		if c.kdrop != nil {
			errs = append(errs, c.kdrop.Close())
		}
		for idx, a := range c.attached {
			errs = append(errs, a.close())
			delete(c.attached, idx)
		}
		c.publishAttached()
		errs = append(errs, c.objs.Close())
		err = errors.Join(errs...)
	})
	return err
}

// threadCPU is the user+system CPU time of the calling OS thread.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// MonoToUnix is the offset from CLOCK_MONOTONIC (bpf_ktime_get_ns, the
// time of every kernel event and capture) to Unix time, now.
func MonoToUnix() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Now().UnixNano() - ts.Nano()
}

// MonoNow is CLOCK_MONOTONIC now, in ns: the kernel's clock.
func MonoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// ringWakeupBytes is the kernel's wakeup watermark for a ring of size
// bytes: a quarter of it.
func ringWakeupBytes(size uint32) uint32 { return size / 4 }
