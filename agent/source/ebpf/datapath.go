//go:build linux

package ebpf

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/agent/policy"
	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// policyMaps is what the datapath writes to: bpf.PolicyMaps.
type policyMaps interface {
	SetIPCache(map[netip.Prefix]bpf.IPCacheEntry) error
	SetEndpoint(bpf.Endpoint, []bpf.Rule) error
	RemoveEndpoint(ifindex uint32) error
	Endpoints() []uint32
	Commit() (uint32, error)
}

// datapath keeps the kernel's identity and policy maps in step with the
// cluster, one snapshot at a time (doc.go, "Identity and policy"): it
// allocates identities, compiles the policies, writes the ipcache, the
// endpoints of the pods behind attached interfaces and their rules, and
// moves the policy revision on. It also keeps the names of every policy id
// it wrote, for the flows that come back with one. Not safe for concurrent
// use but for names, which the flow converter calls.
type datapath struct {
	maps    policyMaps
	alloc   identity.Allocator
	enforce bool // write policy rules; off, endpoints carry identities only

	epIDs  map[string]uint32 // "namespace/name" → endpoint ID, stable while the pod lives
	nextEP uint32

	mu    sync.RWMutex
	names map[uint32][]string // policy id → "Kind:namespace/name" of each policy

	last *policy.Result // of the last successful apply
}

func newDatapath(maps policyMaps, alloc identity.Allocator) *datapath {
	return &datapath{maps: maps, alloc: alloc, enforce: true, epIDs: map[string]uint32{}, names: map[uint32][]string{}}
}

// A rule's value in the kernel's policy maps, and so a flow's policy id,
// holds in its top bits the kind of rule it is (Cilium's policy match type,
// for the flow's policy verdict event) and in the rest the id of the set of
// policies it comes from (datapath.names). A default deny's id (the
// policies that select the endpoint) has match type 0, none.
const (
	policyMatchShift = 28
	policyIDMask     = 1<<policyMatchShift - 1
)

// policyNames returns the names of the policies behind a policy id.
func (d *datapath) policyNames(id uint32) []string {
	id &= policyIDMask
	if id == 0 {
		return nil
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.names[id]
}

// policyMatch is the match type a flow's policy id carries.
func policyMatch(id uint32) uint8 { return uint8(id >> policyMatchShift) }

// Cilium's policy match types (monitor api.PolicyMatchType).
const (
	matchNone      = 0
	matchL3Only    = 1
	matchL3L4      = 2
	matchL4Only    = 3
	matchAll       = 4
	matchL3Proto   = 5
	matchProtoOnly = 6
)

// matchType is the kind of rule a policy map entry is: which of peer,
// protocol and port it names (a peer identity of 0, a protocol of 0, a port
// prefix of 0 bits are any).
func matchType(k policy.Key) uint32 {
	switch {
	case k.Peer != 0 && k.Proto == 0:
		return matchL3Only
	case k.Peer != 0 && k.PortBits == 0:
		return matchL3Proto
	case k.Peer != 0:
		return matchL3L4
	case k.Proto == 0:
		return matchAll
	case k.PortBits == 0:
		return matchProtoOnly
	}
	return matchL4Only
}

// policyID returns the id of a set of policies, the same for the same set
// (a hash of the sorted names; a collision takes the next free id).
func (d *datapath) policyID(refs []policy.PolicyRef) uint32 {
	if len(refs) == 0 {
		return 0
	}
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = hubble.PolicyName(string(r.Kind), r.Namespace, r.Name)
	}
	sort.Strings(names)
	h := fnv.New32a()
	h.Write([]byte(strings.Join(names, "\n")))
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := h.Sum32() & policyIDMask; ; id = (id + 1) & policyIDMask {
		if id == 0 {
			continue
		}
		cur, ok := d.names[id]
		if !ok {
			d.names[id] = names
			return id
		}
		if slices.Equal(cur, names) {
			return id
		}
	}
}

// applied is what one apply did.
type applied struct {
	Result    *policy.Result
	IDs       *identity.Identities
	Endpoints int    // endpoints written
	Revision  uint32 // the policy revision now in force
}

// apply brings the kernel to snap: identities, ipcache, the endpoints of
// the pods behind the attached interfaces (ifindex → interface name) and
// their rules. A pod is behind an interface when the snapshot names that
// interface for it. Errors of single writes are collected; what could be
// written is in force.
func (d *datapath) apply(snap *cluster.Snapshot, attached map[uint32]string) (applied, error) {
	res, ids := policy.Compile(snap, d.alloc)
	var errs []error
	ipc := map[netip.Prefix]bpf.IPCacheEntry{}
	for _, e := range ids.IPCache() {
		ipc[e.Prefix] = bpf.IPCacheEntry{Identity: uint32(e.ID), CIDR: uint32(e.CIDR)}
	}
	if err := d.maps.SetIPCache(ipc); err != nil {
		errs = append(errs, err)
	}
	keep := map[uint32]bool{}
	live := map[string]bool{}
	n := 0
	for i := range snap.Pods {
		p := &snap.Pods[i]
		name, ok := attached[p.IfIndex]
		if p.IfIndex == 0 || !ok || p.HostNetwork || (p.Interface != "" && p.Interface != name) {
			continue
		}
		key := p.Namespace + "/" + p.Name
		live[key] = true
		ep, rules := d.endpoint(p, key, res, ids)
		if err := d.maps.SetEndpoint(ep, rules); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", key, err))
			continue
		}
		keep[p.IfIndex] = true
		n++
	}
	for _, ifindex := range d.maps.Endpoints() {
		if !keep[ifindex] {
			if err := d.maps.RemoveEndpoint(ifindex); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for k := range d.epIDs {
		if !live[k] {
			delete(d.epIDs, k)
		}
	}
	rev, err := d.maps.Commit()
	if err != nil {
		errs = append(errs, err)
	}
	d.last = res
	return applied{Result: res, IDs: ids, Endpoints: n, Revision: rev}, errors.Join(errs...)
}

// endpoint builds one pod's kernel endpoint and rules.
func (d *datapath) endpoint(p *cluster.Pod, key string, res *policy.Result, ids *identity.Identities) (bpf.Endpoint, []bpf.Rule) {
	id, ok := d.epIDs[key]
	if !ok {
		d.nextEP++
		if d.nextEP >= 1<<31 {
			d.nextEP = 1
		}
		id = d.nextEP
		d.epIDs[key] = id
	}
	ident, _ := ids.Pod(p.Namespace, p.Name)
	ep := bpf.Endpoint{IfIndex: p.IfIndex, ID: id, Identity: uint32(ident)}
	pol, ok := res.Endpoint(p.Namespace, p.Name)
	if !ok || !d.enforce {
		return ep, nil
	}
	var rules []bpf.Rule
	for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
		dp := pol.Direction(dir)
		ep.Enforce[dir] = dp.Enforced
		ep.DenyID[dir] = d.policyID(dp.SelectedBy)
		for _, set := range []struct {
			entries []policy.Entry
			deny    bool
		}{{dp.Allow, false}, {dp.Deny, true}} {
			for _, e := range set.entries {
				rules = append(rules, bpf.Rule{Direction: uint8(dir), Peer: uint32(e.Key.Peer), Proto: e.Key.Proto,
					Port: e.Key.Port, PortBits: e.Key.PortBits, Deny: set.deny,
					PolicyID: d.policyID(e.Policies) | matchType(e.Key)<<policyMatchShift})
			}
		}
	}
	return ep, rules
}
