package schemas

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

func TestHistBucketsTileTheRange(t *testing.T) {
	if lo, hi := HistBounds(0); lo != 0 || hi != 1024 {
		t.Fatalf("bucket 0 = [%d, %d), want [0, 1024)", lo, hi)
	}
	for i := int16(0); i < HistOverflow; i++ {
		lo, hi := HistBounds(i)
		if lo >= hi {
			t.Fatalf("bucket %d is empty: [%d, %d)", i, lo, hi)
		}
		if next, _ := HistBounds(i + 1); next != hi {
			t.Fatalf("bucket %d ends at %d but bucket %d starts at %d", i, hi, i+1, next)
		}
		if b := HistBucket(lo); b != i {
			t.Fatalf("HistBucket(%d) = %d, want %d (lower bound of %d)", lo, b, i, i)
		}
		if b := HistBucket(hi - 1); b != i {
			t.Fatalf("HistBucket(%d) = %d, want %d (last value of %d)", hi-1, b, i, i)
		}
		if i > 0 && float64(hi-lo) > float64(lo)/32 {
			t.Fatalf("bucket %d is %d ns wide, more than 1/32 of its lower bound %d", i, hi-lo, lo)
		}
	}
	if lo, hi := HistBounds(HistOverflow); lo != 1<<36 || hi != math.MaxUint64 {
		t.Fatalf("overflow bucket = [%d, %d)", lo, hi)
	}
	for _, v := range []uint64{1 << 36, 1<<40 + 5, math.MaxUint64} {
		if b := HistBucket(v); b != HistOverflow {
			t.Fatalf("HistBucket(%d) = %d, want overflow %d", v, b, HistOverflow)
		}
	}
	// A few hand-checked values.
	for _, c := range []struct {
		ns   uint64
		want int16
	}{{0, 0}, {1023, 0}, {1024, 1}, {1056, 2}, {2047, 32}, {2048, 33}, {1_000_000, 9*32 + 29 + 1}} {
		if got := HistBucket(c.ns); got != c.want {
			t.Errorf("HistBucket(%d) = %d, want %d", c.ns, got, c.want)
		}
	}
}

// TestHistRelativeError: the value a bucket reports is within 2 % of every
// latency in it, from 1.024 µs to 60 s (the documented bound; everything
// under 1024 ns is bucket 0, which reports 512 ns).
func TestHistRelativeError(t *testing.T) {
	worst := 0.0
	for v := 1024.0; v <= 60e9; v *= 1.0007 {
		for _, ns := range []uint64{uint64(v), uint64(v) + 1} {
			rep := HistValue(HistBucket(ns))
			worst = max(worst, math.Abs(float64(rep)-float64(ns))/float64(ns))
		}
	}
	// Bucket edges are the worst case.
	for i := int16(1); i < HistOverflow; i++ {
		lo, hi := HistBounds(i)
		for _, ns := range []uint64{lo, hi - 1} {
			if ns >= 1024 && ns <= 60e9 {
				worst = max(worst, math.Abs(float64(HistValue(i))-float64(ns))/float64(ns))
			}
		}
	}
	if worst > 0.02 {
		t.Fatalf("worst relative error %.4f > 0.02", worst)
	}
	if e := math.Abs(float64(HistValue(HistBucket(1000)))-1000) / 1000; e < 0.4 {
		t.Fatalf("1000 ns reports with error %.3f: bucket 0 changed, update the documented bound", e)
	}
	if worst < 0.01 {
		t.Fatalf("worst relative error %.4f is implausibly small: the test is not probing bucket edges", worst)
	}
}

func TestHistQuantile(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Total() != 0 {
		t.Fatalf("empty histogram: Quantile = %d, Total = %d", h.Quantile(0.5), h.Total())
	}
	// 1000 latencies 1 ms, 2 ms, ..., 1000 ms, added in random order.
	vals := make([]uint64, 1000)
	for i := range vals {
		vals[i] = uint64(i+1) * 1_000_000
	}
	r := rand.New(rand.NewPCG(3, 4))
	r.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
	for _, v := range vals {
		h.Add(v, 1)
	}
	if !slices.IsSortedFunc(h, func(a, b Bucket) int { return int(a.Index) - int(b.Index) }) {
		t.Fatalf("buckets not sorted after out-of-order adds")
	}
	if h.Total() != 1000 {
		t.Fatalf("Total = %d, want 1000", h.Total())
	}
	for _, c := range []struct {
		q    float64
		want uint64 // exact quantile: the latency of rank ceil(q·1000)
	}{{0, 1e6}, {0.5, 500e6}, {0.9, 900e6}, {0.99, 990e6}, {0.999, 999e6}, {1, 1000e6}} {
		got := h.Quantile(c.q)
		if got != HistValue(HistBucket(c.want)) {
			t.Errorf("Quantile(%v) = %d, want the value of %d's bucket, %d", c.q, got, c.want, HistValue(HistBucket(c.want)))
		}
		if e := math.Abs(float64(got)-float64(c.want)) / float64(c.want); e > 0.02 {
			t.Errorf("Quantile(%v) = %d, %.3f off %d", c.q, got, e, c.want)
		}
	}
	for _, c := range []struct {
		q     float64
		total int64
		want  int64
	}{{0, 10, 1}, {0.5, 10, 5}, {0.51, 10, 6}, {1, 10, 10}, {0.999, 3, 3}, {2, 3, 3}, {-1, 3, 1}} {
		if got := QuantileRank(c.q, c.total); got != c.want {
			t.Errorf("QuantileRank(%v, %d) = %d, want %d", c.q, c.total, got, c.want)
		}
	}
}

func TestHistMergeEqualsHistogramOfUnion(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var a, b, union Histogram
	for range 500 {
		v := uint64(math.Exp(r.Float64()*25 + 5))
		a.Add(v, 2)
		union.Add(v, 2)
	}
	for range 700 {
		v := uint64(math.Exp(r.Float64()*20 + 8))
		b.Add(v, 1)
		union.Add(v, 1)
	}
	aBefore := a.Clone()
	bBefore := b.Clone()
	a.Merge(b)
	if !reflect.DeepEqual(a, union) {
		t.Fatalf("merged histogram differs from the histogram of the union")
	}
	if !reflect.DeepEqual(b, bBefore) {
		t.Fatalf("Merge modified its argument")
	}
	// Merge is commutative.
	bBefore.Merge(aBefore)
	if !reflect.DeepEqual(bBefore, union) {
		t.Fatalf("b.Merge(a) differs from a.Merge(b)")
	}
	if union.Total() != 500*2+700 {
		t.Fatalf("Total = %d, want %d", union.Total(), 500*2+700)
	}
}

func TestHistCloneSharesNothing(t *testing.T) {
	var h Histogram
	if h.Clone() != nil {
		t.Fatalf("Clone of nil is not nil")
	}
	h.Add(5000, 1)
	c := h.Clone()
	c[0].Count = 99
	if h[0].Count != 1 {
		t.Fatalf("Clone shares memory")
	}
}
