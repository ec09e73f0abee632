package identity

import (
	"net/netip"
	"slices"

	"github.com/flowbus/flowbus/schemas/hubble"
)

// Pod returns the identity of the pod namespace/name; host-network pods
// have none (their addresses are the node's).
func (ids *Identities) Pod(namespace, name string) (ID, bool) {
	id, ok := ids.pods[namespace+"/"+name]
	return id, ok
}

// Labels returns the labels of an identity (reserved, a pod label set or a
// prefix's), sorted, or nil for an identity the allocation does not know.
// The caller must not modify them.
func (ids *Identities) Labels(id ID) []string { return ids.labels[id] }

// PodIdentities returns the identities of the pods' label sets, sorted.
// The caller must not modify them.
func (ids *Identities) PodIdentities() []ID { return ids.podIDs }

// CIDR returns the identity of a policy prefix (masked first).
func (ids *Identities) CIDR(p netip.Prefix) (ID, bool) {
	id, ok := ids.byPrefix[netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapShift(p)).Masked()]
	return id, ok
}

// Prefixes returns the policy prefixes that have identities, sorted by
// address and then length. The caller must not modify them.
func (ids *Identities) Prefixes() []netip.Prefix { return ids.prefixes }

// PrefixOf returns the most specific policy prefix that contains addr and
// its identity.
func (ids *Identities) PrefixOf(addr netip.Addr) (netip.Prefix, ID, bool) {
	addr = addr.Unmap()
	for _, bits := range ids.prefixLens[family(addr)] {
		p := netip.PrefixFrom(addr, bits).Masked()
		if id, ok := ids.byPrefix[p]; ok {
			return p, id, true
		}
	}
	return netip.Prefix{}, 0, false
}

// Lookup returns what the local node's ipcache knows of addr (see
// LookupFrom).
func (ids *Identities) Lookup(addr netip.Addr) Peer { return ids.LookupFrom(addr, ids.node) }

// LookupFrom returns what the ipcache of node knows of addr: the owning
// pod's identity (host for a host-network pod on node itself, remote-node
// for one elsewhere), kube-apiserver, or else the most specific policy
// prefix's identity, or else world; and in every case the most specific
// policy prefix's identity as Peer.CIDR.
func (ids *Identities) LookupFrom(addr netip.Addr, node string) Peer {
	addr = addr.Unmap()
	_, cidr, _ := ids.PrefixOf(addr)
	e, ok := ids.addrs[addr]
	if !ok {
		if cidr != 0 {
			return Peer{ID: cidr, CIDR: cidr}
		}
		return Peer{ID: hubble.IdentityWorld}
	}
	p := Peer{ID: e.id, CIDR: cidr, Pod: e.pod, Node: e.node, HostNetwork: e.hostNetwork}
	if e.hostNetwork {
		p.ID = hubble.IdentityRemoteNode
		if node != "" && e.node == node {
			p.ID = hubble.IdentityHost
		}
	}
	return p
}

// IPCache returns the local node's ipcache: one entry per pod, node and
// API server address (host length) and one per policy prefix, sorted by
// address and then length. An LPM lookup over them gives Lookup's answer.
func (ids *Identities) IPCache() []IPCacheEntry {
	out := make([]IPCacheEntry, 0, len(ids.addrs)+len(ids.prefixes))
	for a := range ids.addrs {
		p := ids.Lookup(a)
		out = append(out, IPCacheEntry{Prefix: netip.PrefixFrom(a, a.BitLen()), ID: p.ID, CIDR: p.CIDR})
	}
	for _, p := range ids.prefixes {
		if p.Bits() == p.Addr().BitLen() {
			if _, owned := ids.addrs[p.Addr()]; owned {
				continue // the address's own entry carries the prefix as CIDR
			}
		}
		id := ids.byPrefix[p]
		out = append(out, IPCacheEntry{Prefix: p, ID: id, CIDR: id})
	}
	slices.SortFunc(out, func(x, y IPCacheEntry) int { return comparePrefix(x.Prefix, y.Prefix) })
	return out
}
