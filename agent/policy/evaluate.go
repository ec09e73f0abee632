package policy

import (
	"net/netip"
	"slices"

	"github.com/flowbus/flowbus/agent/identity"
)

// Flow is the first packet of a flow, as the datapath sees it: addresses
// after service translation, IP protocol and destination port (0 for a
// protocol without ports).
type Flow struct {
	Src, Dst netip.Addr
	Proto    uint8
	Port     uint16
}

// Verdict is the datapath's decision on a flow: the source endpoint's
// egress policy first, then, if it passed, the destination endpoint's
// ingress policy.
type Verdict struct {
	Allowed bool
	Egress  Decision // at the source, when it is an endpoint
	Ingress Decision // at the destination, when it is an endpoint and egress allowed
}

// Decision is one endpoint's decision in one direction.
type Decision struct {
	// Endpoint is the deciding endpoint, "namespace/name"; empty when this
	// side is not an endpoint or was not reached (nothing decided).
	Endpoint string
	// Peer is what the endpoint's node's ipcache says of the other side.
	Peer      identity.Peer
	Allowed   bool
	AllowedBy []PolicyRef // the policies of the allow entry that matched
	DeniedBy  []PolicyRef // a deny entry's policies, or else SelectedBy
	// Match is the entry that decided (allow or deny), nil when the
	// decision is "no policy" or default deny.
	Match *Entry
	// Lookup is which of the four lookups matched (1 to 4, see the
	// package doc), 0 for none.
	Lookup     int
	FailClosed string
}

// Evaluate decides a flow exactly as the kernel will: the reference model
// of the datapath. A pod's traffic to itself is allowed without a lookup
// (it never crosses the pod's interface); an endpoint res does not know is
// treated as selected by no policy.
func Evaluate(res *Result, ids *identity.Identities, f Flow) Verdict {
	src, dst := ids.LookupFrom(f.Src, ""), ids.LookupFrom(f.Dst, "")
	srcEP, dstEP := endpointOf(res, src), endpointOf(res, dst)
	v := Verdict{Allowed: true}
	if srcEP != nil && srcEP == dstEP {
		return v
	}
	if srcEP != nil {
		v.Egress = decide(srcEP, Egress, ids.LookupFrom(f.Dst, src.Node), f)
		if !v.Egress.Allowed {
			v.Allowed = false
			return v
		}
	}
	if dstEP != nil {
		v.Ingress = decide(dstEP, Ingress, ids.LookupFrom(f.Src, dst.Node), f)
		v.Allowed = v.Ingress.Allowed
	}
	return v
}

func endpointOf(res *Result, p identity.Peer) *EndpointPolicy {
	if p.Pod == "" || p.HostNetwork {
		return nil
	}
	for i := 0; i < len(p.Pod); i++ {
		if p.Pod[i] == '/' {
			ep, _ := res.Endpoint(p.Pod[:i], p.Pod[i+1:])
			return ep
		}
	}
	return nil
}

// decide is one endpoint's policy lookup, in the kernel's order.
func decide(ep *EndpointPolicy, d Direction, peer identity.Peer, f Flow) Decision {
	dp := ep.Direction(d)
	dec := Decision{Endpoint: ep.Namespace + "/" + ep.Name, Peer: peer, FailClosed: dp.FailClosed}
	addr := f.Dst
	if d == Ingress {
		addr = f.Src
	}
	peers := LookupOrder(peer, addr)
	if e, n := Lookup(dp.Deny, peers, f.Proto, f.Port); e != nil {
		dec.Match, dec.Lookup, dec.DeniedBy = e, n, e.Policies
		return dec
	}
	if !dp.Enforced {
		dec.Allowed = true
		return dec
	}
	if e, n := Lookup(dp.Allow, peers, f.Proto, f.Port); e != nil {
		dec.Allowed, dec.Match, dec.Lookup, dec.AllowedBy = true, e, n, e.Policies
		return dec
	}
	dec.DeniedBy = dp.SelectedBy
	return dec
}

// LookupOrder returns the peer identities the kernel looks up, in order,
// for a peer the ipcache described as peer (at address addr): its
// identity; the world identity of its address family if it is outside the
// cluster; the identity of the most specific policy prefix containing it
// if that differs (a pod inside an ipBlock); any peer (0).
func LookupOrder(peer identity.Peer, addr netip.Addr) []identity.ID {
	out := make([]identity.ID, 0, 4)
	out = append(out, peer.ID)
	if peer.ID.IsWorld() {
		out = append(out, worldFamily(addr))
	}
	if peer.CIDR != 0 && peer.CIDR != peer.ID {
		out = append(out, peer.CIDR)
	}
	return append(out, 0)
}

// Lookup does the kernel's lookups in entries (sorted by Key), one per
// peer of peers in order, each a longest-prefix match on (protocol, port);
// it returns the first entry found and which lookup found it (from 1).
func Lookup(entries []Entry, peers []identity.ID, proto uint8, port uint16) (*Entry, int) {
	if len(entries) == 0 {
		return nil, 0
	}
	for n, pe := range peers {
		if e := lpm(entries, pe, proto, port); e != nil {
			return e, n + 1
		}
	}
	return nil, 0
}

func lpm(entries []Entry, peer identity.ID, proto uint8, port uint16) *Entry {
	find := func(k Key) *Entry {
		if i, ok := slices.BinarySearchFunc(entries, k, func(e Entry, k Key) int { return compareKey(e.Key, k) }); ok {
			return &entries[i]
		}
		return nil
	}
	if proto != 0 {
		for bits := 16; bits >= 0; bits-- {
			if e := find(Key{Peer: peer, Proto: proto, Port: port & portMask(uint8(bits)), PortBits: uint8(bits)}); e != nil {
				return e
			}
		}
	}
	return find(Key{Peer: peer})
}
