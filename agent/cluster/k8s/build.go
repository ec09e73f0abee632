package k8s

import (
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/flowbus/flowbus/agent/cluster"
)

// build makes a snapshot of the caches as they are now.
func (s *Source) build() *cluster.Snapshot {
	snap := &cluster.Snapshot{Source: SourceName}
	for _, o := range s.pods.GetStore().List() {
		p := o.(*corev1.Pod)
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		snap.Pods = append(snap.Pods, s.pod(p))
	}
	for _, o := range s.namespaces.GetStore().List() {
		ns := o.(*corev1.Namespace)
		snap.Namespaces = append(snap.Namespaces, cluster.Namespace{Name: ns.Name, Labels: ns.Labels})
	}
	bySvc := map[types.NamespacedName][]*discoveryv1.EndpointSlice{}
	for _, o := range s.slices.GetStore().List() {
		es := o.(*discoveryv1.EndpointSlice)
		if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := types.NamespacedName{Namespace: es.Namespace, Name: name}
			bySvc[k] = append(bySvc[k], es)
		}
	}
	for _, o := range s.services.GetStore().List() {
		svc := o.(*corev1.Service)
		snap.Services = append(snap.Services, service(svc, bySvc[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}]))
	}
	for _, o := range s.netpols.GetStore().List() {
		snap.NetworkPolicies = append(snap.NetworkPolicies, o.(*networkingv1.NetworkPolicy))
	}
	var invalid []Rejection
	snap.CiliumPolicies, invalid = s.policies.list()
	s.noteRejected(invalid)
	snap.SortObjects()
	return snap
}

// noteRejected logs and counts the objects first rejected in their current
// version, and keeps the list for Rejected.
func (s *Source) noteRejected(invalid []Rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]string, len(invalid))
	for _, r := range invalid {
		key := r.Kind + "/" + r.Namespace + "/" + r.Name
		rv := r.version
		seen[key] = rv
		if prev, ok := s.logged[key]; ok && prev == rv {
			continue
		}
		s.rejected.WithLabelValues(SourceName, r.Kind).Inc()
		s.log.Error("kubernetes source: policy left out", "kind", r.Kind, "namespace", r.Namespace, "name", r.Name, "resource_version", rv, "err", r.Err)
	}
	s.logged = seen
	s.invalid = invalid
}

func (s *Source) pod(p *corev1.Pod) cluster.Pod {
	cp := cluster.Pod{
		Namespace: p.Namespace, Name: p.Name, Labels: p.Labels,
		Node: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork,
	}
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			cp.IPs = append(cp.IPs, a)
		}
	}
	if len(p.Status.PodIPs) == 0 && p.Status.PodIP != "" {
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			cp.IPs = append(cp.IPs, a)
		}
	}
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			cp.Ports = append(cp.Ports, cluster.ContainerPort{Name: port.Name, Port: uint16(port.ContainerPort), Protocol: protocol(port.Protocol)})
		}
	}
	cp.Workload, cp.WorkloadKind = s.workload(p)
	return cp
}

// workload resolves a pod's workload through its controller's owner
// references (see the package doc).
func (s *Source) workload(p *corev1.Pod) (name, kind string) {
	ref := metav1.GetControllerOfNoCopy(p)
	if ref == nil {
		return p.Name, "Pod"
	}
	var owners cache.SharedIndexInformer
	switch ref.Kind {
	case "ReplicaSet":
		owners = s.rsets
	case "Job":
		owners = s.jobs
	default:
		return ref.Name, ref.Kind
	}
	if o, ok, _ := owners.GetStore().GetByKey(p.Namespace + "/" + ref.Name); ok {
		if m := o.(*metav1.PartialObjectMetadata); m.UID == ref.UID {
			if up := metav1.GetControllerOfNoCopy(m); up != nil {
				return up.Name, up.Kind
			}
			return ref.Name, ref.Kind
		}
	}
	if h := p.Labels["pod-template-hash"]; ref.Kind == "ReplicaSet" && h != "" && strings.HasSuffix(ref.Name, "-"+h) {
		return strings.TrimSuffix(ref.Name, "-"+h), "Deployment"
	}
	return ref.Name, ref.Kind
}

func service(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) cluster.Service {
	cs := cluster.Service{Namespace: svc.Namespace, Name: svc.Name}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil { // "None" for headless services
			cs.ClusterIPs = append(cs.ClusterIPs, a)
		}
	}
	for _, p := range svc.Spec.Ports {
		sp := cluster.ServicePort{Name: p.Name, Port: uint16(p.Port), Protocol: protocol(p.Protocol)}
		if p.TargetPort.Type == 0 { // an int; a name is resolved by the backends' ports
			sp.TargetPort = uint16(p.TargetPort.IntVal)
		}
		cs.Ports = append(cs.Ports, sp)
	}
	cs.Backends = backends(svc.Namespace, slices, func(c discoveryv1.EndpointConditions) bool { return c.Ready == nil || *c.Ready })
	if len(cs.Backends) == 0 {
		cs.Backends = backends(svc.Namespace, slices, func(c discoveryv1.EndpointConditions) bool {
			serving := c.Serving == nil || *c.Serving
			if c.Serving == nil && c.Ready != nil {
				serving = *c.Ready
			}
			return serving && c.Terminating != nil && *c.Terminating
		})
	}
	return cs
}

type backendKey struct {
	ip    netip.Addr
	port  uint16
	proto string
}

// backends lists the addresses of the endpoints keep accepts, for every
// port of their slice, each (address, port, protocol) once.
func backends(ns string, slices []*discoveryv1.EndpointSlice, keep func(discoveryv1.EndpointConditions) bool) []cluster.Backend {
	var out []cluster.Backend
	seen := map[backendKey]bool{}
	for _, es := range slices {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		ports := es.Ports
		if len(ports) == 0 {
			ports = []discoveryv1.EndpointPort{{}}
		}
		for _, ep := range es.Endpoints {
			if !keep(ep.Conditions) {
				continue
			}
			podNS, pod := ns, ""
			if r := ep.TargetRef; r != nil && r.Kind == "Pod" {
				pod = r.Name
				if r.Namespace != "" {
					podNS = r.Namespace
				}
			}
			for _, addr := range ep.Addresses {
				ip, err := netip.ParseAddr(addr)
				if err != nil {
					continue
				}
				for _, p := range ports {
					b := cluster.Backend{Namespace: podNS, Pod: pod, IP: ip}
					if p.Port != nil {
						b.Port = uint16(*p.Port)
						b.Protocol = "TCP"
					}
					if p.Protocol != nil {
						b.Protocol = string(*p.Protocol)
					}
					k := backendKey{ip, b.Port, b.Protocol}
					if !seen[k] {
						seen[k] = true
						out = append(out, b)
					}
				}
			}
		}
	}
	return out
}

func protocol(p corev1.Protocol) string {
	if p == "" {
		return string(corev1.ProtocolTCP)
	}
	return string(p)
}
