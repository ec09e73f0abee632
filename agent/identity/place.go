package identity

// maxRounds is how many hash rounds place tries before it probes linearly.
const maxRounds = 16

// moved is a key that did not get its home slot.
type moved struct {
	key, holder string
	home, got   ID
}

// place gives each key (sorted, distinct) a slot in [lo, hi] by rounds of
// hashing: in round r every key still without a slot takes slot(key, r)
// unless a key placed before it (in an earlier round, or earlier in sorted
// order in this round) holds it. A key therefore only loses its slot to a
// new key with the same slot in the same or an earlier round, and a
// collision moves only the keys involved. Keys left after maxRounds probe
// linearly from their last slot; a key that finds the range full gets no
// slot. It returns the slots, the keys that moved and how many got none.
func place(keys []string, lo, hi ID) (map[string]ID, []moved, int) {
	got := make(map[string]ID, len(keys))
	holder := make(map[ID]string, len(keys))
	home := make([]ID, len(keys))
	size := uint64(hi-lo) + 1
	pending := make([]int, len(keys))
	for i := range pending {
		pending[i] = i
	}
	for round := 0; len(pending) > 0 && round < maxRounds; round++ {
		next := pending[:0]
		for _, i := range pending {
			slot := lo + ID(slotHash(round, keys[i])%size)
			if round == 0 {
				home[i] = slot
			}
			if _, taken := holder[slot]; taken {
				next = append(next, i)
				continue
			}
			holder[slot] = keys[i]
			got[keys[i]] = slot
		}
		pending = next
	}
	unallocated := 0
	for _, i := range pending {
		start := slotHash(maxRounds, keys[i]) % size
		for n := uint64(0); n < size; n++ {
			slot := lo + ID((start+n)%size)
			if _, taken := holder[slot]; !taken {
				holder[slot] = keys[i]
				got[keys[i]] = slot
				break
			}
		}
		if _, ok := got[keys[i]]; !ok {
			unallocated++
		}
	}
	var mv []moved
	for i, k := range keys {
		if g := got[k]; g != home[i] {
			mv = append(mv, moved{key: k, holder: holder[home[i]], home: home[i], got: g})
		}
	}
	return got, mv, unallocated
}

// slotHash is 64-bit FNV-1a over the round number (one byte) and the key,
// finished with MurmurHash3's fmix64 so that every bit of the result
// depends on every byte.
func slotHash(round int, key string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	h ^= uint64(byte(round))
	h *= prime
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
