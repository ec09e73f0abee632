package socklb

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
)

// DefaultMaglevM is the default size of a service's Maglev table: a prime
// about 100 times the backends a service is expected to have (the Maglev
// paper's advice, for shares within ~1 % of each other), and Cilium's
// default. Each Maglev service's table takes M × 4 bytes of kernel memory
// (64 KiB at 16381).
const DefaultMaglevM = 16381

// MaglevTable is the Maglev lookup table of size m (a prime, above the
// number of backends) over the backends named by names: entry j is the
// index in names of the backend that owns it, or -1 when names is empty.
// It is the paper's algorithm (Eisenbud et al., NSDI 2016, §3.4): each
// backend's preference list is a permutation of the entries, offset + j ×
// skip mod m, with offset and skip from two hashes of its name; backends
// take turns claiming their next preferred free entry until the table is
// full. Backends take their turns in the order of their names (sorted), so
// the table depends on the set of names, not on their order in names.
func MaglevTable(names []string, m uint32) []int {
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case names[a] < names[b]:
			return -1
		case names[a] > names[b]:
			return 1
		}
		return 0
	})
	offsets := make([]uint32, len(names))
	skips := make([]uint32, len(names))
	for k, i := range order {
		offsets[k], skips[k] = maglevPermutation(names[i], m)
	}
	table := maglevFill(offsets, skips, m)
	for j, k := range table {
		if k >= 0 {
			table[j] = order[k]
		}
	}
	return table
}

// maglevPermutation gives a backend's offset (in [0, m)) and skip (in [1,
// m)) from the first and second 8 bytes of the SHA-256 of its name.
func maglevPermutation(name string, m uint32) (offset, skip uint32) {
	h := sha256.Sum256([]byte(name))
	h1 := binary.BigEndian.Uint64(h[0:8])
	h2 := binary.BigEndian.Uint64(h[8:16])
	return uint32(h1 % uint64(m)), uint32(h2%uint64(m-1)) + 1
}

// maglevFill is the paper's population loop (Pseudocode 1) over backends
// given by their permutations' offsets and skips.
func maglevFill(offsets, skips []uint32, m uint32) []int {
	table := make([]int, m)
	for j := range table {
		table[j] = -1
	}
	n := len(offsets)
	if n == 0 {
		return table
	}
	next := make([]uint64, n)
	filled := uint32(0)
	for {
		for i := range n {
			c := (uint64(offsets[i]) + next[i]*uint64(skips[i])) % uint64(m)
			for table[c] >= 0 {
				next[i]++
				c = (uint64(offsets[i]) + next[i]*uint64(skips[i])) % uint64(m)
			}
			table[c] = i
			next[i]++
			filled++
			if filled == m {
				return table
			}
		}
	}
}

// MaglevIndex is the table entry a socket with this cookie takes: the
// kernel's mix64 (MurmurHash3's 64-bit finalizer) of the socket cookie,
// mod m. The kernel hashes the cookie, not the 5-tuple: at connect() the
// source port is usually not chosen yet.
func MaglevIndex(cookie uint64, m uint32) uint32 {
	return uint32(mix64(cookie) % uint64(m))
}

func mix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// checkMaglevM reports whether m can size a Maglev table: a prime ≥ 3.
func checkMaglevM(m uint32) error {
	if m < 3 {
		return fmt.Errorf("maglev table size %d: want a prime ≥ 3", m)
	}
	for d := uint32(2); uint64(d)*uint64(d) <= uint64(m); d++ {
		if m%d == 0 {
			return fmt.Errorf("maglev table size %d is not a prime (divisible by %d)", m, d)
		}
	}
	return nil
}
