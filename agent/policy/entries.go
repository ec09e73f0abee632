package policy

import (
	mathbits "math/bits"
	"slices"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
)

// Building an endpoint's entries: a rule's peers and ports to keys, port
// ranges to prefixes, and the finished, sorted list.

// entries adds a rule's entries to m.
func (c *compiler) entries(m entrySet, d Direction, r resolved, pod *cluster.Pod) {
	peers := r.peers
	if r.any {
		peers = []identity.ID{0}
	}
	if r.ports == nil {
		for _, pe := range peers {
			addEntry(m, Key{Peer: pe}, r.policy)
		}
		return
	}
	for _, ps := range r.ports {
		if ps.name == "" {
			lo, hi := ps.port, ps.end
			if lo == 0 {
				hi = 65535
			} else if hi == 0 {
				hi = lo
			}
			for _, pe := range peers {
				for _, k := range portPrefixes(lo, hi) {
					k.Peer, k.Proto = pe, ps.proto
					addEntry(m, k, r.policy)
				}
			}
			continue
		}
		pn := portName{ps.name, ps.proto}
		for _, pe := range peers {
			var nums []uint16
			switch {
			case d == Ingress:
				nums = ownPorts(pod, pn)
			case pe == 0 || pe.IsReserved() || pe.IsCIDR():
				nums = c.allPorts[pn]
			default:
				nums = c.podPorts[pe][pn]
			}
			for _, n := range nums {
				addEntry(m, Key{Peer: pe, Proto: ps.proto, Port: n, PortBits: 16}, r.policy)
			}
		}
	}
}

func ownPorts(pod *cluster.Pod, pn portName) []uint16 {
	var out []uint16
	for _, p := range pod.Ports {
		if p.Name == pn.name && containerProto(p.Protocol) == pn.proto {
			out = addPort(out, p.Port)
		}
	}
	return out
}

// entrySet maps packed keys to the (sorted) indices of the policies behind
// them; a packed key hashes faster than the struct.
type entrySet map[uint64][]int32

func pack(k Key) uint64 {
	return uint64(k.Peer)<<32 | uint64(k.Proto)<<24 | uint64(k.Port)<<8 | uint64(k.PortBits)
}

func unpack(p uint64) Key {
	return Key{Peer: identity.ID(p >> 32), Proto: uint8(p >> 24), Port: uint16(p >> 8), PortBits: uint8(p)}
}

func addEntry(m entrySet, k Key, policy int32) {
	p := pack(k)
	s := m[p]
	if i, found := slices.BinarySearch(s, policy); !found {
		m[p] = slices.Insert(s, i, policy)
	}
}

// portPrefixes splits [lo, hi] into the fewest aligned prefixes, as the
// kernel's LPM key holds port ranges.
func portPrefixes(lo, hi uint16) []Key {
	if lo == 0 && hi == 65535 {
		return []Key{{}}
	}
	var out []Key
	for x := uint32(lo); x <= uint32(hi); {
		size := uint32(1)
		for bits := 0; bits < 16; bits++ {
			next := size << 1
			if x%next != 0 || x+next-1 > uint32(hi) {
				break
			}
			size = next
		}
		bits := uint8(16)
		for s := size; s > 1; s >>= 1 {
			bits--
		}
		out = append(out, Key{Port: uint16(x), PortBits: bits})
		x += size
	}
	return out
}

// finalize turns entries into a sorted list, each naming the policies of
// every entry that covers it in the same lookup or the any-peer lookup.
func (c *compiler) finalize(m entrySet) []Entry {
	if len(m) == 0 {
		return nil
	}
	type group struct {
		peer  identity.ID
		proto uint8
	}
	lens := map[group]uint32{} // bit b set: an entry with PortBits b exists
	anyPeer := false
	keys := make([]uint64, 0, len(m))
	for p := range m {
		k := unpack(p)
		if k.Proto != 0 {
			lens[group{k.Peer, k.Proto}] |= 1 << k.PortBits
		}
		anyPeer = anyPeer || k.Peer == 0
		keys = append(keys, p) // packed keys sort as Keys do
	}
	slices.Sort(keys)
	// covering adds the policies of the entries of peer pe that cover k,
	// with PortBits in the mask bits.
	covering := func(set []int32, pe identity.ID, k Key, bits uint32) []int32 {
		for bits != 0 {
			b := uint8(mathbits.TrailingZeros32(bits))
			bits &= bits - 1
			set = union(set, m[pack(Key{Peer: pe, Proto: k.Proto, Port: k.Port & portMask(b), PortBits: b})])
		}
		return set
	}
	out := make([]Entry, len(keys))
	for i, p := range keys {
		k := unpack(p)
		set := m[p]
		if k.Proto != 0 {
			set = covering(set, k.Peer, k, lens[group{k.Peer, k.Proto}]&(1<<k.PortBits-1))
			set = union(set, m[pack(Key{Peer: k.Peer})])
		}
		if anyPeer && k.Peer != 0 {
			if k.Proto != 0 {
				set = covering(set, 0, k, lens[group{0, k.Proto}]&(1<<(k.PortBits+1)-1))
			}
			set = union(set, m[0])
		}
		out[i] = Entry{Key: k, Policies: c.refs(set)}
	}
	return out
}

func union(a, b []int32) []int32 {
	if len(b) == 0 {
		return a
	}
	out := make([]int32, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}

// refs returns the (shared) list of the policies with indices set, which
// is sorted, so the list is sorted too.
func (c *compiler) refs(set []int32) []PolicyRef {
	if len(set) == 0 {
		return nil
	}
	c.key = c.key[:0]
	for _, i := range set {
		c.key = append(c.key, byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
	}
	if r, ok := c.refSets[string(c.key)]; ok {
		return r
	}
	r := make([]PolicyRef, len(set))
	for j, i := range set {
		r[j] = c.ps.policies[i].ref
	}
	c.refSets[string(c.key)] = r
	return r
}
