//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
)

// Direction of a policy rule, from the endpoint's side.
const (
	Ingress uint8 = 0 // toward the endpoint: its ingress policy
	Egress  uint8 = 1 // from the endpoint: its egress policy
)

// Verdicts and drop reasons of Event (Hubble's numbers: flow.Verdict,
// flow.DropReason).
const (
	VerdictForwarded     uint8 = uint8(bpfVerdictVERDICT_FORWARDED)
	VerdictDropped       uint8 = uint8(bpfVerdictVERDICT_DROPPED)
	DropReasonPolicyDeny uint8 = uint8(bpfDropReasonDROP_POLICY_DENIED)
)

// IdentityWorld is the identity the program gives an address the ipcache
// does not know (Cilium's reserved world identity).
const IdentityWorld = 2

// Endpoint is what the program needs to know of the pod behind one host
// interface to enforce its policy.
type Endpoint struct {
	IfIndex  uint32
	ID       uint32    // Cilium endpoint ID, below 1<<31
	Identity uint32    // its security identity
	Enforce  [2]bool   // by direction (Ingress, Egress): some policy selects it, so the direction is default deny
	DenyID   [2]uint32 // by direction: the policy_id a default-deny drop reports (the policies that select it)
}

// Rule is one allow or deny rule of an endpoint's policy: traffic in
// Direction from or to a peer of identity Peer (0: any peer), of protocol
// Proto (IANA number; 0: every protocol and port), to the destination ports
// whose first PortBits bits equal Port's (16: that port, 0: every port).
// PolicyID names the policies it comes from, as a key of the caller's
// table; it comes back on the flows it decides.
type Rule struct {
	Direction uint8
	Peer      uint32
	Proto     uint8
	Port      uint16
	PortBits  uint8
	Deny      bool
	PolicyID  uint32
}

// IPCacheEntry is what the ipcache says of a prefix: its security identity,
// and the CIDR identity of the most specific prefix a policy names that
// contains it (0: none), which the program also looks rules up for.
type IPCacheEntry struct {
	Identity uint32
	CIDR     uint32
}

// PolicyMaps programs the identity and policy maps of a loaded program:
// the ipcache (address prefix → identity), the endpoints (interface → pod)
// and each endpoint's rules. Updates are incremental: SetIPCache writes only
// what changed; SetEndpoint rewrites only an endpoint whose rules changed,
// under the other generation, then switches the endpoint to it in one map
// update, so a new flow sees either the old rules or the new ones, never a
// mix; Commit then moves policy_revision on, and every flow's verdict is
// decided again on its next packet. Safe for concurrent use.
type PolicyMaps struct {
	objs *bpfObjects

	mu       sync.Mutex
	ipcache  map[netip.Prefix]IPCacheEntry
	eps      map[uint32]*epState
	revision uint32
}

type epState struct {
	ep    Endpoint
	gen   uint8
	rules []Rule // sorted, as written under gen
}

func newPolicyMaps(objs *bpfObjects) *PolicyMaps {
	return &PolicyMaps{objs: objs, ipcache: map[netip.Prefix]IPCacheEntry{}, eps: map[uint32]*epState{}}
}

// Policy returns the collector's policy maps.
func (c *Collector) Policy() *PolicyMaps {
	c.policyOnce.Do(func() { c.policy = newPolicyMaps(c.objs) })
	return c.policy
}

func ipcacheKey(p netip.Prefix) bpfIpcacheKey {
	a := p.Addr()
	bits := p.Bits()
	if a.Is4() {
		bits += 96
	}
	return bpfIpcacheKey{Prefixlen: uint32(bits), Addr: a.As16()}
}

// SetIPCache makes the ipcache hold exactly entries, writing what
// changed. IPv4 prefixes are stored IPv4-mapped.
func (m *PolicyMaps) SetIPCache(entries map[netip.Prefix]IPCacheEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for p, e := range entries {
		p = p.Masked()
		if old, ok := m.ipcache[p]; ok && old == e {
			continue
		}
		k := ipcacheKey(p)
		if err := m.objs.Ipcache.Update(&k, &bpfIpcacheValue{Identity: e.Identity, CidrIdentity: e.CIDR}, ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("ipcache %s: %w", p, err))
			continue
		}
		m.ipcache[p] = e
	}
	for p := range m.ipcache {
		if _, ok := entries[p]; ok {
			continue
		}
		k := ipcacheKey(p)
		if err := m.objs.Ipcache.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("ipcache %s: %w", p, err))
			continue
		}
		delete(m.ipcache, p)
	}
	return errors.Join(errs...)
}

func ruleKey(epID uint32, gen uint8, r Rule) bpfPolicyKey {
	k := bpfPolicyKey{Slot: epID<<1 | uint32(gen&1), Peer: r.Peer, Direction: r.Direction, Proto: r.Proto, Prefixlen: 72}
	if r.Proto != 0 {
		bits := min(r.PortBits, 16)
		k.Prefixlen = 80 + uint32(bits)
		port := r.Port
		if bits < 16 {
			port &^= 0xffff >> bits
		}
		var be [2]byte
		binary.BigEndian.PutUint16(be[:], port)
		k.Port = binary.LittleEndian.Uint16(be[:]) // the key holds network order
	}
	return k
}

