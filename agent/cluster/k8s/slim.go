package k8s

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/flowbus/flowbus/agent/cluster"
)

// The informers' transforms: what the caches keep of each object. Pods and
// EndpointSlices, the numerous ones, are kept as entries already in
// snapshot form (a typed Pod struct alone is kilobytes, and each build
// would parse the same addresses again); the rest as objects with their
// managed fields dropped. Each transform is idempotent and leaves other
// types (a cache.DeletedFinalStateUnknown) alone. Entries are never
// modified once made: snapshots share their slices and maps.

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// podEntry is what the pod cache keeps of a pod.
type podEntry struct {
	metav1.TypeMeta
	metav1.ObjectMeta // name, namespace, UID and resourceVersion only
	// Pod is the pod's snapshot form less its workload, which depends on
	// other caches and is resolved at each build.
	Pod        cluster.Pod
	Controller *metav1.OwnerReference
	Terminal   bool // phase Succeeded or Failed
}

// DeepCopyObject implements runtime.Object; entries are immutable, so the
// copy shares their slices and maps.
func (e *podEntry) DeepCopyObject() runtime.Object { c := *e; return &c }

func podEntryOf(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	e := &podEntry{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion},
		Pod: cluster.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, UID: string(p.UID),
			Node: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Terminal: p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed,
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		e.Controller = &metav1.OwnerReference{Kind: ref.Kind, Name: ref.Name, UID: ref.UID}
	}
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			e.Pod.IPs = append(e.Pod.IPs, a)
		}
	}
	if len(p.Status.PodIPs) == 0 && p.Status.PodIP != "" {
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			e.Pod.IPs = append(e.Pod.IPs, a)
		}
	}
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			e.Pod.Ports = append(e.Pod.Ports, cluster.ContainerPort{Name: port.Name, Port: uint16(port.ContainerPort), Protocol: protocol(port.Protocol)})
		}
	}
	return e, nil
}

// sliceEntry is what the EndpointSlice cache keeps of a slice.
type sliceEntry struct {
	metav1.TypeMeta
	metav1.ObjectMeta        // name, namespace and resourceVersion only
	Service           string // kubernetes.io/service-name; empty for slices of no service and FQDN slices
	Ports             []slicePort
	Endpoints         []sliceEndpoint
}

// DeepCopyObject implements runtime.Object (see podEntry).
func (e *sliceEntry) DeepCopyObject() runtime.Object { c := *e; return &c }

type slicePort struct {
	Port     uint16 // 0: all ports (a slice with no ports)
	Protocol string
}

type sliceEndpoint struct {
	IPs                []netip.Addr
	PodNamespace, Pod  string // the pod it targets, if it targets one
	Ready              bool   // ready, unset counting as true
	ServingTerminating bool
}

func sliceEntryOf(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	e := &sliceEntry{ObjectMeta: metav1.ObjectMeta{Name: es.Name, Namespace: es.Namespace, ResourceVersion: es.ResourceVersion}}
	if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
		return e, nil
	}
	e.Service = es.Labels[discoveryv1.LabelServiceName]
	for _, p := range es.Ports {
		sp := slicePort{}
		if p.Port != nil {
			sp.Port, sp.Protocol = uint16(*p.Port), "TCP"
		}
		if p.Protocol != nil {
			sp.Protocol = string(*p.Protocol)
		}
		e.Ports = append(e.Ports, sp)
	}
	if len(e.Ports) == 0 {
		e.Ports = []slicePort{{}}
	}
	for _, ep := range es.Endpoints {
		c := ep.Conditions
		ready := c.Ready == nil || *c.Ready
		serving := ready
		if c.Serving != nil {
			serving = *c.Serving
		}
		se := sliceEndpoint{PodNamespace: es.Namespace, Ready: ready,
			ServingTerminating: serving && c.Terminating != nil && *c.Terminating}
		if r := ep.TargetRef; r != nil && r.Kind == "Pod" {
			se.Pod = r.Name
			if r.Namespace != "" {
				se.PodNamespace = r.Namespace
			}
		}
		for _, addr := range ep.Addresses {
			if ip, err := netip.ParseAddr(addr); err == nil {
				se.IPs = append(se.IPs, ip)
			}
		}
		e.Endpoints = append(e.Endpoints, se)
	}
	return e, nil
}

// slimMeta drops managed fields and the last-applied annotation, which
// together often outweigh the rest of an object.
func slimMeta(obj any) (any, error) {
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		unstructured.RemoveNestedField(o.Object, "metadata", "managedFields")
		unstructured.RemoveNestedField(o.Object, "metadata", "annotations", lastApplied)
	case metav1.Object:
		o.SetManagedFields(nil)
		if a := o.GetAnnotations(); a[lastApplied] != "" {
			b := make(map[string]string, len(a))
			for k, v := range a {
				if k != lastApplied {
					b[k] = v
				}
			}
			o.SetAnnotations(b)
		}
	}
	return obj, nil
}

// slimOwner keeps of a ReplicaSet's or Job's metadata what owner
// resolution reads.
func slimOwner(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	s := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
	}}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		s.OwnerReferences = []metav1.OwnerReference{{Kind: ref.Kind, Name: ref.Name, UID: ref.UID, Controller: ref.Controller}}
	}
	return s, nil
}

// slimCRD keeps a CRD's name and conditions: a definition's schema can be
// hundreds of kilobytes.
func slimCRD(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	s := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(),
		"metadata": map[string]any{"name": u.GetName(), "resourceVersion": u.GetResourceVersion(), "uid": string(u.GetUID())},
	}}
	if conds, found, _ := unstructured.NestedSlice(u.Object, "status", "conditions"); found {
		s.Object["status"] = map[string]any{"conditions": conds}
	}
	return s, nil
}
