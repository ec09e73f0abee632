//go:build linux

package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/flowbus/flowbus/internal/bpfpin"
)

// The flow, identity and policy maps the Collector pins (PinMaps), by
// their names in flow.c, which are their file names.
const (
	MapFlows4      = "flows4"
	MapFlows6      = "flows6"
	MapIPCache     = "ipcache"
	MapEndpoints   = "endpoints"
	MapPolicyAllow = "policy_allow"
	MapPolicyDeny  = "policy_deny"
)

// PinnedMapNames are the maps PinMaps pins.
var PinnedMapNames = []string{MapFlows4, MapFlows6, MapIPCache, MapEndpoints, MapPolicyAllow, MapPolicyDeny}

func pinnable(objs *bpfObjects) map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		MapFlows4: objs.Flows4, MapFlows6: objs.Flows6, MapIPCache: objs.Ipcache,
		MapEndpoints: objs.Endpoints, MapPolicyAllow: objs.PolicyAllow, MapPolicyDeny: objs.PolicyDeny,
	}
}

// PinMaps pins the flow, identity and policy maps under dir (internal/bpfpin),
// replacing stale pins, so that `flowbus bpf` and `flowbus audit` can read
// them from another process.
func (c *Collector) PinMaps(dir string) error { return bpfpin.Pin(dir, pinnable(c.objs)) }

// UnpinMaps removes the pins PinMaps made that are still this collector's.
func (c *Collector) UnpinMaps(dir string) error { return bpfpin.Unpin(dir, pinnable(c.objs)) }

// Pinned is a read-only view of the maps a Collector pinned, opened from
// another process.
type Pinned struct {
	maps map[string]*ebpf.Map
	objs bpfObjects // the flows maps of maps, for scanFlows
}

// OpenPinned opens the maps pinned under dir. Missing maps are an error
// wrapping bpfpin.ErrNotPinned.
func OpenPinned(dir string) (*Pinned, error) {
	ms, err := bpfpin.Open(dir, PinnedMapNames...)
	if err != nil {
		return nil, err
	}
	p := &Pinned{maps: ms}
	p.objs.Flows4, p.objs.Flows6 = ms[MapFlows4], ms[MapFlows6]
	return p, nil
}

// Close closes the maps.
func (p *Pinned) Close() { bpfpin.Close(p.maps) }

// MapFlow is one entry of the flow maps: the flow as an Event would carry it
// (Kind is EventFlowStart, counts are those in the map now), and whether
// the kernel has seen it end (it stays until the sweep frees it, collecting
// its tail).
type MapFlow struct {
	Event
	Ended bool
}

// Flows returns every entry of flows4 and flows6, IPv4 first.
func (p *Pinned) Flows() ([]MapFlow, error) {
	var out []MapFlow
	mono := MonoToUnix()
	err := scanFlows(&p.objs, false, func(k *bpfFlowKey, st *bpfFlowStats) {
		var f MapFlow
		f.fill(EventFlowStart, k, st, mono)
		f.Ended = st.Flags&uint32(bpfFlowFlagFLOW_ENDED) != 0
		out = append(out, f)
	})
	return out, err
}

// IPCache returns the ipcache: prefix → identity (IPv4 prefixes unmapped).
func (p *Pinned) IPCache() (map[netip.Prefix]IPCacheEntry, error) {
	out := map[netip.Prefix]IPCacheEntry{}
	var k bpfIpcacheKey
	var v bpfIpcacheValue
	it := p.maps[MapIPCache].Iterate()
	for it.Next(&k, &v) {
		a := netip.AddrFrom16(k.Addr)
		bits := int(k.Prefixlen)
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		pf, err := a.Prefix(bits)
		if err != nil {
			return nil, fmt.Errorf("ipcache key %v/%d: %w", a, k.Prefixlen, err)
		}
		out[pf] = IPCacheEntry{Identity: v.Identity, CIDR: v.CidrIdentity}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read ipcache: %w", err)
	}
	return out, nil
}

// PinnedEndpoint is an endpoints map entry and the rules in force for it
// (those of its current generation).
type PinnedEndpoint struct {
	Endpoint
	Gen   uint8
	Rules []Rule // sorted as SetEndpoint sorts them: deny first
}

// Endpoints returns every endpoint with its rules in force, by ifindex.
func (p *Pinned) Endpoints() ([]PinnedEndpoint, error) {
	rules := map[uint32][]Rule{} // by slot (id<<1 | gen)
	for _, deny := range []bool{false, true} {
		name := MapPolicyAllow
		if deny {
			name = MapPolicyDeny
		}
		var k bpfPolicyKey
		var v bpfPolicyValue
		it := p.maps[name].Iterate()
		for it.Next(&k, &v) {
			rules[k.Slot] = append(rules[k.Slot], ruleFromKey(&k, deny, v.PolicyId))
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
	}
	var out []PinnedEndpoint
	var ifindex uint32
	var v bpfEndpoint
	it := p.maps[MapEndpoints].Iterate()
	for it.Next(&ifindex, &v) {
		ep := PinnedEndpoint{Endpoint: Endpoint{IfIndex: ifindex, ID: v.Id, Identity: v.Identity, DenyID: v.DenyId}, Gen: v.Gen}
		for d := range 2 {
			ep.Enforce[d] = v.Enforce[d] != 0
		}
		ep.Rules = sortRules(rules[v.Id<<1|uint32(v.Gen&1)])
		out = append(out, ep)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	return out, nil
}

// ruleFromKey is ruleKey's inverse.
func ruleFromKey(k *bpfPolicyKey, deny bool, policyID uint32) Rule {
	r := Rule{Direction: k.Direction, Peer: k.Peer, Proto: k.Proto, Deny: deny, PolicyID: policyID}
	if k.Prefixlen > 80 {
		r.PortBits = uint8(min(k.Prefixlen-80, 16))
		var b [2]byte
		binary.LittleEndian.PutUint16(b[:], k.Port) // the key holds network order
		r.Port = binary.BigEndian.Uint16(b[:])
	}
	return r
}