func sortRules(rules []Rule) []Rule {
	out := slices.Clone(rules)
	slices.SortFunc(out, func(a, b Rule) int {
		switch {
		case a.Deny != b.Deny:
			if a.Deny {
				return -1
			}
			return 1
		case a.Direction != b.Direction:
			return int(a.Direction) - int(b.Direction)
		case a.Peer != b.Peer:
			return cmpU32(a.Peer, b.Peer)
		case a.Proto != b.Proto:
			return int(a.Proto) - int(b.Proto)
		case a.PortBits != b.PortBits:
			return int(a.PortBits) - int(b.PortBits)
		case a.Port != b.Port:
			return int(a.Port) - int(b.Port)
		}
		return cmpU32(a.PolicyID, b.PolicyID)
	})
	return out
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SetEndpoint makes ep's policy rules in force, atomically for the
// endpoint: if its rules changed, they are written under the generation not
// in use (allow rules to policy_allow, deny rules to policy_deny), the
// endpoint entry switches to it in one update, and the old generation's
// entries are deleted. Of two rules with the same key the first is kept.
func (m *PolicyMaps) SetEndpoint(ep Endpoint, rules []Rule) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rules = sortRules(rules)
	cur := m.eps[ep.IfIndex]
	gen := uint8(0)
	if cur != nil {
		if cur.ep == ep && slices.Equal(cur.rules, rules) {
			return nil
		}
		gen = cur.gen
		if !slices.Equal(cur.rules, rules) || cur.ep.ID != ep.ID {
			gen ^= 1
		}
	}
	if cur == nil || gen != cur.gen {
		if err := m.writeRules(ep.ID, gen, rules); err != nil {
			m.deleteRules(ep.ID, gen, rules)
			return err
		}
	}
	v := bpfEndpoint{Id: ep.ID, Identity: ep.Identity, DenyId: ep.DenyID, Gen: gen}
	for d := range 2 {
		if ep.Enforce[d] {
			v.Enforce[d] = 1
		}
	}
	for _, r := range rules {
		if r.Deny {
			v.HasDeny[r.Direction&1] = 1
		}
	}
	if err := m.objs.Endpoints.Update(ep.IfIndex, &v, ebpf.UpdateAny); err != nil {
		if cur == nil || gen != cur.gen {
			m.deleteRules(ep.ID, gen, rules)
		}
		return fmt.Errorf("endpoint %d on ifindex %d: %w", ep.ID, ep.IfIndex, err)
	}
	if cur != nil && gen != cur.gen {
		m.deleteRules(cur.ep.ID, cur.gen, cur.rules)
	}
	m.eps[ep.IfIndex] = &epState{ep: ep, gen: gen, rules: rules}
	return nil
}

func (m *PolicyMaps) ruleMap(r Rule) *ebpf.Map {
	if r.Deny {
		return m.objs.PolicyDeny
	}
	return m.objs.PolicyAllow
}

func (m *PolicyMaps) writeRules(epID uint32, gen uint8, rules []Rule) error {
	for _, r := range rules {
		k := ruleKey(epID, gen, r)
		if err := m.ruleMap(r).Update(&k, &bpfPolicyValue{PolicyId: r.PolicyID}, ebpf.UpdateNoExist); err != nil &&
			!errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("policy rule of endpoint %d: %w", epID, err)
		}
	}
	return nil
}

func (m *PolicyMaps) deleteRules(epID uint32, gen uint8, rules []Rule) {
	for _, r := range rules {
		k := ruleKey(epID, gen, r)
		_ = m.ruleMap(r).Delete(&k)
	}
}

// RemoveEndpoint forgets the endpoint behind ifindex and its rules.
func (m *PolicyMaps) RemoveEndpoint(ifindex uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.eps[ifindex]
	if cur == nil {
		return nil
	}
	if err := m.objs.Endpoints.Delete(ifindex); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("endpoint on ifindex %d: %w", ifindex, err)
	}
	m.deleteRules(cur.ep.ID, cur.gen, cur.rules)
	delete(m.eps, ifindex)
	return nil
}

// Endpoints returns the interfaces that have an endpoint.
func (m *PolicyMaps) Endpoints() []uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]uint32, 0, len(m.eps))
	for i := range m.eps {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// Commit moves policy_revision on, so that every flow's verdict is decided
// again on its next packet under the maps as they are now. It returns the
// new revision.
func (m *PolicyMaps) Commit() (uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.revision++
	if m.revision == 0 {
		m.revision = 1
	}
	if err := m.objs.PolicyRevision.Set(m.revision); err != nil {
		return 0, fmt.Errorf("set policy revision: %w", err)
	}
	return m.revision, nil
}

// KernelMemory returns what the kernel charges for each identity and
// policy map now, by map name (ipcache, endpoints, policy_allow,
// policy_deny): the memlock line of the map's /proc/self/fdinfo. The LPM
// tries allocate per entry, so theirs grows with what is written (an empty
// one reports 0); the endpoints hash is preallocated to its capacity.
func (m *PolicyMaps) KernelMemory() (map[string]uint64, error) {
	out := map[string]uint64{}
	for name, mp := range map[string]*ebpf.Map{
		"ipcache": m.objs.Ipcache, "endpoints": m.objs.Endpoints,
		"policy_allow": m.objs.PolicyAllow, "policy_deny": m.objs.PolicyDeny,
	} {
		b, err := fdinfoMemlock(mp.FD())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = b
	}
	return out, nil
}

// fdinfoMemlock reads the memlock line of /proc/self/fdinfo/<fd>.
func fdinfoMemlock(fd int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "memlock:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no memlock in fdinfo")
}
