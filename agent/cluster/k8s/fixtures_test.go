package k8s

import (
	"net/netip"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flowbus/flowbus/agent/cluster"
)

// The objects the tests create, the same for the fake clientset and the
// real API server, and the snapshot they must give.

func ptr[T any](v T) *T { return &v }

func owner(kind, name string, uid types.UID) []metav1.OwnerReference {
	apiVersion := map[string]string{"ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "Deployment": "apps/v1",
		"Job": "batch/v1", "CronJob": "batch/v1"}[kind]
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr(true)}}
}

// pod is a pod as a kubelet would have reported it: node, phase, IPs.
func pod(ns, name string, labels map[string]string, owners []metav1.OwnerReference, ips ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-pod-" + name), Labels: labels, OwnerReferences: owners,
			Annotations: map[string]string{lastApplied: `{"a":"large blob the cache drops"}`}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "registry.example/app:1",
			Env: []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	return p
}

// fleet is a cluster with one pod of every kind of owner, services with
// every kind of endpoint, and a NetworkPolicy.
type fleet struct {
	namespaces []*corev1.Namespace
	owners     []metav1.Object // Deployments, ReplicaSets, StatefulSets, DaemonSets, CronJobs, Jobs
	pods       []*corev1.Pod
	services   []*corev1.Service
	slices     []*discoveryv1.EndpointSlice
	netpols    []*networkingv1.NetworkPolicy
}

// newFleet returns the fleet; uid gives the UIDs owners get (the fake
// clientset keeps the ones set here, the API server assigns its own and
// the test creates owners first).
func newFleet() *fleet {
	f := &fleet{}
	f.namespaces = []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "chat", Labels: map[string]string{"team": "chat", "kubernetes.io/metadata.name": "chat"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "batch", Labels: map[string]string{"kubernetes.io/metadata.name": "batch"}}},
	}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "chat-relay", UID: "uid-dep"}}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "chat-relay-5d8f7", UID: "uid-rs",
		OwnerReferences: owner("Deployment", "chat-relay", "uid-dep")}}
	cron := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: "batch", Name: "report", UID: "uid-cron"}}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "batch", Name: "report-29100000", UID: "uid-job",
		OwnerReferences: owner("CronJob", "report", "uid-cron")}}
	bareRS := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "legacy", UID: "uid-bare-rs"}}
	f.owners = []metav1.Object{dep, rs, cron, job, bareRS}

	relay := pod("chat", "chat-relay-5d8f7-x2k9q", map[string]string{"app": "chat-relay", "pod-template-hash": "5d8f7"},
		owner("ReplicaSet", "chat-relay-5d8f7", "uid-rs"), "10.0.1.5", "fd00::5")
	relay.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "grpc", ContainerPort: 9000, Protocol: corev1.ProtocolTCP}, {ContainerPort: 9090}}
	relay.Spec.Containers = append(relay.Spec.Containers, corev1.Container{Name: "dns", Image: "dns:1",
		Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}})
	relay2 := pod("chat", "chat-relay-5d8f7-p7m2z", map[string]string{"app": "chat-relay", "pod-template-hash": "5d8f7"},
		owner("ReplicaSet", "chat-relay-5d8f7", "uid-rs"), "10.0.1.6")
	orphanRS := pod("chat", "api-7c9d6-abcde", map[string]string{"app": "api", "pod-template-hash": "7c9d6"},
		owner("ReplicaSet", "api-7c9d6", "uid-never-created"), "10.0.1.7")
	legacy := pod("chat", "legacy-q1w2e", map[string]string{"app": "legacy"}, owner("ReplicaSet", "legacy", "uid-bare-rs"), "10.0.1.8")
	db := pod("chat", "db-0", map[string]string{"app": "db"}, owner("StatefulSet", "db", "uid-sts"), "10.0.1.9")
	node := pod("kube-system", "node-agent-h4x", map[string]string{"app": "node-agent"}, owner("DaemonSet", "node-agent", "uid-ds"), "192.0.2.10")
	node.Spec.HostNetwork = true
	report := pod("batch", "report-29100000-7pq", map[string]string{"job-name": "report-29100000"}, owner("Job", "report-29100000", "uid-job"), "10.0.2.3")
	debug := pod("chat", "debug", map[string]string{"run": "debug"}, nil, "10.0.1.20")
	pending := pod("chat", "pending", map[string]string{"app": "chat-relay"}, nil)
	pending.Status.Phase = corev1.PodPending
	done := pod("batch", "done", map[string]string{"app": "once"}, nil, "10.0.2.4")
	done.Status.Phase = corev1.PodSucceeded
	f.pods = []*corev1.Pod{relay, relay2, orphanRS, legacy, db, node, report, debug, pending, done}

	f.services = []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "chat-relay"}, Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}, Selector: map[string]string{"app": "chat-relay"},
			Ports: []corev1.ServicePort{{Name: "grpc", Port: 9000, TargetPort: intstr.FromInt32(9000), Protocol: corev1.ProtocolTCP},
				{Name: "metrics", Port: 80, TargetPort: intstr.FromString("metrics"), Protocol: corev1.ProtocolTCP}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "draining"}, Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.11", ClusterIPs: []string{"10.96.0.11"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "db"}, Spec: corev1.ServiceSpec{
			ClusterIP: "None", ClusterIPs: []string{"None"},
			Ports: []corev1.ServicePort{{Name: "sql", Port: 5432, TargetPort: intstr.FromInt32(5432), Protocol: corev1.ProtocolTCP}}}},
	}
	ep := func(ip string, podName string, ready, serving, terminating *bool) discoveryv1.Endpoint {
		e := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}}
		if podName != "" {
			e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "chat", Name: podName}
		}
		return e
	}
	slice := func(name, svc string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: ports, Endpoints: eps}
	}
	relayPorts := []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(9000)), Protocol: ptr(corev1.ProtocolTCP)},
		{Name: ptr("metrics"), Port: ptr(int32(9090)), Protocol: ptr(corev1.ProtocolTCP)}}
	T, F := ptr(true), ptr(false)
	f.slices = []*discoveryv1.EndpointSlice{
		// One ready endpoint with an unset condition (ready), one not ready.
		slice("chat-relay-a", "chat-relay", relayPorts, ep("10.0.1.5", relay.Name, nil, nil, nil), ep("10.0.1.6", relay2.Name, F, F, nil)),
		// The same ready endpoint again, as slices overlap during updates.
		slice("chat-relay-b", "chat-relay", relayPorts, ep("10.0.1.5", relay.Name, T, T, F)),
		// No ready endpoint: the serving terminating one is the backend,
		// the terminating one that no longer serves is not.
		slice("draining-a", "draining", []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
			ep("10.0.1.7", orphanRS.Name, F, T, T), ep("10.0.1.8", legacy.Name, F, F, T)),
		slice("db-a", "db", []discoveryv1.EndpointPort{{Name: ptr("sql"), Port: ptr(int32(5432)), Protocol: ptr(corev1.ProtocolTCP)}},
			ep("10.0.1.9", db.Name, T, T, F)),
	}
	f.netpols = []*networkingv1.NetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "relay-from-api"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "chat-relay"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr(corev1.ProtocolTCP), Port: ptr(intstr.FromString("grpc"))}},
			}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}}
	return f
}

