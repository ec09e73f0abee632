package aggregator

import (
	"cmp"
	"math"
	"slices"

	"github.com/flowbus/flowbus/schemas"
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

// add folds the flows of one message into the partition's buckets. Every
// record is classified against the watermark as it was before the message,
// so that the outcome depends on the sequence of messages only, never on
// how flows are split into messages or on wall-clock time. It reports
// whether the watermark passed the end of an open window.
func (ps *partition) add(a *Aggregator, flows []schemas.Flow, m *Message) (closed bool) {
	if ps.done != nil && m.Offset > ps.doneMax {
		ps.done = nil
	}
	w := a.window
	maxT := ps.maxTime
	var cur *bucket
	curKey := bucketKey{start: math.MinInt64}
	var late, skipped, overflow int64
	for i := range flows {
		f := &flows[i]
		t := f.TimeNs
		if t == 0 {
			t = m.Time.UnixNano()
		}
		maxT = max(maxT, t)
		start := t - mod(t, w)
		if ps.done != nil && ps.isDone(start, m.Offset) {
			skipped++
			continue
		}
		k := bucketKey{start: start, late: start+w <= ps.wm}
		if k != curKey {
			cur = ps.open[k]
			if cur == nil {
				cur = newBucket(start, k.late, m.Offset)
				ps.open[k] = cur
			}
			cur.last = m.Offset
			curKey = k
		}
		if k.late {
			late++
		}
		if cur.add(f, a) {
			overflow++
		}
	}
	if late > 0 {
		a.m.lateRows.Add(float64(late))
	}
	if skipped > 0 {
		a.m.skippedRows.Add(float64(skipped))
	}
	if overflow > 0 {
		a.m.routeOverflow.Add(float64(overflow))
	}
	if maxT == ps.maxTime {
		return false
	}
	ps.maxTime = maxT
	ps.wm = maxT - a.late
	for k := range ps.open {
		if !k.late && k.start+w <= ps.wm {
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
