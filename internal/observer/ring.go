package observer

import (
	"sync"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
)

// event is one slot of the ring: a flow, or a lost-events record.
type event struct {
	seq        uint64 // position in the stream of everything ever written
	lost       bool
	lostSource flowpb.LostEventSource
	lostN      uint64
	lostTimeNs int64
	flow       schemas.Flow
}

// Ring holds the last N events (flows and lost-event records) the agent
// pipeline handed it. Writes never wait for readers: a reader that falls more
// than N events behind finds its events overwritten and is told how many it
// lost (Hubble's HUBBLE_RING_BUFFER lost event). Writers take a mutex for the
// time it takes to copy the batch; readers hold the read lock only while
// copying a bounded chunk out (readChunk), never while sending.
//
// Ring implements the agent pipeline's Tap. Safe for concurrent use.
type Ring struct {
	mu       sync.RWMutex
	buf      []event
	mask     uint64
	next     uint64        // seq of the next write
	notify   chan struct{} // closed and replaced on every write
	numFlows uint64        // flows (not lost records) currently in buf
	seen     uint64        // flows ever written
	start    time.Time
	now      func() time.Time
}

// DefaultRingSize is the default number of events the ring holds, as Hubble's.
const DefaultRingSize = 4096

// NewRing returns a ring of capacity events rounded up to a power of two
// (minimum 2; DefaultRingSize if capacity is 0). now is the clock for
// uptime and lost-event times (nil: time.Now).
func NewRing(capacity int, now func() time.Time) *Ring {
	if capacity == 0 {
		capacity = DefaultRingSize
	}
	n := 2
	for n < capacity {
		n <<= 1
	}
	if now == nil {
		now = time.Now
	}
	return &Ring{buf: make([]event, n), mask: uint64(n - 1), notify: make(chan struct{}), start: now(), now: now}
}

// Cap returns the number of events the ring holds.
func (r *Ring) Cap() uint64 { return uint64(len(r.buf)) }

// Observe appends flows to the ring. It copies the Flow values (their slices
// are shared, as schemas.Flow allows) and wakes every follower. It never
// blocks on readers.
func (r *Ring) Observe(flows []schemas.Flow) {
	if len(flows) == 0 {
		return
	}
	r.mu.Lock()
	for i := range flows {
		slot := &r.buf[r.next&r.mask]
		if r.next >= uint64(len(r.buf)) && !slot.lost {
			r.numFlows--
		}
		*slot = event{seq: r.next, flow: flows[i]}
		r.next++
		r.numFlows++
	}
	r.seen += uint64(len(flows))
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

// Lost records that n events were lost before reaching the ring (source
// says where); readers receive it in the stream as a LostEvent.
func (r *Ring) Lost(source flowpb.LostEventSource, n uint64) {
	if n == 0 {
		return
	}
	ts := r.now().UnixNano()
	r.mu.Lock()
	slot := &r.buf[r.next&r.mask]
	if r.next >= uint64(len(r.buf)) && !slot.lost {
		r.numFlows--
	}
	*slot = event{seq: r.next, lost: true, lostSource: source, lostN: n, lostTimeNs: ts}
	r.next++
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

// Stats is a snapshot of the ring's counters.
type Stats struct {
	NumFlows  uint64 // flows in the ring now
	MaxFlows  uint64 // capacity
	SeenFlows uint64 // flows ever observed
	Uptime    time.Duration
}

// Stats returns the ring's counters.
func (r *Ring) Stats() Stats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return Stats{NumFlows: r.numFlows, MaxFlows: uint64(len(r.buf)), SeenFlows: r.seen, Uptime: r.now().Sub(r.start)}
}

// bounds returns the oldest seq still in the ring and the next seq to be written.
func (r *Ring) bounds() (oldest, next uint64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.oldestLocked(), r.next
}

func (r *Ring) oldestLocked() uint64 {
	if r.next > uint64(len(r.buf)) {
		return r.next - uint64(len(r.buf))
	}
	return 0
}

// readChunk copies into dst (up to cap(dst)) the events from seq on. If
// events from seq were overwritten it starts at the oldest one and reports
// how many were skipped in lost. When nothing is available it returns the
// channel that is closed on the next write.
func (r *Ring) readChunk(dst []event, seq uint64) (out []event, next uint64, lost uint64, wait <-chan struct{}) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if oldest := r.oldestLocked(); seq < oldest {
		lost, seq = oldest-seq, oldest
	}
	out = dst[:0]
	for ; seq < r.next && len(out) < cap(dst); seq++ {
		out = append(out, r.buf[seq&r.mask])
	}
	return out, seq, lost, r.notify
}

// readBackChunk copies into dst (up to cap(dst)) the events before seq,
// newest first, stopping at the oldest event still in the ring.
func (r *Ring) readBackChunk(dst []event, seq uint64) []event {
	r.mu.RLock()
	defer r.mu.RUnlock()
	oldest := r.oldestLocked()
	if seq > r.next {
		seq = r.next
	}
	out := dst[:0]
	for seq > oldest && len(out) < cap(dst) {
		seq--
		out = append(out, r.buf[seq&r.mask])
	}
	return out
}
