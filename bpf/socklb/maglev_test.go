package socklb

import (
	"fmt"
	"slices"
	"testing"
)

// The example of the Maglev paper (Eisenbud et al., NSDI 2016, Table 1):
// three backends, M = 7, with B0 offset 3 skip 4, B1 offset 0 skip 2, B2
// offset 3 skip 1. Then B1 removed, worked by hand from the paper's
// Pseudocode 1: B0 takes 3, 0, 1, 2 and B2 takes 4, 5, 6, so entry 6 moves
// from B0 to B2 (Maglev's disruption is small, not zero).
func TestMaglevFillPaperExample(t *testing.T) {
	got := maglevFill([]uint32{3, 0, 3}, []uint32{4, 2, 1}, 7)
	if want := []int{1, 0, 1, 0, 2, 2, 0}; !slices.Equal(got, want) {
		t.Fatalf("table %v, want %v (B1 B0 B1 B0 B2 B2 B0)", got, want)
	}
	// B1 removed: B0 and B2 keep their offsets and skips.
	got = maglevFill([]uint32{3, 3}, []uint32{4, 1}, 7)
	if want := []int{0, 0, 0, 0, 1, 1, 1}; !slices.Equal(got, want) {
		t.Fatalf("table without B1 %v, want %v (B0 B0 B0 B0 B2 B2 B2)", got, want)
	}
}

// TestMaglevTableExact pins the hashed table for three named backends at a
// small M, so a change of the hashes or the fill shows.
func TestMaglevTableExact(t *testing.T) {
	names := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}
	var offs, skips []uint32
	for _, n := range names {
		o, s := maglevPermutation(n, 13)
		offs, skips = append(offs, o), append(skips, s)
	}
	if wantO, wantS := []uint32{8, 4, 10}, []uint32{12, 9, 1}; !slices.Equal(offs, wantO) || !slices.Equal(skips, wantS) {
		t.Fatalf("offsets %v skips %v, want %v %v", offs, skips, wantO, wantS)
	}
	got := MaglevTable(names, 13)
	if want := []int{1, 1, 2, 0, 1, 0, 0, 0, 0, 1, 2, 2, 2}; !slices.Equal(got, want) {
		t.Fatalf("table %v, want %v", got, want)
	}
	// The table is the set's, not the order's.
	rev := []string{names[2], names[0], names[1]}
	gotRev := MaglevTable(rev, 13)
	for j := range got {
		if rev[gotRev[j]] != names[got[j]] {
			t.Fatalf("entry %d: %s with names reordered, %s before", j, rev[gotRev[j]], names[got[j]])
		}
	}
	if got := MaglevTable(nil, 13); !slices.Equal(got, slices.Repeat([]int{-1}, 13)) {
		t.Fatalf("empty table %v, want all -1", got)
	}
}

// TestMaglevEvenAndMinimalDisruption checks the two properties Maglev is
// for, at the default M: every backend owns ⌊M/N⌋ or ⌈M/N⌉ entries (the
// fill gives each backend one entry per round), and removing one backend
// of ten moves its entries and few others.
func TestMaglevEvenAndMinimalDisruption(t *testing.T) {
	const m = DefaultMaglevM
	for _, n := range []int{1, 2, 3, 7, 10, 100, 1000} {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("10.1.%d.%d:8080", i/250, i%250+1)
		}
		counts := make([]int, n)
		for _, b := range MaglevTable(names, m) {
			counts[b]++
		}
		lo, hi := m/n, (m+n-1)/n
		for i, c := range counts {
			if c != lo && c != hi {
				t.Fatalf("%d backends: %s owns %d entries, want %d or %d", n, names[i], c, lo, hi)
			}
		}
	}

	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("10.2.0.%d:53", i+1)
	}
	before := MaglevTable(names, m)
	removed := names[4]
	rest := slices.Delete(slices.Clone(names), 4, 5)
	after := MaglevTable(rest, m)
	moved, ownedByRemoved := 0, 0
	for j := range before {
		was := names[before[j]]
		if was == removed {
			ownedByRemoved++
			continue
		}
		if rest[after[j]] != was {
			moved++
		}
	}
	if ownedByRemoved != 1638 || moved != 88 {
		t.Fatalf("removing one of 10: it owned %d entries and %d others moved, want %d and %d", ownedByRemoved, moved, 1638, 88)
	}
	// The paper's bound in practice: few entries of remaining backends move.
	if moved > m/100 {
		t.Fatalf("%d entries of remaining backends moved, more than 1 %% of %d", moved, m)
	}
}

func TestMaglevIndexExact(t *testing.T) {
	got := []uint32{MaglevIndex(0, 16381), MaglevIndex(1, 16381), MaglevIndex(4096, 16381), MaglevIndex(1<<63, 251)}
	if want := []uint32{0, 5304, 9520, 228}; !slices.Equal(got, want) {
		t.Fatalf("indexes %v, want %v", got, want)
	}
}

func TestCheckMaglevM(t *testing.T) {
	for m, ok := range map[uint32]bool{0: false, 1: false, 2: false, 3: true, 4: false, 251: true, 16381: true, 16383: false, 65521: true} {
		if err := checkMaglevM(m); (err == nil) != ok {
			t.Errorf("checkMaglevM(%d) = %v, want ok=%v", m, err, ok)
		}
	}
}
