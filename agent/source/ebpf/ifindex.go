//go:build linux

package ebpf

import (
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/flowbus/flowbus/agent/cluster"
)

// withInterfaces returns snap with the host interface of this node's pods
// filled in where the cluster source does not know it: the Kubernetes API
// knows a pod's node and addresses, not its veth. A pod's interface is the
// attached interface the host routes its address to, as Cilium's
// per-endpoint routes (and the lab's) do. A pod whose route leads to no
// attached interface is left without one: it is not an endpoint of this
// agent. snap itself is not changed; it is returned as is when no pod
// needed an interface.
func withInterfaces(snap *cluster.Snapshot, node string, attached map[uint32]string, route func(netip.Addr) (uint32, bool)) *cluster.Snapshot {
	var pods []cluster.Pod
	for i := range snap.Pods {
		p := &snap.Pods[i]
		if p.IfIndex != 0 || p.HostNetwork || p.Node != node || len(p.IPs) == 0 {
			continue
		}
		for _, ip := range p.IPs {
			idx, ok := route(ip)
			name, att := attached[idx]
			if !ok || !att {
				continue
			}
			if pods == nil {
				pods = append([]cluster.Pod(nil), snap.Pods...)
			}
			pods[i].IfIndex, pods[i].Interface = idx, name
			break
		}
	}
	if pods == nil {
		return snap
	}
	out := *snap
	out.Pods = pods
	return &out
}

// routeIfIndex is the interface the host routes ip to, by the kernel's
// own lookup (RTM_GETROUTE).
func routeIfIndex(ip netip.Addr) (uint32, bool) {
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil || len(routes) == 0 || routes[0].LinkIndex <= 0 {
		return 0, false
	}
	return uint32(routes[0].LinkIndex), true
}
