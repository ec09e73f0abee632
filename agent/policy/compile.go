package policy

import (
	"cmp"
	"fmt"
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
	errors    []*Error     // policies rejected here (named ports)
	rejected  map[int]bool // their indices
}

// Compile compiles every endpoint's policy against ids, which must have
// been allocated from the same snapshot with ps.Prefixes().
func (ps *Parsed) Compile(snap *cluster.Snapshot, ids *identity.Identities) *Result {
	c := &compiler{ps: ps, ids: ids, labels: map[identity.ID]idLabels{}, selCache: map[string][]identity.ID{},
		podPorts: map[identity.ID]map[portName][]uint16{}, allPorts: map[portName][]uint16{}, declared: map[string]bool{},
		refSets: map[string][]PolicyRef{}, egress: map[identity.ID]DirectionPolicy{}, ingress: map[string]DirectionPolicy{},
		rejected: map[int]bool{}}
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
			if cp.Name == "" {
				continue
			}
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
	for i, p := range ps.policies {
		if p.err != nil {
			res.Errors = append(res.Errors, p.err)
			continue
		}
		if c.rejected[i] {
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
				c.rejected[pi] = true
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

// worldFamily is the world identity the kernel's second lookup uses for an
// address outside the cluster.
func worldFamily(a netip.Addr) identity.ID {
	if a.Unmap().Is4() {
		return hubble.IdentityWorldIPv4
	}
	return hubble.IdentityWorldIPv6
}
