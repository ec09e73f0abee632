//go:build linux

package ebpf

import (
	"net/netip"
	"testing"

	"github.com/flowbus/flowbus/agent/cluster"
)

// TestWithInterfacesFindsThisNodesPodsByRoute: a pod of this node without
// an interface gets the attached interface its address is routed to; pods
// of other nodes, host-network pods, pods routed to an interface that is
// not attached, and pods the source already placed are left as they are,
// and the snapshot given is not changed.
func TestWithInterfacesFindsThisNodesPodsByRoute(t *testing.T) {
	a := netip.MustParseAddr
	snap := &cluster.Snapshot{Revision: 7, Pods: []cluster.Pod{
		{Name: "web", Node: "n1", IPs: []netip.Addr{a("10.0.0.2"), a("fd00::2")}},
		{Name: "v6only-route", Node: "n1", IPs: []netip.Addr{a("10.0.0.3"), a("fd00::3")}},
		{Name: "elsewhere", Node: "n2", IPs: []netip.Addr{a("10.0.1.2")}},
		{Name: "hostnet", Node: "n1", HostNetwork: true, IPs: []netip.Addr{a("192.168.0.1")}},
		{Name: "unattached", Node: "n1", IPs: []netip.Addr{a("10.0.0.9")}},
		{Name: "placed", Node: "n1", IPs: []netip.Addr{a("10.0.0.4")}, IfIndex: 40, Interface: "lxc40"},
		{Name: "no-route", Node: "n1", IPs: []netip.Addr{a("10.0.0.5")}},
	}}
	routes := map[netip.Addr]uint32{a("10.0.0.2"): 12, a("fd00::3"): 13, a("10.0.1.2"): 12, a("192.168.0.1"): 12, a("10.0.0.9"): 99, a("10.0.0.4"): 12}
	lookups := 0
	route := func(ip netip.Addr) (uint32, bool) { lookups++; i, ok := routes[ip]; return i, ok }
	attached := map[uint32]string{12: "lxc12", 13: "lxc13", 40: "lxc40"}

	got := withInterfaces(snap, "n1", attached, route)
	want := []struct {
		ifindex uint32
		name    string
	}{{12, "lxc12"}, {13, "lxc13"}, {0, ""}, {0, ""}, {0, ""}, {40, "lxc40"}, {0, ""}}
	for i, w := range want {
		if p := got.Pods[i]; p.IfIndex != w.ifindex || p.Interface != w.name {
			t.Errorf("pod %s: interface %d %q; want %d %q", p.Name, p.IfIndex, p.Interface, w.ifindex, w.name)
		}
	}
	if got.Revision != 7 || snap.Pods[0].IfIndex != 0 || snap.Pods[1].Interface != "" {
		t.Errorf("revision %d, given snapshot's pods %+v; want 7 and the given snapshot unchanged", got.Revision, snap.Pods[:2])
	}
	// web: 1 lookup; v6only-route: 2; unattached: 1; no-route: 1.
	if lookups != 5 {
		t.Errorf("%d route lookups; want 5 (this node's pods without an interface only)", lookups)
	}
	if same := withInterfaces(&cluster.Snapshot{Pods: snap.Pods[2:4]}, "n1", attached, route); &same.Pods[0] != &snap.Pods[2] {
		t.Error("a snapshot with nothing to fill in was copied")
	}
}
