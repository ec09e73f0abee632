package policy

import (
	"cmp"
	"fmt"
	mathbits "math/bits"
	"net/netip"
	"slices"
	"strings"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Parsed is the policies of a snapshot, read and checked, before
// identities: what Compile needs and the prefixes the identity allocator
// needs. It is immutable.
type Parsed struct {
	policies []*parsed // sorted by PolicyRef
}

// Parse reads every NetworkPolicy and Cilium policy of snap. A policy with
// bad input is kept as rejected (Compile reports it and fails its
// endpoints closed); the others are unaffected.
func Parse(snap *cluster.Snapshot) *Parsed {
	ps := &Parsed{policies: make([]*parsed, 0, len(snap.NetworkPolicies)+len(snap.CiliumPolicies))}
	for _, np := range snap.NetworkPolicies {
		ps.policies = append(ps.policies, parseNetworkPolicy(np))
	}
	for i := range snap.CiliumPolicies {
		ps.policies = append(ps.policies, parseCiliumPolicy(&snap.CiliumPolicies[i]))
	}
	slices.SortStableFunc(ps.policies, func(a, b *parsed) int { return comparePolicyRef(a.ref, b.ref) })
	return ps
}

// Prefixes returns every CIDR the accepted policies name (exceptions
// included), for identity.Allocator.Allocate.
func (ps *Parsed) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps.policies {
		if p.err == nil {
			out = append(out, p.prefixes...)
		}
	}
	return out
}

// Compile parses snap's policies, allocates identities (with the prefixes
// the policies name) and compiles every endpoint's policy.
func Compile(snap *cluster.Snapshot, alloc identity.Allocator) (*Result, *identity.Identities) {
	ps := Parse(snap)
	ids := alloc.Allocate(snap, ps.Prefixes())
	return ps.Compile(snap, ids), ids
}

type portName struct {
	name  string
	proto uint8
}

// resolved is a rule with its peers turned into identities.
type resolved struct {
	policy int32
	any    bool
	peers  []identity.ID // sorted
	ports  []portSpec    // nil: every protocol and port
}

type partRules struct {
	allow, deny []resolved
}

type compiler struct {
	ps        *Parsed
	ids       *identity.Identities
	labels    map[identity.ID]idLabels
	podIDs    []identity.ID
	peerIDs   []identity.ID // pod and reserved identities: what peer selectors choose from
	selCache  map[string][]identity.ID
	podPorts  map[identity.ID]map[portName][]uint16 // per identity, union over its pods
	allPorts  map[portName][]uint16                 // union over every pod
	declared  map[string]bool                       // every port name some pod declares
	rules     [][]([2]partRules)                    // policy, part, direction
	selecting [2]map[identity.ID][][2]int32         // direction, identity → (policy, part)
	failing   [2]map[identity.ID][]int32            // direction, identity → failed policies
	refSets   map[string][]PolicyRef
	key       []byte // refs' scratch key
	egress    map[identity.ID]DirectionPolicy
	ingress   map[string]DirectionPolicy
	errors    []*Error
}

