package schemas

import (
	"math/bits"
	"sort"
)

// Latency histogram: sparse log-linear buckets with fixed boundaries, so that
// histograms from different records, windows and nodes merge exactly by
// adding counts of equal bucket numbers (in Go with Merge, in SQL with
// `sum(count) GROUP BY bucket`).
//
// Boundaries (values in nanoseconds):
//
//	bucket 0                 [0, 1024)            everything under ~1 µs
//	bucket i, 1 ≤ i ≤ 832    e = 10 + (i-1)/32, s = (i-1)%32
//	                         [(32+s)·2^(e-5), (33+s)·2^(e-5))
//	bucket 833 (HistOverflow) [2^36, ∞)           everything over ~68.7 s
//
// Each power of two from 2^10 ns (1.024 µs) to 2^36 ns (68.7 s) is split into
// 32 equal sub-buckets, so a bucket is at most 1/32 of its lower bound wide
// and its midpoint (HistValue) is within 1/65 ≈ 1.54 % of any value in it:
// the documented relative error of every quantile read from a histogram is
// ≤ 2 % from 1.024 µs to 60 s. Latencies under 1024 ns all land in bucket 0
// and read as 512 ns (so 1.000 µs reads 49 % low).
const (
	HistSubBuckets = 32
	HistMinExp     = 10                                         // 2^10 ns
	HistMaxExp     = 36                                         // 2^36 ns
	HistOverflow   = (HistMaxExp-HistMinExp)*HistSubBuckets + 1 // 833
	HistNumBuckets = HistOverflow + 1
)

// Bucket is one non-empty histogram bucket.
type Bucket struct {
	Index int16
	Count int64
}

// Histogram is a sparse latency histogram: non-empty buckets sorted by Index.
// The zero value is an empty histogram. Not safe for concurrent use.
type Histogram []Bucket

// HistBucket returns the bucket number of a latency in nanoseconds.
func HistBucket(ns uint64) int16 {
	if ns < 1<<HistMinExp {
		return 0
	}
	e := bits.Len64(ns) - 1
	if e >= HistMaxExp {
		return HistOverflow
	}
	s := (ns >> (e - 5)) & (HistSubBuckets - 1)
	return int16((e-HistMinExp)*HistSubBuckets + int(s) + 1)
}

// HistBounds returns the half-open range [lo, hi) of bucket i in nanoseconds.
// The overflow bucket's hi is the maximum uint64.
func HistBounds(i int16) (lo, hi uint64) {
	switch {
	case i <= 0:
		return 0, 1 << HistMinExp
	case i >= HistOverflow:
		return 1 << HistMaxExp, ^uint64(0)
	}
	e := uint((int(i)-1)/HistSubBuckets + HistMinExp)
	s := uint64((int(i) - 1) % HistSubBuckets)
	return (32 + s) << (e - 5), (33 + s) << (e - 5)
}

// HistValue is the value a quantile reports for bucket i: its midpoint
// (bucket 0 reports 512 ns, the overflow bucket its lower bound).
func HistValue(i int16) uint64 {
	lo, hi := HistBounds(i)
	if i >= HistOverflow {
		return lo
	}
	return lo + (hi-lo)/2
}

// Add records n observations of latency ns.
func (h *Histogram) Add(ns uint64, n int64) {
	h.addBucket(HistBucket(ns), n)
}

func (h *Histogram) addBucket(b int16, n int64) {
	s := *h
	// Fast path: appending in order or hitting the last bucket.
	if k := len(s); k == 0 || s[k-1].Index < b {
		*h = append(s, Bucket{b, n})
		return
	} else if s[k-1].Index == b {
		s[k-1].Count += n
		return
	}
	j := sort.Search(len(s), func(j int) bool { return s[j].Index >= b })
	if s[j].Index == b {
		s[j].Count += n
		return
	}
	s = append(s, Bucket{})
	copy(s[j+1:], s[j:])
	s[j] = Bucket{b, n}
	*h = s
}

// Merge adds every bucket of o into h.
func (h *Histogram) Merge(o Histogram) {
	for _, b := range o {
		h.addBucket(b.Index, b.Count)
	}
}

// Total returns the number of observations.
func (h Histogram) Total() int64 {
	var t int64
	for _, b := range h {
		t += b.Count
	}
	return t
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) in nanoseconds: HistValue of
// the bucket holding the observation of rank ceil(q·total) (rank 1 for q=0).
// It returns 0 for an empty histogram. The same rule, written in SQL, is in
// schemas/README.md.
func (h Histogram) Quantile(q float64) uint64 {
	t := h.Total()
	if t == 0 {
		return 0
	}
	rank := QuantileRank(q, t)
	var c int64
	for _, b := range h {
		c += b.Count
		if c >= rank {
			return HistValue(b.Index)
		}
	}
	return HistValue(h[len(h)-1].Index)
}

// QuantileRank is the 1-based rank of the q-quantile among total
// observations: ceil(q·total), at least 1.
func QuantileRank(q float64, total int64) int64 {
	r := int64(q * float64(total))
	if float64(r) < q*float64(total) {
		r++
	}
	if r < 1 {
		r = 1
	}
	if r > total {
		r = total
	}
	return r
}

// Clone returns a copy of h that shares no memory with it.
func (h Histogram) Clone() Histogram {
	if h == nil {
		return nil
	}
	return append(Histogram(nil), h...)
}
