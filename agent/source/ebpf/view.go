package ebpf

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/schemas"
)

// view is what the flow converter knows of the cluster at one snapshot:
// pods by address and by host interface as flow endpoints (identity and
// labels from the snapshot's identities), services by backend, and the
// labels of identities that are not pods' (world, CIDR, reserved). It is
// immutable once built.
type view struct {
	byIP     map[netip.Addr]*schemas.Endpoint
	byIf     map[uint32]*schemas.Endpoint
	byUID    map[string]*schemas.Endpoint // Kubernetes pod UID → endpoint
	backends map[backendKey]schemas.Service
	ids      *identity.Identities
}

type backendKey struct {
	ip    netip.Addr
	port  uint16
	proto uint8
}

func protoNumber(s string) uint8 {
	switch strings.ToUpper(s) {
	case "TCP", "":
		return 6
	case "UDP":
		return 17
	case "SCTP":
		return 132
	}
	return 0
}

// newView builds the view of snap with its identities. attached names the
// interfaces the source is attached to (ifindex → name): a pod is behind
// one when the snapshot says so.
func newView(snap *cluster.Snapshot, ids *identity.Identities, attached map[uint32]string) *view {
	v := &view{byIP: map[netip.Addr]*schemas.Endpoint{}, byIf: map[uint32]*schemas.Endpoint{}, byUID: map[string]*schemas.Endpoint{},
		backends: map[backendKey]schemas.Service{}, ids: ids}
	for i := range snap.Pods {
		p := &snap.Pods[i]
		if p.HostNetwork {
			continue // the node's addresses, not an endpoint's
		}
		ep := &schemas.Endpoint{Namespace: p.Namespace, PodName: p.Name, Workload: p.Workload, WorkloadKind: p.WorkloadKind}
		if id, ok := ids.Pod(p.Namespace, p.Name); ok {
			ep.Identity = uint32(id)
			ep.Labels = slices.Clone(ids.Labels(id))
		}
		for _, a := range p.IPs {
			if _, taken := v.byIP[a.Unmap()]; !taken {
				v.byIP[a.Unmap()] = ep
			}
		}
		if p.UID != "" {
			v.byUID[p.UID] = ep
		}
		if name, ok := attached[p.IfIndex]; ok && p.IfIndex != 0 && (p.Interface == "" || p.Interface == name) {
			v.byIf[p.IfIndex] = ep
		}
	}
	for i := range snap.Services {
		s := &snap.Services[i]
		svc := schemas.Service{Namespace: s.Namespace, Name: s.Name}
		for _, b := range s.Backends {
			v.backends[backendKey{b.IP.Unmap(), b.Port, protoNumber(b.Protocol)}] = svc
		}
	}
	return v
}

// pod returns the endpoint that owns address a.
func (v *view) pod(a netip.Addr) (*schemas.Endpoint, bool) {
	if v == nil {
		return nil, false
	}
	ep, ok := v.byIP[a.Unmap()]
	return ep, ok
}

// podBehind returns the endpoint behind an attached interface.
func (v *view) podBehind(ifindex uint32) (*schemas.Endpoint, bool) {
	if v == nil {
		return nil, false
	}
	ep, ok := v.byIf[ifindex]
	return ep, ok
}

// service returns the service whose backend is ip:port/proto.
func (v *view) service(ip netip.Addr, port uint16, proto uint8) (schemas.Service, bool) {
	if v == nil {
		return schemas.Service{}, false
	}
	s, ok := v.backends[backendKey{ip.Unmap(), port, proto}]
	return s, ok
}

// peer returns what the view knows of an address that is not a pod's
// (the host, another node, a CIDR, the world) under the identity the
// kernel decided with: that identity and its labels.
func (v *view) peer(id uint32) schemas.Endpoint {
	if v == nil || id == 0 {
		return schemas.Endpoint{}
	}
	labels := v.ids.Labels(identity.ID(id))
	if labels == nil {
		labels = identity.ReservedLabels(identity.ID(id))
	}
	return schemas.Endpoint{Identity: id, Labels: slices.Clone(labels)}
}