// Compile compiles every endpoint's policy against ids, which must have
// been allocated from the same snapshot with ps.Prefixes().
func (ps *Parsed) Compile(snap *cluster.Snapshot, ids *identity.Identities) *Result {
	c := &compiler{ps: ps, ids: ids, labels: map[identity.ID]idLabels{}, selCache: map[string][]identity.ID{},
		podPorts: map[identity.ID]map[portName][]uint16{}, allPorts: map[portName][]uint16{}, declared: map[string]bool{},
		refSets: map[string][]PolicyRef{}, egress: map[identity.ID]DirectionPolicy{}, ingress: map[string]DirectionPolicy{}}
	c.podIDs = ids.PodIdentities()
	for id := identity.ID(1); id < identity.MinLocal; id++ {
		if l := ids.Labels(id); l != nil {
			c.labels[id] = indexLabels(l)
			c.peerIDs = append(c.peerIDs, id)
		}
	}
	for _, id := range c.podIDs {
		c.labels[id] = indexLabels(ids.Labels(id))
	}
	c.peerIDs = append(c.peerIDs, c.podIDs...)
	for i := range snap.Pods {
		p := &snap.Pods[i]
		id, ok := ids.Pod(p.Namespace, p.Name)
		if !ok {
			continue
		}
		for _, cp := range p.Ports {
			pn := portName{cp.Name, containerProto(cp.Protocol)}
			if c.podPorts[id] == nil {
				c.podPorts[id] = map[portName][]uint16{}
			}
			c.podPorts[id][pn] = addPort(c.podPorts[id][pn], cp.Port)
			c.allPorts[pn] = addPort(c.allPorts[pn], cp.Port)
			c.declared[cp.Name] = true
		}
	}
	c.resolveAll()

	res := &Result{}
	for _, p := range ps.policies {
		if p.err != nil {
			res.Errors = append(res.Errors, p.err)
			continue
		}
		res.Notes = append(res.Notes, p.notes...)
		for _, n := range p.notes {
			res.Stats.L7NotEnforced += n.Rules
		}
	}
	res.Errors = append(res.Errors, c.errors...)
	slices.SortStableFunc(res.Errors, func(a, b *Error) int { return comparePolicyRef(a.Policy, b.Policy) })
	res.Stats.Rejected = len(res.Errors)
	res.Stats.Policies = len(ps.policies) - len(res.Errors)

	order := make([]int, 0, len(snap.Pods))
	for i := range snap.Pods {
		if _, ok := ids.Pod(snap.Pods[i].Namespace, snap.Pods[i].Name); ok {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(x, y int) int {
		return cmp.Or(cmp.Compare(snap.Pods[x].Namespace, snap.Pods[y].Namespace), cmp.Compare(snap.Pods[x].Name, snap.Pods[y].Name))
	})
	res.Endpoints = make([]EndpointPolicy, 0, len(order))
	for _, i := range order {
		p := &snap.Pods[i]
		id, _ := ids.Pod(p.Namespace, p.Name)
		ep := EndpointPolicy{Namespace: p.Namespace, Name: p.Name, Identity: id}
		ep.Egress = c.endpointDir(Egress, id, nil)
		ep.Ingress = c.endpointDir(Ingress, id, p)
		for _, d := range []*DirectionPolicy{&ep.Ingress, &ep.Egress} {
			if d.FailClosed != "" {
				res.Stats.FailedClosed++
			}
			res.Stats.Entries += len(d.Allow) + len(d.Deny)
		}
		res.Endpoints = append(res.Endpoints, ep)
	}
	res.Stats.Endpoints = len(res.Endpoints)
	return res
}

func containerProto(s string) uint8 {
	switch strings.ToUpper(s) {
	case "UDP":
		return ProtoUDP
	case "SCTP":
		return ProtoSCTP
	}
	return ProtoTCP
}

func addPort(ports []uint16, p uint16) []uint16 {
	if i, found := slices.BinarySearch(ports, p); !found {
		ports = slices.Insert(ports, i, p)
	}
	return ports
}

// resolveAll checks each accepted policy's named ports, selects its
// subjects and resolves its peers; a policy that fails here is rejected
// like one that failed to parse.
func (c *compiler) resolveAll() {
	for d := range c.selecting {
		c.selecting[d] = map[identity.ID][][2]int32{}
		c.failing[d] = map[identity.ID][]int32{}
	}
	c.rules = make([][][2]partRules, len(c.ps.policies))
	for pi, p := range c.ps.policies {
		err := p.err
		if err == nil {
			if e := c.checkNamedPorts(p); e != nil {
				err = e
				c.errors = append(c.errors, e)
			}
		}
		if err != nil {
			for _, scope := range p.failScope {
				for _, id := range c.selectPods(scope) {
					for d, on := range p.failDirs {
						if on {
							c.failing[d][id] = append(c.failing[d][id], int32(pi))
						}
					}
				}
			}
			continue
		}
		c.rules[pi] = make([][2]partRules, len(p.parts))
		for ti := range p.parts {
			pt := &p.parts[ti]
			for d := range pt.dirs {
				pd := &pt.dirs[d]
				if !pd.enforce && len(pd.allow)+len(pd.deny) == 0 {
					continue
				}
				for _, r := range pd.allow {
					c.rules[pi][ti][d].allow = append(c.rules[pi][ti][d].allow, c.resolve(int32(pi), r))
				}
				for _, r := range pd.deny {
					c.rules[pi][ti][d].deny = append(c.rules[pi][ti][d].deny, c.resolve(int32(pi), r))
				}
				for _, id := range c.selectPods(pt.subject) {
					c.selecting[d][id] = append(c.selecting[d][id], [2]int32{int32(pi), int32(ti)})
				}
			}
		}
	}
}

// checkNamedPorts rejects a policy that names a port no pod declares.
func (c *compiler) checkNamedPorts(p *parsed) *Error {
	for _, pt := range p.parts {
		for _, pd := range pt.dirs {
			for _, rs := range [][]rule{pd.allow, pd.deny} {
				for _, r := range rs {
					for _, ps := range r.ports {
						if ps.name != "" && !c.declared[ps.name] {
							return &Error{Policy: p.ref, Field: ps.field + ".port", Err: fmt.Errorf("named port %q is declared by no pod", ps.name)}
						}
					}
				}
			}
		}
	}
	return nil
}

// selectPods returns the pod identities sel selects.
func (c *compiler) selectPods(sel *selector) []identity.ID {
	return c.selectFrom(sel, c.podIDs, "pods\x00")
}

func (c *compiler) selectFrom(sel *selector, from []identity.ID, space string) []identity.ID {
	k := space + sel.key
	if ids, ok := c.selCache[k]; ok {
		return ids
	}
	var out []identity.ID
	for _, id := range from {
		if sel.matches(c.labels[id]) {
			out = append(out, id)
		}
	}
	c.selCache[k] = out
	return out
}

// resolve turns a rule's peers into identities.
func (c *compiler) resolve(pi int32, r rule) resolved {
	rr := resolved{policy: pi, any: r.anyPeer, ports: r.ports}
	if r.anyPeer {
		return rr
	}
	for _, pe := range r.peers {
		switch {
		case pe.sel != nil:
			rr.peers = append(rr.peers, c.selectFrom(pe.sel, c.peerIDs, "peers\x00")...)
		case pe.cidr.IsValid():
			rr.peers = append(rr.peers, c.cidrPeers(pe.cidr, pe.except)...)
		default:
			rr.peers = append(rr.peers, pe.reserved...)
			if pe.cluster {
				rr.peers = append(rr.peers, c.podIDs...)
			}
		}
	}
	slices.Sort(rr.peers)
	rr.peers = slices.Compact(rr.peers)
	return rr
}

// cidrPeers returns the identities of the policy prefixes inside cidr and
// outside every exception: together they match exactly the addresses of
// cidr minus except, since an address's CIDR identity is that of the most
// specific policy prefix containing it.
func (c *compiler) cidrPeers(cidr netip.Prefix, except []netip.Prefix) []identity.ID {
	var out []identity.ID
	for _, q := range c.ids.Prefixes() {
		if !inside(q, cidr) || slices.ContainsFunc(except, func(e netip.Prefix) bool { return inside(q, e) }) {
			continue
		}
		if id, ok := c.ids.CIDR(q); ok {
			out = append(out, id)
		}
	}
	return out
}

// inside reports whether prefix q lies within prefix p.
func inside(q, p netip.Prefix) bool {
	return q.Addr().Is4() == p.Addr().Is4() && q.Bits() >= p.Bits() && p.Contains(q.Addr())
}

// endpointDir compiles one direction of an endpoint with identity id;
// pod is the endpoint itself for ingress (whose named ports are its own).
// Endpoints with the same identity (and, for ingress, the same ports)
// share the result.
func (c *compiler) endpointDir(d Direction, id identity.ID, pod *cluster.Pod) DirectionPolicy {
	var memo string
	if d == Ingress {
		memo = portsKey(id, pod)
		if dp, ok := c.ingress[memo]; ok {
			return dp
		}
	} else if dp, ok := c.egress[id]; ok {
		return dp
	}
	dp := c.compileDir(d, id, pod)
	if d == Ingress {
		c.ingress[memo] = dp
	} else {
		c.egress[id] = dp
	}
	return dp
}

func portsKey(id identity.ID, pod *cluster.Pod) string {
	var b strings.Builder
	fmt.Fprint(&b, uint32(id))
	for _, p := range pod.Ports {
		fmt.Fprintf(&b, "\x00%s/%d/%s", p.Name, p.Port, strings.ToUpper(p.Protocol))
	}
	return b.String()
}

func (c *compiler) compileDir(d Direction, id identity.ID, pod *cluster.Pod) DirectionPolicy {
	var dp DirectionPolicy
	var selectedBy []int32
	sel := c.selecting[d][id]
	for _, s := range sel {
		if c.ps.policies[s[0]].parts[s[1]].dirs[d].enforce {
			dp.Enforced = true
			selectedBy = append(selectedBy, s[0])
		}
	}
	if failed := c.failing[d][id]; len(failed) > 0 {
		var reasons []string
		for _, pi := range failed {
			reasons = append(reasons, c.errorOf(pi).Error())
		}
		slices.Sort(selectedBy)
		selectedBy = slices.Compact(slices.Sorted(slices.Values(append(selectedBy, failed...))))
		return DirectionPolicy{Enforced: true, SelectedBy: c.refs(selectedBy),
			FailClosed: "fails closed: " + strings.Join(reasons, "; ")}
	}
	slices.Sort(selectedBy)
	dp.SelectedBy = c.refs(slices.Compact(selectedBy))
	allow, deny := entrySet{}, entrySet{}
	for _, s := range sel {
		pr := &c.rules[s[0]][s[1]][d]
		for _, r := range pr.allow {
			c.entries(allow, d, r, pod)
		}
		for _, r := range pr.deny {
			c.entries(deny, d, r, pod)
		}
	}
	dp.Allow = c.finalize(allow)
	dp.Deny = c.finalize(deny)
	return dp
}

func (c *compiler) errorOf(pi int32) *Error {
	p := c.ps.policies[pi]
	if p.err != nil {
		return p.err
	}
	for _, e := range c.errors {
		if e.Policy == p.ref {
			return e
		}
	}
	return &Error{Policy: p.ref, Err: fmt.Errorf("rejected")}
}

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

// worldFamily is the world identity the kernel's second lookup uses for an
// address outside the cluster.
func worldFamily(a netip.Addr) identity.ID {
	if a.Unmap().Is4() {
		return hubble.IdentityWorldIPv4
	}
	return hubble.IdentityWorldIPv6
}
