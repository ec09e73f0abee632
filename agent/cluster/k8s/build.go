package k8s

import (
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"

	"github.com/flowbus/flowbus/agent/cluster"
)

// build makes a snapshot of the caches as they are now.
func (s *Source) build() *cluster.Snapshot {
	snap := &cluster.Snapshot{Source: SourceName}
	pods := s.pods.GetStore().List()
	snap.Pods = make([]cluster.Pod, 0, len(pods))
	for _, o := range pods {
		e := o.(*podEntry)
		if e.Terminal {
			continue
		}
		p := e.Pod
		p.Workload, p.WorkloadKind = s.workload(e)
		snap.Pods = append(snap.Pods, p)
	}
	for _, o := range s.namespaces.GetStore().List() {
		ns := o.(*corev1.Namespace)
		snap.Namespaces = append(snap.Namespaces, cluster.Namespace{Name: ns.Name, Labels: ns.Labels})
	}
	bySvc := map[types.NamespacedName][]*sliceEntry{}
	for _, o := range s.slices.GetStore().List() {
		if e := o.(*sliceEntry); e.Service != "" {
			k := types.NamespacedName{Namespace: e.Namespace, Name: e.Service}
			bySvc[k] = append(bySvc[k], e)
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

// workload resolves a pod's workload through its controller's owner
// references (see the package doc).
func (s *Source) workload(e *podEntry) (name, kind string) {
	ref := e.Controller
	if ref == nil {
		return e.Name, "Pod"
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
	if o, ok, _ := owners.GetStore().GetByKey(e.Namespace + "/" + ref.Name); ok {
		if m := o.(*metav1.PartialObjectMetadata); m.UID == ref.UID {
			if up := metav1.GetControllerOfNoCopy(m); up != nil {
				return up.Name, up.Kind
			}
			return ref.Name, ref.Kind
		}
	}
	if h := e.Pod.Labels["pod-template-hash"]; ref.Kind == "ReplicaSet" && h != "" && strings.HasSuffix(ref.Name, "-"+h) {
		return strings.TrimSuffix(ref.Name, "-"+h), "Deployment"
	}
	return ref.Name, ref.Kind
}

func service(svc *corev1.Service, slices []*sliceEntry) cluster.Service {
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
		if p.TargetPort.Type == intstr.Int { // a name is resolved by the backends' ports
			sp.TargetPort = uint16(p.TargetPort.IntVal)
		}
		cs.Ports = append(cs.Ports, sp)
	}
	cs.Backends = backends(slices, func(e *sliceEndpoint) bool { return e.Ready })
	if len(cs.Backends) == 0 {
		cs.Backends = backends(slices, func(e *sliceEndpoint) bool { return e.ServingTerminating })
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
func backends(slices []*sliceEntry, keep func(*sliceEndpoint) bool) []cluster.Backend {
	var out []cluster.Backend
	var seen map[backendKey]bool
	if len(slices) > 1 {
		seen = map[backendKey]bool{}
	}
	for _, es := range slices {
		for i := range es.Endpoints {
			ep := &es.Endpoints[i]
			if !keep(ep) {
				continue
			}
			for _, ip := range ep.IPs {
				for _, p := range es.Ports {
					if seen != nil {
						k := backendKey{ip, p.Port, p.Protocol}
						if seen[k] {
							continue
						}
						seen[k] = true
					}
					out = append(out, cluster.Backend{Namespace: ep.PodNamespace, Pod: ep.Pod, IP: ip, Port: p.Port, Protocol: p.Protocol})
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
