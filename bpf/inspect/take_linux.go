//go:build linux

package inspect

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/bpf/socklb"
	"github.com/flowbus/flowbus/internal/bpfpin"
)

// Take reads every map an agent pinned under dir. The socket LB's maps are
// read when they are pinned (the agent's --socket-lb); the flow, identity
// and policy maps must be.
func Take(dir, node string) (*Snapshot, error) {
	p, err := bpf.OpenPinned(dir)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	s := &Snapshot{Kind: Kind, Version: Version, Time: time.Now().UTC(), Node: node, PinDir: dir,
		Connections: []Connection{}, Services: []Service{}, Endpoints: []Endpoint{}, IPCache: []IPEntry{}}
	flows, err := p.Flows()
	if err != nil {
		return nil, err
	}
	for _, f := range flows {
		s.Connections = append(s.Connections, connection(f))
	}
	slices.SortFunc(s.Connections, compareConns)
	ipc, err := p.IPCache()
	if err != nil {
		return nil, err
	}
	for pf, e := range ipc {
		s.IPCache = append(s.IPCache, IPEntry{Prefix: pf, Identity: e.Identity, CIDR: e.CIDR})
	}
	sortIPCache(s.IPCache)
	eps, err := p.Endpoints()
	if err != nil {
		return nil, err
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, endpoint(e))
	}
	slices.SortFunc(s.Endpoints, func(a, b Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	svcs, err := socklb.ReadPinned(dir)
	switch {
	case errors.Is(err, bpfpin.ErrNotPinned):
	case err != nil:
		return nil, err
	default:
		s.SocketLB = true
		for _, sv := range svcs {
			out := Service{ID: sv.ID, Frontend: sv.Frontend.String(), Algorithm: sv.Algorithm.String(), Backends: []Backend{}}
			for _, b := range sv.Backends {
				out.Backends = append(out.Backends, Backend{Addr: netip.AddrPortFrom(b.Addr, b.Port), ID: b.ID})
			}
			s.Services = append(s.Services, out)
		}
	}
	return s, nil
}

func connection(f bpf.MapFlow) Connection {
	c := Connection{
		Proto: ProtoName(f.Protocol), Src: netip.AddrPortFrom(f.Src, f.SrcPort), Dst: netip.AddrPortFrom(f.Dst, f.DstPort),
		IfIndex: f.IfIndex, Direction: "ingress", State: "established", Verdict: "forwarded",
		Identity: f.PeerIdentity, PolicyID: f.PolicyID,
		Packets: [2]uint64{f.PacketsFwd, f.PacketsRev}, Bytes: [2]uint64{f.BytesFwd, f.BytesRev},
		FirstSeen: time.Unix(0, f.FirstSeenNs).UTC(), LastSeen: time.Unix(0, f.LastSeenNs).UTC(),
	}
	if f.Ingress {
		c.Direction = "egress" // the initiator's packets enter tc ingress: the pod opened it
	}
	switch {
	case f.Ended:
		c.State = "ended"
	case f.Midstream:
		c.State = "midstream"
	}
	if f.Verdict == bpf.VerdictDropped {
		c.Verdict = "dropped"
	}
	if f.Protocol == 6 {
		c.Flags = tcpFlags(f.TCPFlags)
	}
	return c
}

func tcpFlags(f uint16) string {
	var out []string
	for i, n := range []string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"} {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

func endpoint(e bpf.PinnedEndpoint) Endpoint {
	out := Endpoint{ID: e.ID, IfIndex: e.IfIndex, Identity: e.Identity, Enforced: []string{}, Rules: []Rule{}}
	if e.Enforce[bpf.Ingress] {
		out.Enforced = append(out.Enforced, "ingress")
	}
	if e.Enforce[bpf.Egress] {
		out.Enforced = append(out.Enforced, "egress")
	}
	for _, r := range e.Rules {
		out.Rules = append(out.Rules, rule(r))
	}
	return out
}

func rule(r bpf.Rule) Rule {
	out := Rule{Direction: "ingress", Peer: r.Peer, Proto: ProtoName(r.Proto), Port: r.Port, PortBits: r.PortBits,
		Verdict: "allow", PolicyID: r.PolicyID}
	if r.Direction == bpf.Egress {
		out.Direction = "egress"
	}
	if r.Deny {
		out.Verdict = "deny"
	}
	m := uint8(r.PolicyID >> 28)
	if m == 0 {
		m = matchOf(r.Peer, r.Proto, r.PortBits)
	}
	out.Match = MatchName(m)
	return out
}
