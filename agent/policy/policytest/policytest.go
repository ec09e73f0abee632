// Package policytest builds the cluster the policy benchmarks measure on:
// 1,000 pods × 200 NetworkPolicies, as agent/policy's compile and diff
// benchmarks and agent/source/ebpf's map sync benchmark need it alike.
package policytest

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flowbus/flowbus/agent/cluster"
)

// Cluster is 1,000 pods in 50 namespaces (5 deployments of 4 replicas
// each, one namespace "monitoring") and 200 policies, four per namespace
// as clusters write them: default-deny ingress, allow from the same
// namespace, allow the monitoring namespace on the metrics port, and a
// per-app allow with ports (named and numeric); every tenth namespace also
// limits egress with ipBlocks. Pod i has the address 10.8.(i>>8).(i&255)
// and no interface: a caller that needs endpoints sets IfIndex.
func Cluster() *cluster.Snapshot {
	s := &cluster.Snapshot{}
	tcp := corev1.ProtocolTCP
	port := func(p int) *intstr.IntOrString { v := intstr.FromInt32(int32(p)); return &v }
	for n := range 50 {
		ns := fmt.Sprintf("team-%02d", n)
		if n == 0 {
			ns = "monitoring"
		}
		s.Namespaces = append(s.Namespaces, cluster.Namespace{Name: ns, Labels: map[string]string{
			"kubernetes.io/metadata.name": ns, "tier": []string{"gold", "silver"}[n%2]}})
		for d := range 5 {
			for r := range 4 {
				i := len(s.Pods)
				s.Pods = append(s.Pods, cluster.Pod{Namespace: ns, Name: fmt.Sprintf("app-%d-%d", d, r), Node: fmt.Sprintf("node-%d", i%20),
					Labels: map[string]string{"app": fmt.Sprintf("app-%d", d), "pod-template-hash": fmt.Sprintf("h%d%d", n, d)},
					IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)})},
					Ports: []cluster.ContainerPort{{Name: "http", Port: uint16(8080 + d), Protocol: "TCP"},
						{Name: "metrics", Port: 9090, Protocol: "TCP"}}})
			}
		}
		meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
		s.NetworkPolicies = append(s.NetworkPolicies,
			&networkingv1.NetworkPolicy{ObjectMeta: meta("default-deny"), Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
			&networkingv1.NetworkPolicy{ObjectMeta: meta("allow-same-namespace"), Spec: networkingv1.NetworkPolicySpec{
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}}},
			&networkingv1.NetworkPolicy{ObjectMeta: meta("allow-monitoring"), Spec: networkingv1.NetworkPolicySpec{
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "metrics"}}}}}}},
		)
		endPort := int32(32767)
		app := &networkingv1.NetworkPolicy{ObjectMeta: meta("app-1-from-app-0"), Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "app-1"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "app-0"}}},
					{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}},
						PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"app-3", "app-4"}}}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{Type: intstr.String, StrVal: "http"}},
					{Protocol: &tcp, Port: port(8443)}, {Protocol: &tcp, Port: port(30000), EndPort: &endPort}}}}}}
		if n%10 == 5 {
			app.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
			app.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.9.0.0/16"}}}}},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0",
					Except: []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: port(443)}}},
			}
		}
		s.NetworkPolicies = append(s.NetworkPolicies, app)
	}
	return s
}

// EditedPolicy is the edit the incremental benchmarks apply to Cluster:
// policy 7 (team-01's app-1-from-app-0) allows one more port, TCP 9443. It
// returns a copy of s sharing everything but that policy, and the edited
// policy's namespace; the rules of the 4 replicas of app-1 there change.
func EditedPolicy(s *cluster.Snapshot) (*cluster.Snapshot, string) {
	edited := *s
	edited.NetworkPolicies = append([]*networkingv1.NetworkPolicy(nil), s.NetworkPolicies...)
	np := edited.NetworkPolicies[7].DeepCopy()
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt32(9443)
	np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &p})
	edited.NetworkPolicies[7] = np
	return &edited, np.Namespace
}
