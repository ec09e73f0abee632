package aggregator

import (
	"cmp"
	"math"
	"slices"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
)

type bucketKey struct {
	start int64
	late  bool
}

type offRange struct{ first, last int64 }

// partition is the state of one assigned partition.
type partition struct {
	id      int32
	started bool  // a message was processed
	next    int64 // offset after the last message processed
	maxTime int64 // latest event time seen, Unix ns
	wm      int64 // watermark: maxTime - lateness; math.MinInt64 before any flow
	open    map[bucketKey]*bucket

	// done holds, per window start, the offset ranges of buckets committed
	// before this assignment: a record of that window from a message in one
	// of those ranges is already in a file and is skipped. doneMax is the
	// highest offset in done; past it done is dropped.
	done    map[int64][]offRange
	doneMax int64
}

func newPartition(id int32, committed []fileID) *partition {
	ps := &partition{id: id, wm: math.MinInt64, maxTime: math.MinInt64, open: make(map[bucketKey]*bucket)}
	if len(committed) > 0 {
		ps.done = make(map[int64][]offRange)
		for _, f := range committed {
			ps.done[f.start] = append(ps.done[f.start], offRange{f.first, f.last})
			ps.doneMax = max(ps.doneMax, f.last)
		}
	}
	return ps
}

// isDone reports whether records of window start from the message at offset
// are in a committed file already.
func (ps *partition) isDone(start, offset int64) bool {
	for _, r := range ps.done[start] {
		if offset >= r.first && offset <= r.last {
			return true
		}
	}
	return false
}

// add folds the flows of one message into the partition's buckets and
// reports whether the watermark passed the end of an open window (begin,
// fold.add for each flow, fold.end).
func (ps *partition) add(a *Aggregator, flows []schemas.Flow, m *bus.Delivery) (closed bool) {
	fo := ps.begin(a, m)
	for i := range flows {
		fo.add(&flows[i])
	}
	return fo.end()
}

// fold is the folding of one message into a partition. Every record is
// classified against the watermark as it was before the message, so that
// the outcome depends on the sequence of messages only, never on how flows
// are split into messages or on wall-clock time.
type fold struct {
	ps                      *partition
	a                       *Aggregator
	m                       *bus.Delivery
	w, msgTime              int64
	maxT                    int64
	cur                     *bucket
	curKey                  bucketKey
	late, skipped, overflow int64
}

func (ps *partition) begin(a *Aggregator, m *bus.Delivery) *fold {
	if ps.done != nil && m.Offset > ps.doneMax {
		ps.done = nil
	}
	return &fold{ps: ps, a: a, m: m, w: a.window, msgTime: m.Time.UnixNano(), maxT: ps.maxTime,
		curKey: bucketKey{start: math.MinInt64}}
}

// add folds one flow; f is not retained.
func (fo *fold) add(f *schemas.Flow) {
	ps := fo.ps
	t := f.TimeNs
	if t == 0 {
		t = fo.msgTime
	}
	fo.maxT = max(fo.maxT, t)
	start := t - mod(t, fo.w)
	if ps.done != nil && ps.isDone(start, fo.m.Offset) {
		fo.skipped++
		return
	}
	k := bucketKey{start: start, late: start+fo.w <= ps.wm}
	if k != fo.curKey {
		fo.cur = ps.open[k]
		if fo.cur == nil {
			fo.cur = newBucket(start, k.late, fo.m.Offset)
			ps.open[k] = fo.cur
		}
		fo.cur.last = fo.m.Offset
		fo.curKey = k
	}
	if k.late {
		fo.late++
	}
	if fo.cur.add(f, fo.a) {
		fo.overflow++
	}
}

// end counts what the message did, moves the watermark and reports whether
// it passed the end of an open window.
func (fo *fold) end() (closed bool) {
	ps, a := fo.ps, fo.a
	if fo.late > 0 {
		a.m.lateRows.Add(float64(fo.late))
	}
	if fo.skipped > 0 {
		a.m.skippedRows.Add(float64(fo.skipped))
	}
	if fo.overflow > 0 {
		a.m.routeOverflow.Add(float64(fo.overflow))
	}
	if fo.maxT == ps.maxTime {
		return false
	}
	ps.maxTime = fo.maxT
	ps.wm = fo.maxT - a.late
	for k := range ps.open {
		if !k.late && k.start+fo.w <= ps.wm {
			return true
		}
	}
	return false
}

// closable returns the keys of the buckets to write now, in (window, late)
// order: regular buckets whose window the watermark passed plus every late
// bucket, or, with all, every bucket.
func (ps *partition) closable(w int64, all bool) []bucketKey {
	var ks []bucketKey
	for k := range ps.open {
		if all || k.late || k.start+w <= ps.wm {
			ks = append(ks, k)
		}
	}
	slices.SortFunc(ks, func(x, y bucketKey) int {
		if c := cmp.Compare(x.start, y.start); c != 0 {
			return c
		}
		if x.late == y.late {
			return 0
		}
		if x.late {
			return 1
		}
		return -1
	})
	return ks
}

// commitOffset is the first offset of the oldest open bucket, or next.
func (ps *partition) commitOffset() int64 {
	off := ps.next
	for _, b := range ps.open {
		off = min(off, b.first)
	}
	return off
}

// mod is the non-negative remainder of t/w.
func mod(t, w int64) int64 {
	r := t % w
	if r < 0 {
		r += w
	}
	return r
}