// want is the snapshot of the fleet, less its NetworkPolicies (compared
// by spec: the API server adds metadata) and Cilium policies.
func (f *fleet) want() *cluster.Snapshot {
	ip := netip.MustParseAddr
	ips := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, ip(a))
		}
		return out
	}
	p := func(i int, workload, kind string, addrs ...string) cluster.Pod {
		src := f.pods[i]
		return cluster.Pod{Namespace: src.Namespace, Name: src.Name, Labels: src.Labels, IPs: ips(addrs...), Node: "node-a",
			UID: string(src.UID), HostNetwork: src.Spec.HostNetwork, Workload: workload, WorkloadKind: kind}
	}
	relay := p(0, "chat-relay", "Deployment", "10.0.1.5", "fd00::5")
	relay.Ports = []cluster.ContainerPort{{Name: "grpc", Port: 9000, Protocol: "TCP"}, {Port: 9090, Protocol: "TCP"}, {Name: "dns", Port: 53, Protocol: "UDP"}}
	s := &cluster.Snapshot{
		Source: SourceName,
		Pods: []cluster.Pod{
			relay,
			p(1, "chat-relay", "Deployment", "10.0.1.6"),
			p(2, "api", "Deployment", "10.0.1.7"), // its ReplicaSet is unknown: the name gives the Deployment
			p(3, "legacy", "ReplicaSet", "10.0.1.8"),
			p(4, "db", "StatefulSet", "10.0.1.9"),
			p(5, "node-agent", "DaemonSet", "192.0.2.10"),
			p(6, "report", "CronJob", "10.0.2.3"),
			p(7, "debug", "Pod", "10.0.1.20"),
			p(8, "pending", "Pod"),
			// f.pods[9] has succeeded: not in the snapshot.
		},
		Namespaces: []cluster.Namespace{{Name: "batch", Labels: f.namespaces[1].Labels}, {Name: "chat", Labels: f.namespaces[0].Labels}},
		Services: []cluster.Service{
			{Namespace: "chat", Name: "chat-relay", ClusterIPs: ips("10.96.0.10"),
				Ports: []cluster.ServicePort{{Name: "grpc", Port: 9000, TargetPort: 9000, Protocol: "TCP"}, {Name: "metrics", Port: 80, Protocol: "TCP"}},
				Backends: []cluster.Backend{{Namespace: "chat", Pod: relay.Name, IP: ip("10.0.1.5"), Port: 9000, Protocol: "TCP"},
					{Namespace: "chat", Pod: relay.Name, IP: ip("10.0.1.5"), Port: 9090, Protocol: "TCP"}}},
			{Namespace: "chat", Name: "db", Ports: []cluster.ServicePort{{Name: "sql", Port: 5432, TargetPort: 5432, Protocol: "TCP"}},
				Backends: []cluster.Backend{{Namespace: "chat", Pod: "db-0", IP: ip("10.0.1.9"), Port: 5432, Protocol: "TCP"}}},
			{Namespace: "chat", Name: "draining", ClusterIPs: ips("10.96.0.11"), Ports: []cluster.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}},
				Backends: []cluster.Backend{{Namespace: "chat", Pod: f.pods[2].Name, IP: ip("10.0.1.7"), Port: 8080, Protocol: "TCP"}}},
		},
	}
	s.SortObjects()
	return s
}

// Cilium policy objects, as unstructured.
func ciliumPolicy(kind, ns, name string, spec any) *unstructured.Unstructured {
	meta := map[string]any{"name": name}
	if ns != "" {
		meta["namespace"] = ns
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta, "spec": spec}}
}

func relaySpec() map[string]any {
	return map[string]any{
		"endpointSelector": map[string]any{"matchLabels": map[string]any{"app": "chat-relay"}},
		"ingress":          []any{map[string]any{"fromEndpoints": []any{map[string]any{"matchLabels": map[string]any{"app": "api"}}}}},
	}
}
